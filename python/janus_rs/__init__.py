"""janus-rs: DeepSeek's Janus family (Janus-Pro, Janus, JanusFlow) on a Rust/candle core.

Quick start::

    from janus_rs import JanusPro
    model = JanusPro.from_pretrained("path/to/Janus-Pro-1B")
    print(model.understand("cat.png", "What is in this image?"))
"""

from __future__ import annotations

from . import _native
from ._backend import cuda_available, cuda_unavailable_reason
from .errors import (
    ConfigError,
    ContextLengthError,
    DeviceError,
    ImageError,
    InputError,
    InternalError,
    JanusError,
    LoadError,
    NotFoundError,
    TokenizerError,
    WeightsError,
)
from .generation import GenerationResult
from .janus_pro import DEFAULT_SYSTEM_PROMPT, MAX_IMAGES_PER_CALL, JanusPro

__version__: str = _native.__version__

__all__ = [
    "JanusPro",
    "GenerationResult",
    "MAX_IMAGES_PER_CALL",
    "DEFAULT_SYSTEM_PROMPT",
    "JanusError",
    "NotFoundError",
    "LoadError",
    "ConfigError",
    "WeightsError",
    "TokenizerError",
    "InputError",
    "ImageError",
    "ContextLengthError",
    "DeviceError",
    "InternalError",
    "cuda_available",
    "cuda_unavailable_reason",
    "__version__",
]
