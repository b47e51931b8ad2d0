"""Turning the image inputs users have (PIL images, numpy arrays, paths, bytes, binary file
objects) into the HxWx3 uint8 arrays the native core takes."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from . import _native
from .errors import ImageError, ImageFileError, ImageFolderError, InputTypeError, NotFoundError

if TYPE_CHECKING:
    from PIL import Image as PILImage

ImageInput = Union["PILImage.Image", np.ndarray, str, "os.PathLike[str]", bytes, bytearray, memoryview, Any]
"""Anything :func:`to_rgb_array` accepts (binary file objects, anything with ``.read()``, included)."""

_ACCEPTED = (
    "pass a PIL image, a numpy uint8 array (HxWx3), a file path, encoded image bytes or a binary "
    "file object (open(path, 'rb'), io.BytesIO)"
)


def to_rgb_array(image: Any) -> np.ndarray:
    """Return ``image`` as a C-contiguous ``HxWx3`` uint8 RGB array.

    Accepts a PIL image (converted with ``.convert("RGB")`` as the official code does), a numpy
    uint8 array ``HxWx3`` (``HxW`` grey and ``HxWx4`` RGBA are converted like PIL does), a file
    path, the raw bytes of an encoded image (PNG, JPEG, WebP, GIF, BMP, TIFF), or a binary file
    object holding such bytes (anything whose ``.read()`` returns bytes: ``open(path, "rb")``,
    ``io.BytesIO``, a response body), read from its current position to its end.

    Raises :class:`NotFoundError` for a missing file, :class:`ImageFileError` for a path that
    cannot be read (a folder), :class:`ImageError` for data that is not a usable image and
    :class:`InputTypeError` for anything else.
    """
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        return _decode(_read_path(path), path)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _decode(bytes(image), None)
    if isinstance(image, np.ndarray):
        return _from_numpy(image)
    if _is_pil_image(image):
        return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    if callable(getattr(image, "read", None)):
        return _decode(_read_file_object(image), _file_object_name(image))
    raise InputTypeError(f"unsupported image type {type(image).__name__}: {_ACCEPTED}")


def _read_path(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise NotFoundError(f"image file not found: {path}") from None
    except IsADirectoryError:
        raise ImageFolderError(f"image path is a folder, not an image file: {path}") from None
    except OSError as e:
        raise ImageFileError(f"cannot read image file {path}: {e.strerror or e}") from None


def _read_file_object(f: Any) -> bytes:
    name = _file_object_name(f) or type(f).__name__
    try:
        data = f.read()
    except OSError as e:
        raise ImageFileError(f"cannot read image from {name}: {e}") from None
    except (ValueError, TypeError) as e:  # e.g. "I/O operation on closed file"
        raise ImageError(f"cannot read image from {name}: {e}") from None
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise InputTypeError(
            f"image file object {name} returned {type(data).__name__} from read(), not bytes: "
            "open image files in binary mode (open(path, 'rb'))"
        )
    return data


def _file_object_name(f: Any) -> str | None:
    name = getattr(f, "name", None)
    return name if isinstance(name, str) else None


def _decode(data: bytes, source: str | None) -> np.ndarray:
    try:
        return _native.decode_image(data)
    except ImageError as e:
        if source is None:
            raise
        raise ImageError(f"{source}: {e}") from None


def to_rgb_arrays(images: Any) -> list[np.ndarray]:
    """Normalise ``None``, one image or a sequence of images to a list of RGB arrays."""
    if images is None:
        return []
    if isinstance(images, (list, tuple)):
        return [to_rgb_array(im) for im in images]
    return [to_rgb_array(images)]


def _from_numpy(a: np.ndarray) -> np.ndarray:
    if a.dtype != np.uint8:
        raise ImageError(
            f"numpy images must have dtype uint8, got {a.dtype}; convert float images in [0, 1] "
            "with (x * 255).round().astype(np.uint8)"
        )
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]  # PIL's convert("RGB") drops alpha
    elif not (a.ndim == 3 and a.shape[2] == 3):
        raise ImageError(f"numpy images must be HxWx3 (or HxW, HxWx1, HxWx4), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(f"image is empty (shape {a.shape})")
    return np.ascontiguousarray(a)


def _is_pil_image(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(obj, Image.Image)


