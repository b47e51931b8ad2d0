"""``create_app``: the OpenAI-compatible ASGI app around one Janus model."""

from __future__ import annotations

import asyncio
import hmac
import os
import socket
import logging
import re
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Sequence

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._chat import ChatModel
from ._chat_completions import DEFAULT_MAX_TOKENS, chat_completions
from ._engine import Engine
from ._errors import APIError
from ._images import MAX_IMAGES_PER_REQUEST, ImageStore, image_generations
from ._media import MediaPolicy
from ._params import read_json

log = logging.getLogger("janus_rs.server")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _worker() -> str:
    """Which process answered (``x-janus-rs-worker``), so replicas behind a load balancer can
    be told apart. Computed per call: a replica may run a pickled copy of the app."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class ServerOptions:
    """Everything :func:`create_app` takes besides the model (see its docstring)."""

    served_model_name: str | None = None
    api_key: str | None = None
    max_concurrency: int = 1
    max_queue: int = 64
    max_body_bytes: int = 64 * 1024 * 1024
    max_images: int = MAX_IMAGES_PER_REQUEST
    default_max_tokens: int = DEFAULT_MAX_TOKENS
    strict_size: bool = False
    image_url_ttl: float = 3600.0
    media: MediaPolicy = MediaPolicy()


def create_app(
    model: str | ChatModel,
    *,
    vae: str | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    quantize: str | None = None,
    threads: int | None = None,
    revision: str | None = None,
    local_files_only: bool = False,
    served_model_name: str | None = None,
    api_key: str | None = None,
    max_concurrency: int = 1,
    max_queue: int = 64,
    max_body_bytes: int = 64 * 1024 * 1024,
    max_images: int = MAX_IMAGES_PER_REQUEST,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
    strict_size: bool = False,
    image_url_ttl: float = 3600.0,
    remote_media: bool = True,
    allowed_media_domains: Sequence[str] | None = None,
    allowed_local_media_path: str | None = None,
    max_media_bytes: int = 20 * 1024 * 1024,
    media_timeout: float = 10.0,
) -> FastAPI:
    """An OpenAI-compatible app (FastAPI/ASGI) serving one Janus-Pro, Janus or JanusFlow model.

    The model is loaded in the app's lifespan (so the same app runs under uvicorn, other ASGI
    servers and replica managers such as Ray Serve, each replica loading its own copy), unless
    an already loaded :class:`~janus_rs.JanusPro` / :class:`~janus_rs.JanusFlow` is passed.

    Routes: ``GET /health``, ``GET /v1/models``, ``GET /v1/models/{id}``,
    ``POST /v1/chat/completions`` (text and image parts, streaming), ``POST
    /v1/images/generations`` and ``GET /v1/images/files/{name}`` (the images of
    ``response_format="url"``).

    Args:
        model: a folder or hub id (loaded at start-up with ``vae``, ``device``, ``dtype``,
            ``quantize``, ``threads``, ``revision``, ``local_files_only`` as in
            ``from_pretrained``), or a loaded model.
        served_model_name: the id clients use (default: the model's name).
        api_key: if set, every ``/v1`` request needs ``Authorization: Bearer <api_key>`` (401
            otherwise); image file URLs stay open (their names are unguessable).
        max_concurrency: model calls running at once (default 1: on CPU they share the cores,
            on one GPU one stream). Further requests wait.
        max_queue: requests that may wait; more are refused with 429.
        max_body_bytes: largest request body (413 past it).
        max_images: most images (``n``) per image request, at most 10.
        default_max_tokens: new tokens for a chat request without ``max_tokens`` (512).
        strict_size: refuse image ``size`` values other than the model's (else resized with
            LANCZOS, as the official demos upscale).
        image_url_ttl: seconds an image of ``response_format="url"`` stays downloadable.
        remote_media: fetch ``http(s)://`` image URLs in chat messages (with
            ``max_media_bytes`` and ``media_timeout``); ``data:`` URLs always work.
        allowed_media_domains: only fetch images from these hosts (and subdomains).
        allowed_local_media_path: a folder whose images may be named by ``file://`` URLs or
            paths (default: none, local files are refused).
    """
    options = ServerOptions(
        served_model_name=served_model_name,
        api_key=api_key,
        max_concurrency=_positive("max_concurrency", max_concurrency),
        max_queue=_positive("max_queue", max_queue, minimum=0),
        max_body_bytes=_positive("max_body_bytes", max_body_bytes),
        max_images=min(_positive("max_images", max_images), 64),
        default_max_tokens=_positive("default_max_tokens", default_max_tokens),
        strict_size=bool(strict_size),
        image_url_ttl=float(image_url_ttl),
        media=MediaPolicy(
            remote=bool(remote_media),
            allowed_domains=None if allowed_media_domains is None else list(allowed_media_domains),
            local_folder=allowed_local_media_path,
            max_bytes=_positive("max_media_bytes", max_media_bytes),
            timeout=float(media_timeout),
        ),
    )
    load_options: dict[str, Any] = dict(vae=vae, device=device, dtype=dtype, quantize=quantize, threads=threads,
                                        revision=revision, local_files_only=local_files_only)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if isinstance(model, ChatModel):
            loaded = model
        else:
            from .._auto import load_model

            log.info("loading %s", model)
            loaded = await asyncio.to_thread(load_model, model, progress=False, **load_options)
            log.info("loaded %r", loaded)
        if not getattr(loaded, "has_vae", True):
            log.warning("%s is a JanusFlow model loaded without a VAE: image requests will be refused "
                        "(pass vae= / --vae stabilityai/sdxl-vae)", loaded.name)
        app.state.engine = Engine(loaded, options.served_model_name or loaded.name,
                                  max_concurrency=options.max_concurrency, max_queue=options.max_queue)
        app.state.images = ImageStore(ttl=options.image_url_ttl)
        yield
        app.state.engine = None

    app = FastAPI(title="janus-rs", summary="OpenAI-compatible Janus server", lifespan=lifespan)
    app.state.options = options
    app.state.engine = None
    _add_routes(app)
    _add_error_handlers(app)
    return app


def _positive(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _engine(request: Request) -> Engine:
    engine: Engine | None = request.app.state.engine
    if engine is None:
        raise APIError(503, "the model is not loaded (the app's lifespan has not run, or it is shutting down)",
                       type="server_error", code="model_not_loaded")
    return engine


def _start(request: Request, *, auth: bool = True) -> str:
    """The request id (the client's ``X-Request-Id`` if sane), after the API key check."""
    given = request.headers.get("x-request-id", "")
    request_id = given if _REQUEST_ID.match(given) else secrets.token_hex(8)
    request.state.request_id = request_id
    key = request.app.state.options.api_key
    if auth and key is not None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            raise APIError(401, "invalid or missing API key: send 'Authorization: Bearer <key>'",
                           type="authentication_error", code="invalid_api_key")
    return request_id


def _check_model(engine: Engine, body: dict[str, Any]) -> None:
    asked = body.get("model")
    if asked is None:
        return
    if not isinstance(asked, str):
        raise APIError(400, "'model' must be a string", param="model")
    if asked not in (engine.model_id, engine.model.name):
        raise APIError(404, f"the model {asked!r} does not exist on this server; it serves {engine.model_id!r}",
                       param="model", code="model_not_found")


def _model_card(engine: Engine) -> dict[str, Any]:
    return {"id": engine.model_id, "object": "model", "created": 0, "owned_by": "janus-rs",
            "max_model_len": engine.model.info.get("context_length")}


def _add_routes(app: FastAPI) -> None:
    @app.get("/health")
    async def health(request: Request) -> Response:
        engine = _engine(request)
        return JSONResponse({"status": "ok", "model": engine.model_id, "busy": engine.busy})

    @app.get("/v1/models")
    async def list_models(request: Request) -> Response:
        _start(request)
        return JSONResponse({"object": "list", "data": [_model_card(_engine(request))]})

    @app.get("/v1/models/{model_id:path}")
    async def get_model(request: Request, model_id: str) -> Response:
        _start(request)
        engine = _engine(request)
        _check_model(engine, {"model": model_id})
        return JSONResponse(_model_card(engine))

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        request_id = _start(request)
        engine = _engine(request)
        options: ServerOptions = request.app.state.options
        body = await read_json(request, options.max_body_bytes)
        _check_model(engine, body)
        response = await chat_completions(request, engine, body, options.media, request_id,
                                          options.default_max_tokens)
        response.headers["x-request-id"] = request_id
        response.headers["x-janus-rs-worker"] = _worker()
        return response

    @app.post("/v1/images/generations")
    async def images(request: Request) -> Response:
        request_id = _start(request)
        engine = _engine(request)
        options: ServerOptions = request.app.state.options
        body = await read_json(request, options.max_body_bytes)
        _check_model(engine, body)
        response = await image_generations(request, engine, body, request.app.state.images, request_id,
                                           strict_size=options.strict_size, max_n=options.max_images)
        response.headers["x-request-id"] = request_id
        response.headers["x-janus-rs-worker"] = _worker()
        return response

    @app.get("/v1/images/files/{name}")
    async def image_file(request: Request, name: str) -> Response:
        _start(request, auth=False)
        store: ImageStore | None = getattr(request.app.state, "images", None)
        item = None if store is None else store.get(name)
        if item is None:
            raise APIError(404, f"no image {name!r}: image URLs expire after a while", code="image_not_found")
        data, media_type = item
        return Response(data, media_type=media_type)


def _error_response(request: Request, error: APIError) -> Response:
    headers = dict(error.headers)
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        headers["x-request-id"] = request_id
    if error.status >= 500:
        log.warning("%s %s %s: %d %s", request_id or "-", request.method, request.url.path, error.status, error.message)
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> Response:
        return _error_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error_response(request, APIError(exc.status_code, str(exc.detail), type=kind))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
        return _error_response(request, APIError(500, f"internal error: {type(exc).__name__}", type="server_error"))
