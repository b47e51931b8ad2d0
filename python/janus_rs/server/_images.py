"""``POST /v1/images/generations`` and the short-lived store behind ``response_format="url"``."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import JanusError
from ._engine import Cancelled, Engine, StopFlag
from ._errors import bad_request, from_janus_error
from ._params import get_float, get_int, get_seed, get_str

log = logging.getLogger("janus_rs.server")

MAX_IMAGES_PER_REQUEST = 10
"""OpenAI's limit on ``n``."""

MAX_SIDE = 2048
"""Largest side accepted in ``size`` (images are generated at the model's size and resized)."""

_FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}


@dataclass
class ImageParams:
    prompt: str
    n: int
    size: tuple[int, int] | None
    response_format: str
    output_format: str
    compression: int | None
    seed: int | None
    cfg_weight: float | None
    temperature: float | None
    top_k: int | None
    top_p: float | None
    num_steps: int | None


def parse_image_request(body: dict[str, Any], *, is_flow: bool, native_size: int, strict_size: bool,
                        max_n: int) -> ImageParams:
    prompt = get_str(body, "prompt")
    if not prompt.strip():
        raise bad_request("'prompt' is empty", param="prompt")
    n = get_int(body, "n", 1, minimum=1, maximum=max_n)
    size_text = get_str(body, "size", "auto")
    size: tuple[int, int] | None = None
    if size_text != "auto":
        m = re.fullmatch(r"\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*", size_text)
        if m is None:
            raise bad_request(f"'size' must be 'auto' or 'WIDTHxHEIGHT' such as '512x512', got {size_text!r}",
                              param="size")
        w, h = int(m.group(1)), int(m.group(2))
        if not (16 <= w <= MAX_SIDE and 16 <= h <= MAX_SIDE):
            raise bad_request(f"'size' sides must be between 16 and {MAX_SIDE} pixels, got {size_text!r}",
                              param="size")
        if strict_size and (w, h) != (native_size, native_size):
            raise bad_request(f"this server only makes {native_size}x{native_size} images (--strict-size)",
                              param="size")
        size = None if (w, h) == (native_size, native_size) else (w, h)
    if body.get("stream"):
        raise bad_request("'stream' is not supported for image generation", param="stream")
    guidance = get_float(body, "guidance_scale", None, minimum=-100.0, maximum=100.0)
    cfg = get_float(body, "cfg_weight", None, minimum=-100.0, maximum=100.0)
    if guidance is not None and cfg is not None and guidance != cfg:
        raise bad_request("'guidance_scale' and 'cfg_weight' are the same setting: give one", param="cfg_weight")
    params = ImageParams(
        prompt=prompt,
        n=n,
        size=size,
        response_format=get_str(body, "response_format", "b64_json", choices=("b64_json", "url")),
        output_format=get_str(body, "output_format", "png", choices=tuple(_FORMATS)),
        compression=get_int(body, "output_compression", None, minimum=0, maximum=100),
        seed=get_seed(body),
        cfg_weight=cfg if cfg is not None else guidance,
        temperature=get_float(body, "temperature", None, minimum=0.0, maximum=100.0),
        top_k=get_int(body, "top_k", None, minimum=1, maximum=2**31 - 1),
        top_p=get_float(body, "top_p", None, minimum=0.0, maximum=1.0, exclusive_minimum=True),
        num_steps=get_int(body, "num_inference_steps", None, minimum=1, maximum=1000),
    )
    if is_flow:
        given = [k for k in ("temperature", "top_k", "top_p") if getattr(params, k) is not None]
        if given:
            raise bad_request(f"{', '.join(repr(g) for g in given)}: JanusFlow generates by rectified flow "
                              "and takes 'guidance_scale' and 'num_inference_steps'", param=given[0])
    elif params.num_steps is not None:
        raise bad_request("'num_inference_steps' is for JanusFlow models; Janus-Pro samples a fixed number of "
                          "image tokens", param="num_inference_steps")
    return params


