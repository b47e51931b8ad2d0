"""janus-rs: DeepSeek's Janus family (Janus-Pro, Janus, JanusFlow) on a Rust/candle core.

Quick start::

    from janus_rs import JanusPro
    model = JanusPro.from_pretrained("path/to/Janus-Pro-1B")
    print(model.understand("cat.png", "What is in this image?"))

    from janus_rs import JanusFlow
    flow = JanusFlow.from_pretrained("deepseek-ai/JanusFlow-1.3B", vae="stabilityai/sdxl-vae")
    flow.generate("a cozy cabin in the snow", num_images=2, seed=1).images[0].save("cabin.png")
"""

from __future__ import annotations

# First: importing _distribution refuses janus-rs and janus-rs-cu13 installed together (their
# files, native modules included, would be a mix of the two wheels).
from . import _distribution  # noqa: F401
from . import _native
from ._backend import cuda_available, cuda_unavailable_reason, get_num_threads, set_num_threads
from .errors import (
    ConfigError,
    ContextLengthError,
    DeviceError,
    ImageError,
    ImageFileError,
    ImageFolderError,
    InputError,
    InputTypeError,
    InternalError,
    JanusError,
    LoadError,
    NotFoundError,
    TokenizerError,
    WeightsError,
)
from .generation import GenerationResult
from .janus_flow import DEFAULT_VAE, JanusFlow
from .janus_pro import DEFAULT_SYSTEM_PROMPT, MAX_IMAGES_PER_CALL, JanusPro

__version__: str = _native.__version__

__all__ = [
    "set_num_threads",
    "get_num_threads",
    "JanusPro",
    "JanusFlow",
    "GenerationResult",
    "MAX_IMAGES_PER_CALL",
    "DEFAULT_SYSTEM_PROMPT",
    "DEFAULT_VAE",
    "JanusError",
    "NotFoundError",
    "LoadError",
    "ConfigError",
    "WeightsError",
    "TokenizerError",
    "InputError",
    "InputTypeError",
    "ImageError",
    "ImageFileError",
    "ImageFolderError",
    "ContextLengthError",
    "DeviceError",
    "InternalError",
    "cuda_available",
    "cuda_unavailable_reason",
    "__version__",
]
