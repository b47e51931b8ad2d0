"""Turning the image inputs users have (PIL images, numpy arrays, paths, bytes) into the
HxWx3 uint8 arrays the native core takes."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from . import _native
from .errors import ImageError

if TYPE_CHECKING:
    from PIL import Image as PILImage

ImageInput = Union["PILImage.Image", np.ndarray, str, "os.PathLike[str]", bytes, bytearray, memoryview]
"""Anything :func:`to_rgb_array` accepts."""


def to_rgb_array(image: Any) -> np.ndarray:
    """Return ``image`` as a C-contiguous ``HxWx3`` uint8 RGB array.

    Accepts a PIL image (converted with ``.convert("RGB")`` as the official code does), a numpy
    uint8 array ``HxWx3`` (``HxW`` grey and ``HxWx4`` RGBA are converted like PIL does), a file
    path, or the raw bytes of an encoded image (PNG, JPEG, WebP, GIF, BMP, TIFF).
    """
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        with open(path, "rb") as f:  # FileNotFoundError names the path
            data = f.read()
        try:
            return _native.decode_image(data)
        except ImageError as e:
            raise ImageError(f"{path}: {e}") from None
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _native.decode_image(bytes(image))
    if isinstance(image, np.ndarray):
        return _from_numpy(image)
    if _is_pil_image(image):
        return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    raise TypeError(
        f"unsupported image type {type(image).__name__}: pass a PIL image, a numpy uint8 array "
        "(HxWx3), a file path or encoded image bytes"
    )


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


