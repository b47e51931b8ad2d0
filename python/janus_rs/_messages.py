"""One conversation normaliser for :meth:`ChatModel.chat` and the server.

Accepted spellings of a conversation (they may be mixed):

- the official Janus one: ``{"role": "<|User|>" | "User" | "user", "content": str,
  "images": [path | PIL | array | bytes | "data:image/...;base64,..."]}``, with an optional
  empty trailing assistant turn;
- OpenAI content parts: ``"content": [{"type": "text", "text": ...}, {"type": "image_url",
  "image_url": {"url": "data:image/png;base64,..."}}]``;
- Hugging Face content parts: ``{"type": "image", "url" | "path" | "image" | "base64": ...}``
  and ``{"type": "text", "text": ...}``;
- ``{"role": "system", "content": ...}`` messages, which become the system prompt.

Image placement follows the official training format: a message's images are taken in order
(its ``images`` list first, then its image parts) and, unless its text already holds
``<image_placeholder>`` tags, one ``<image_placeholder>`` line per image goes before the text.
Text parts are joined with newlines.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .errors import ImageError, InputError, InputTypeError, JanusError
from .images import to_rgb_array

IMAGE_TAG = "<image_placeholder>"

UrlResolver = Callable[[str], Any]
"""Turns an image reference string (a ``data:`` URL, an ``http(s)://`` URL, a ``file://`` URL
or a path) into something :func:`~janus_rs.images.to_rgb_array` accepts (bytes, a path, ...).
Raises a :class:`~janus_rs.InputError` subclass to refuse it."""

_DATA_URL = re.compile(r"^data:(?P<mime>[^;,]*)(?P<params>(;[^;,]*)*?),(?P<data>.*)$", re.DOTALL)


@dataclass
class Conversation:
    """A normalised conversation: ``system_prompt`` (``None`` when no system message was given),
    ``(role, content)`` turns with one ``<image_placeholder>`` per image, and the images in order."""

    system_prompt: str | None
    turns: list[tuple[str, str]]
    images: list[np.ndarray] = field(default_factory=list)


def with_image_tags(text: str, n_images: int) -> str:
    """``text`` with one ``<image_placeholder>`` line per image before it (the official training
    format), unless it already holds tags that place the images itself."""
    return text if IMAGE_TAG in text else "".join(IMAGE_TAG + "\n" for _ in range(n_images)) + text


def decode_data_url(url: str) -> bytes:
    """The bytes of a ``data:[<mime>][;base64],<data>`` URL (RFC 2397).

    Raises :class:`ImageError` for a malformed URL, bad base64, or a media type that is not
    an image (``data:text/plain,...``)."""
    m = _DATA_URL.match(url)
    if m is None:
        raise ImageError("malformed data URL: expected data:image/<type>;base64,<data>")
    mime = m.group("mime").strip().lower()
    if mime and not (mime.startswith("image/") or mime == "application/octet-stream"):
        raise ImageError(f"data URL has media type {mime!r}, not an image")
    data = m.group("data")
    if ";base64" in m.group("params").lower():
        try:
            return base64.b64decode("".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ImageError("data URL holds invalid base64") from None
    from urllib.parse import unquote_to_bytes

    return unquote_to_bytes(data)


def is_url_like(text: str) -> bool:
    """True for strings that name an image by URL rather than by path."""
    return text[:5].lower() == "data:" or bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text))


def library_resolver(reference: str) -> Any:
    """How :meth:`chat` resolves image strings: ``data:`` URLs are decoded, ``file://`` URLs and
    plain strings are paths; ``http(s)://`` URLs are refused (download the image yourself, or
    use ``janus-rs serve``, which fetches them with size and time limits)."""
    lower = reference[:8].lower()
    if lower.startswith("data:"):
        return decode_data_url(reference)
    if lower.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(reference).path)
    if lower.startswith(("http://", "https://")):
        raise InputError(
            f"chat() does not download images ({_short(reference)}): pass the image itself "
            "(PIL image, bytes, path or data: URL)"
        )
    if is_url_like(reference):
        raise InputError(f"unsupported image URL scheme: {_short(reference)}")
    return reference


def normalise_conversation(messages: Any, *, resolve: UrlResolver = library_resolver) -> Conversation:
    """Normalise ``messages`` (any accepted spelling, see the module docstring).

    Raises :class:`InputTypeError` if ``messages`` is not a list of dicts, :class:`InputError`
    naming the message (and part) for anything malformed, and :class:`ImageError` (same
    naming) for an image that cannot be read.
    """
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Iterable):
        raise InputTypeError(
            f"messages must be a list of {{'role': ..., 'content': ...}} dicts, got {type(messages).__name__}"
        )
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    images: list[np.ndarray] = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, Mapping) or "role" not in m:
            raise InputError(f"{where} must be a dict with 'role' and 'content' keys, got {_short(repr(m))}")
        role = m["role"]
        if not isinstance(role, str):
            raise InputError(f"{where}: role must be a string, got {type(role).__name__}")
        if "content" not in m:
            raise InputError(f"{where} has no 'content'")
        text, part_images = _content(m["content"], where, resolve)
        listed = m.get("images")
        if listed is not None:
            if isinstance(listed, (str, bytes)) or not isinstance(listed, (list, tuple)):
                listed = [listed]
            part_images = [_image(im, f"{where}.images[{j}]", resolve) for j, im in enumerate(listed)] + part_images
        if role.strip().lower() == "system":
            if part_images:
                raise InputError(f"{where}: a system message cannot hold images")
            system.append(text)
            continue
        n_tags = text.count(IMAGE_TAG)
        if part_images and n_tags == 0:
            text = with_image_tags(text, len(part_images))
        elif n_tags != len(part_images):
            raise InputError(f"{where} has {n_tags} {IMAGE_TAG} tags but {len(part_images)} images")
        turns.append((role, text))
        images.extend(part_images)
    if not turns:
        raise InputError("the conversation is empty" if not system else "the conversation has only system messages")
    return Conversation("\n\n".join(system) if system else None, turns, images)


def _content(content: Any, where: str, resolve: UrlResolver) -> tuple[str, list[np.ndarray]]:
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if isinstance(content, Mapping):  # a single part
        content = [content]
    if not isinstance(content, (list, tuple)):
        raise InputError(f"{where}: content must be a string or a list of parts, got {type(content).__name__}")
    texts: list[str] = []
    images: list[np.ndarray] = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, Mapping):
            raise InputError(f"{at} must be a dict with a 'type', got {type(part).__name__}")
        kind = part.get("type")
        if kind in ("text", "input_text"):
            t = part.get("text")
            if not isinstance(t, str):
                raise InputError(f"{at}: a text part needs a string 'text', got {_short(repr(t))}")
            texts.append(t)
        elif kind in ("image_url", "input_image"):
            ref = part.get("image_url")
            if isinstance(ref, Mapping):
                ref = ref.get("url")
            if not isinstance(ref, str) or not ref:
                raise InputError(f"{at}: an image_url part needs {{'image_url': {{'url': str}}}}")
            images.append(_image(ref, at, resolve))
        elif kind == "image":
            images.append(_hf_image(part, at, resolve))
        elif kind is None:
            raise InputError(f"{at} has no 'type' (expected 'text', 'image_url' or 'image')")
        else:
            raise InputError(f"{at}: unsupported part type {kind!r} (expected 'text', 'image_url' or 'image')")
    return "\n".join(texts), images


def _hf_image(part: Mapping[str, Any], at: str, resolve: UrlResolver) -> np.ndarray:
    for key in ("image", "url", "path", "base64"):
        if part.get(key) is not None:
            value = part[key]
            break
    else:
        raise InputError(f"{at}: an image part needs one of 'image', 'url', 'path' or 'base64'")
    if key == "base64":
        if not isinstance(value, str):
            raise InputError(f"{at}: 'base64' must be a string")
        value = value if value[:5].lower() == "data:" else "data:image/*;base64," + value
    if key in ("url", "path") and not isinstance(value, (str, os.PathLike)):
        raise InputError(f"{at}: {key!r} must be a string")
    return _image(value, at, resolve)


def _image(value: Any, at: str, resolve: UrlResolver) -> np.ndarray:
    try:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, str):
            value = resolve(value)
        return to_rgb_array(value)
    except JanusError as e:
        raise _located(e, at) from None


def _located(e: JanusError, at: str) -> JanusError:
    message = str(e)
    if message.startswith(at):
        return e
    try:
        return type(e)(f"{at}: {message}")
    except Exception:  # pragma: no cover - every janus-rs error takes one message
        return InputError(f"{at}: {message}")


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