class ImageStore:
    """Encoded images served back at ``/v1/images/files/{id}.{ext}`` for ``response_format="url"``:
    kept ``ttl`` seconds (OpenAI's URLs live an hour) and at most ``max_bytes`` in all (oldest
    dropped first). Ids are random and unguessable: the files need no API key, as the client
    may hand the URL to a browser."""

    def __init__(self, ttl: float = 3600.0, max_bytes: int = 512 * 1024 * 1024) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[float, bytes, str]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, data: bytes, media_type: str, ext: str) -> str:
        name = f"{secrets.token_urlsafe(18)}.{ext}"
        with self._lock:
            self._expire(time.monotonic())
            self._items[name] = (time.monotonic() + self.ttl, data, media_type)
            self._bytes += len(data)
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, (_, old, _) = self._items.popitem(last=False)
                self._bytes -= len(old)
        return name

    def get(self, name: str) -> tuple[bytes, str] | None:
        with self._lock:
            self._expire(time.monotonic())
            item = self._items.get(name)
        return None if item is None else (item[1], item[2])

    def _expire(self, now: float) -> None:
        while self._items:
            name, (deadline, data, _) = next(iter(self._items.items()))
            if deadline > now:
                break
            del self._items[name]
            self._bytes -= len(data)


def _encode(array: np.ndarray, params: ImageParams) -> bytes:
    from PIL import Image

    image = Image.fromarray(array, "RGB")
    if params.size is not None:
        image = image.resize(params.size, Image.Resampling.LANCZOS)
    fmt, _ = _FORMATS[params.output_format]
    buf = io.BytesIO()
    options: dict[str, Any] = {}
    if fmt != "PNG" and params.compression is not None:
        options["quality"] = 100 - params.compression
    image.save(buf, fmt, **options)
    return buf.getvalue()


def generate_images(engine: Engine, params: ImageParams, stop_flag: StopFlag) -> tuple[list[bytes], int]:
    """The worker: run the model, then resize and encode every image."""
    from ..janus_flow import JanusFlow

    model = engine.model

    def progress(done: int, total: int) -> None:
        stop_flag.check()

    if isinstance(model, JanusFlow):
        result = model.generate(
            params.prompt, num_images=params.n, seed=params.seed, progress=progress,
            cfg_weight=2.0 if params.cfg_weight is None else params.cfg_weight,
            num_steps=30 if params.num_steps is None else params.num_steps,
        )
    else:
        result = model.generate(  # type: ignore[attr-defined]
            params.prompt, num_images=params.n, seed=params.seed, progress=progress,
            cfg_weight=5.0 if params.cfg_weight is None else params.cfg_weight,
            temperature=1.0 if params.temperature is None else params.temperature,
            top_k=params.top_k, top_p=params.top_p,
        )
    return [_encode(a, params) for a in result.array], result.seeds[0]


async def image_generations(request: Request, engine: Engine, body: dict[str, Any], store: ImageStore,
                            request_id: str, *, strict_size: bool, max_n: int) -> Response:
    from ..janus_flow import JanusFlow

    params = parse_image_request(body, is_flow=isinstance(engine.model, JanusFlow),
                                 native_size=engine.model.image_size, strict_size=strict_size, max_n=max_n)
    stop_flag = StopFlag()
    engine.admit()
    started = time.perf_counter()
    task = engine.start(lambda: generate_images(engine, params, stop_flag))
    task.add_done_callback(lambda _t: engine.leave())  # the slot is free when the work ends
    try:
        while not task.done():
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if not done and not stop_flag.is_set() and await request.is_disconnected():
                stop_flag.set()
    except BaseException:  # the handler itself was cancelled (shutdown): stop the work too
        stop_flag.set()
        raise
    try:
        encoded, seed = task.result()
    except Cancelled:
        log.info("%s images: client disconnected, stopped", request_id)
        return Response(status_code=499)
    except JanusError as e:
        raise from_janus_error(e) from None
    native = engine.model.image_size
    w, h = params.size or (native, native)
    log.info("%s images: %d image(s) of %dx%d (generated at %d) in %.2f s, seed %d", request_id, params.n, w, h,
             native, time.perf_counter() - started, seed)
    fmt, media_type = _FORMATS[params.output_format]
    data = []
    for blob in encoded:
        if params.response_format == "url":
            name = store.put(blob, media_type, params.output_format)
            data.append({"url": f"{str(request.base_url).rstrip('/')}/v1/images/files/{name}", "revised_prompt": None})
        else:
            data.append({"b64_json": base64.b64encode(blob).decode("ascii"), "revised_prompt": None})
    return JSONResponse({"created": int(time.time()), "data": data, "output_format": params.output_format,
                         "size": f"{w}x{h}", "seed": seed})
