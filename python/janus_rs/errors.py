"""Exceptions raised by janus-rs.

Every error from the Rust core arrives as one of these classes. They also subclass the
natural built-in exception, so ``except ValueError`` / ``except FileNotFoundError`` work::

    JanusError                          base of everything janus-rs raises
    ├── NotFoundError (FileNotFoundError)   a model folder, weight shard or image file is missing
    ├── LoadError                       a checkpoint that cannot be used
    │   ├── ConfigError (ValueError)    config.json & co: unreadable JSON, missing or unsupported values
    │   ├── WeightsError (ValueError)   weight files: unreadable, missing tensors, wrong shapes
    │   └── TokenizerError (ValueError) tokenizer.json unreadable or lacking a needed token
    ├── InputError (ValueError)         a bad argument to a call
    │   ├── InputTypeError (TypeError)  an argument of the wrong type
    │   ├── ImageError                  an image that cannot be decoded or used
    │   │   └── ImageFileError (OSError)    an image path that cannot be read (a folder, no permission)
    │   │       └── ImageFolderError (IsADirectoryError)  a folder given as an image
    │   └── ContextLengthError          the prompt does not fit the model's context
    ├── DeviceError (RuntimeError)      the requested device is unavailable in this build/machine
    └── InternalError (RuntimeError)    a failure inside the tensor library (please report it)

Ctrl-C during generation raises the usual ``KeyboardInterrupt``.
"""

from __future__ import annotations

__all__ = [
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
]


class JanusError(Exception):
    """Base class of every error janus-rs raises."""


class NotFoundError(JanusError, FileNotFoundError):
    """A model folder, weight shard, config or image file does not exist."""

    def __str__(self) -> str:  # FileNotFoundError would otherwise format errno/filename
        return str(self.args[0]) if self.args else ""


class LoadError(JanusError):
    """A checkpoint that exists but cannot be used."""


class ConfigError(LoadError, ValueError):
    """A config file (config.json, preprocessor_config.json, ...) is invalid or unsupported."""


class WeightsError(LoadError, ValueError):
    """Weight files are unreadable, miss a tensor, or hold a tensor of the wrong shape or dtype."""


class TokenizerError(LoadError, ValueError):
    """tokenizer.json cannot be read or lacks a token the model needs."""


class InputError(JanusError, ValueError):
    """A bad argument: a parameter out of range, a bad array, a malformed conversation."""


class InputTypeError(InputError, TypeError):
    """An argument of the wrong type (e.g. a string where a number is needed); also a ``TypeError``."""


class ImageError(InputError):
    """An image that cannot be decoded or used."""


class ImageFileError(ImageError, OSError):
    """An image path that exists but cannot be read: a folder, or no permission; also an ``OSError``."""

    def __str__(self) -> str:  # OSError would otherwise format errno/filename
        return str(self.args[0]) if self.args else ""


class ImageFolderError(ImageFileError, IsADirectoryError):
    """A folder given where an image file is needed; also an ``IsADirectoryError``."""


class ContextLengthError(InputError):
    """The prompt (with its image tokens) does not fit in the model's context window."""


class DeviceError(JanusError, RuntimeError):
    """The requested device is not available in this build or on this machine."""


class InternalError(JanusError, RuntimeError):
    """An unexpected failure inside the tensor library. Please report it."""
