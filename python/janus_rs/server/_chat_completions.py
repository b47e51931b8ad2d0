"""``POST /v1/chat/completions``: parsing, generation in a worker thread, JSON and SSE answers."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .._messages import Conversation, normalise_conversation
from ..errors import JanusError
from ..streaming import TextStreamer
from ._engine import Cancelled, Engine, StopFlag
from ._errors import APIError, bad_request, from_janus_error
from ._media import MediaPolicy
from ._params import get_bool, get_float, get_int, get_seed

log = logging.getLogger("janus_rs.server")

MAX_CHOICES = 8
"""Most choices (``n``) one chat request may ask for."""

DEFAULT_MAX_TOKENS = 512
"""New tokens when a request gives no ``max_tokens`` (the official ``max_new_tokens``)."""

_UNSUPPORTED = {
    "tools": "tool calling is not supported by Janus models",
    "functions": "function calling is not supported by Janus models",
    "audio": "audio output is not supported",
    "prediction": "predicted outputs are not supported",
}


@dataclass
class ChatParams:
    messages: Any
    max_tokens: int
    do_sample: bool
    temperature: float
    top_p: float | None
    top_k: int | None
    repetition_penalty: float | None
    seed: int | None
    stop: list[str]
    n: int
    stream: bool
    include_usage: bool


def parse_chat_request(body: dict[str, Any], max_tokens_default: int = DEFAULT_MAX_TOKENS) -> ChatParams:
    """Check a chat request's fields; every problem is a 400 that names the field."""
    messages = body.get("messages")
    if messages is None:
        raise bad_request("'messages' is required", param="messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array of messages", param="messages")
    for name, why in _UNSUPPORTED.items():
        if body.get(name):
            raise bad_request(f"'{name}': {why}", param=name)
    if body.get("tool_choice") not in (None, "none"):
        raise bad_request("'tool_choice': tool calling is not supported by Janus models", param="tool_choice")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise bad_request("'logprobs' is not supported", param="logprobs")
    modalities = body.get("modalities")
    if modalities is not None and (not isinstance(modalities, list) or set(modalities) - {"text"}):
        raise bad_request("'modalities' must be [\"text\"]: chat answers are text only", param="modalities")
    response_format = body.get("response_format")
    if response_format is not None and not (isinstance(response_format, dict) and response_format.get("type") == "text"):
        raise bad_request("'response_format': only {\"type\": \"text\"} is supported", param="response_format")
    for name in ("presence_penalty", "frequency_penalty"):
        if get_float(body, name, 0.0, minimum=-2.0, maximum=2.0) != 0.0:
            raise bad_request(f"'{name}' is not supported; use 'repetition_penalty' (> 1 discourages repeats)",
                              param=name)
    if body.get("logit_bias"):
        raise bad_request("'logit_bias' is not supported", param="logit_bias")

    max_tokens = get_int(body, "max_completion_tokens", None, minimum=1, maximum=2**31 - 1)
    if max_tokens is None:
        max_tokens = get_int(body, "max_tokens", max_tokens_default, minimum=1, maximum=2**31 - 1)
    temperature = get_float(body, "temperature", None, minimum=0.0, maximum=100.0)
    top_p = get_float(body, "top_p", None, minimum=0.0, maximum=1.0, exclusive_minimum=True)
    top_k = get_int(body, "top_k", None, minimum=0, maximum=2**31 - 1) or None
    repetition_penalty = get_float(body, "repetition_penalty", None, minimum=0.0, maximum=100.0,
                                   exclusive_minimum=True)
    # Greedy unless sampling is asked for, as the official README decodes; temperature 0 wins.
    do_sample = temperature != 0.0 and (
        (temperature is not None) or (top_p is not None and top_p < 1.0) or top_k is not None
    )
    stop = body.get("stop")
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= 4:
        stops = list(stop)
    else:
        raise bad_request("'stop' must be a string or an array of at most 4 strings", param="stop")
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise bad_request("'stream_options' must be an object", param="stream_options")
    stream = get_bool(body, "stream", False)
    return ChatParams(
        messages=messages,
        max_tokens=max_tokens,
        do_sample=do_sample,
        temperature=1.0 if temperature is None or not do_sample else temperature,
        top_p=top_p if do_sample else None,
        top_k=top_k if do_sample else None,
        repetition_penalty=repetition_penalty,
        seed=get_seed(body),
        stop=[s for s in stops if s],
        n=get_int(body, "n", 1, minimum=1, maximum=MAX_CHOICES),
        stream=stream,
        include_usage=bool(stream_options and get_bool(stream_options, "include_usage", False)),
    )


class StopMatcher:
    """Cuts text at the first stop string, holding back any tail that may begin one."""

    def __init__(self, stops: list[str]) -> None:
        self._stops = stops
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """The text that is safe to emit now, and whether a stop string was reached."""
        if not self._stops:
            return text, False
        buffer = self._held + text
        hits = [i for i in (buffer.find(s) for s in self._stops) if i >= 0]
        if hits:
            self._held = ""
            return buffer[: min(hits)], True
        keep = 0
        for s in self._stops:
            for k in range(min(len(s) - 1, len(buffer)), keep, -1):
                if buffer.endswith(s[:k]):
                    keep = k
                    break
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held


Emit = Callable[..., None]


def generate_choices(engine: Engine, conversation: Conversation, params: ChatParams, seed: int,
                     stop_flag: StopFlag, emit: Emit) -> None:
    """The worker: every choice in turn. Emits ``("text", index, piece)``, ``("end", index,
    finish_reason)`` and finally ``("done", prompt_tokens, completion_tokens)``, or
    ``("error", exception)`` / ``("cancelled",)``."""
    model = engine.model
    native = model._native
    eos = model.info["special_token_ids"]["eos"]
    try:
        prompt = model.format_prompt(conversation.turns, system_prompt=conversation.system_prompt)
        prompt_tokens = len(native.prompt_ids(prompt)[0])
        completion_tokens = 0
        for index in range(params.n):
            streamer = TextStreamer(lambda ids: native.decode(list(ids), skip_special_tokens=True))
            matcher = StopMatcher(params.stop)
            generated: list[int] = []

            class _StopString(Exception):
                pass

            def on_token(token: int) -> None:
                stop_flag.check()
                generated.append(token)
                text, stopped = matcher.feed(streamer.push(token))
                if text:
                    emit("text", index, text)
                if stopped:
                    raise _StopString()

            finish = "length"
            try:
                ids, _ = native.generate_reply(
                    prompt, conversation.images, params.max_tokens, params.do_sample, params.temperature,
                    params.top_k, params.top_p, params.repetition_penalty, (seed + index) % 2**64, on_token,
                )
                if ids and ids[-1] == eos:
                    finish = "stop"
                text, stopped = matcher.feed(streamer.flush())
                text += "" if stopped else matcher.flush()
                if text:
                    emit("text", index, text)
                finish = "stop" if stopped else finish
            except _StopString:
                finish = "stop"
            completion_tokens += len(generated)
            emit("end", index, finish)
        emit("done", prompt_tokens, completion_tokens)
    except Cancelled:
        emit("cancelled")
    except BaseException as e:  # reported to the client by the request handler
        emit("error", e)


async def chat_completions(request: Request, engine: Engine, body: dict[str, Any], media: MediaPolicy,
                           request_id: str, max_tokens_default: int) -> Response:
    params = parse_chat_request(body, max_tokens_default)
    seed = params.seed if params.seed is not None else secrets.randbits(63)
    engine.admit()
    admitted = True
    try:
        try:
            if _has_images(params.messages):  # decoding (and maybe downloading) off the event loop
                conversation = await asyncio.to_thread(normalise_conversation, params.messages, resolve=media.resolve)
            else:
                conversation = normalise_conversation(params.messages, resolve=media.resolve)
        except JanusError as e:
            raise _media_error(e) from None
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        stop_flag = StopFlag()

        def emit(*event: Any) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        task = engine.start(lambda: generate_choices(engine, conversation, params, seed, stop_flag, emit))
        task.add_done_callback(lambda _t: engine.leave())
        admitted = False  # the task leaves when the worker ends
        meta = {"id": f"chatcmpl-{request_id}", "created": int(time.time()), "model": engine.model_id}
        started = time.perf_counter()
        try:
            first = await _next_event(events, request, stop_flag)
            if first[0] == "error":
                raise _error_of(first[1])
            if params.stream:
                return _SSEResponse(_sse(first, events, params, meta, seed, request_id, started), stop_flag.set)
            return await _collect(first, events, request, stop_flag, params, meta, seed, request_id, started)
        except BaseException:
            stop_flag.set()
            raise
    finally:
        if admitted:
            engine.leave()


async def _next_event(events: "asyncio.Queue[tuple[Any, ...]]", request: Request | None,
                      stop_flag: StopFlag) -> tuple[Any, ...]:
    """The next worker event; while waiting, a client that disconnects sets the stop flag."""
    while True:
        try:
            return await asyncio.wait_for(events.get(), timeout=0.25)
        except asyncio.TimeoutError:
            if request is not None and not stop_flag.is_set() and await request.is_disconnected():
                stop_flag.set()


async def _collect(event: tuple[Any, ...], events: "asyncio.Queue[tuple[Any, ...]]", request: Request,
                   stop_flag: StopFlag, params: ChatParams, meta: dict[str, Any], seed: int, request_id: str,
                   started: float) -> Response:
    texts: list[list[str]] = [[] for _ in range(params.n)]
    finish: list[str] = ["length"] * params.n
    while True:
        kind = event[0]
        if kind == "text":
            texts[event[1]].append(event[2])
        elif kind == "end":
            finish[event[1]] = event[2]
        elif kind == "done":
            usage = _usage(event[1], event[2])
            break
        elif kind == "cancelled":
            log.info("%s chat: client disconnected, stopped", request_id)
            return Response(status_code=499)
        elif kind == "error":
            raise _error_of(event[1])
        event = await _next_event(events, request, stop_flag)
    log.info("%s chat: %d prompt + %d completion tokens in %.2f s", request_id, usage["prompt_tokens"],
             usage["completion_tokens"], time.perf_counter() - started)
    choices = [
        {"index": i, "message": {"role": "assistant", "content": "".join(texts[i])}, "logprobs": None,
         "finish_reason": finish[i]}
        for i in range(params.n)
    ]
    return JSONResponse({**meta, "object": "chat.completion", "choices": choices, "usage": usage,
                         "system_fingerprint": _fingerprint(), "seed": seed if params.do_sample else None})


async def _sse(event: tuple[Any, ...], events: "asyncio.Queue[tuple[Any, ...]]", params: ChatParams,
               meta: dict[str, Any], seed: int, request_id: str, started: float) -> AsyncIterator[str]:
    base = {**meta, "object": "chat.completion.chunk", "system_fingerprint": _fingerprint(),
            "seed": seed if params.do_sample else None}

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> str:
        body = {**base, "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    opened: set[int] = set()
    pending: list[tuple[Any, ...]] = []
    while True:
        kind = event[0]
        if kind == "text":  # pieces that are already waiting go out as one chunk
            while not events.empty():
                following = events.get_nowait()
                if following[0] == "text" and following[1] == event[1]:
                    event = ("text", event[1], event[2] + following[2])
                else:
                    pending.append(following)
                    break
        if kind in ("text", "end") and event[1] not in opened:
            opened.add(event[1])
            yield chunk(event[1], {"role": "assistant", "content": ""})
        if kind == "text":
            yield chunk(event[1], {"content": event[2]})
        elif kind == "end":
            yield chunk(event[1], {}, event[2])
        elif kind == "done":
            if params.include_usage:
                body = {**base, "choices": [], "usage": _usage(event[1], event[2])}
                yield f"data: {json.dumps(body)}\n\n"
            log.info("%s chat (stream): %d prompt + %d completion tokens in %.2f s", request_id, event[1],
                     event[2], time.perf_counter() - started)
            break
        elif kind == "cancelled":
            return
        elif kind == "error":
            err = _error_of(event[1])
            log.warning("%s chat (stream) failed after the response started: %s", request_id, err.message)
            yield f"data: {json.dumps(err.body())}\n\n"
            break
        event = pending.pop(0) if pending else await events.get()
    yield "data: [DONE]\n\n"


class _SSEResponse(StreamingResponse):
    """An event stream whose end, however it comes (finished, client gone, cancelled), stops
    the generation: a suspended generator is never closed by the server, so don't rely on it."""

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def _has_images(messages: list[Any]) -> bool:
    return any(isinstance(m, dict) and (m.get("images") or not isinstance(m.get("content"), (str, type(None))))
               for m in messages)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _fingerprint() -> str:
    from .. import __version__

    return f"janus-rs-{__version__}"


def _media_error(e: JanusError) -> APIError:
    from ._media import ImageTooLarge

    if isinstance(e, ImageTooLarge):
        return APIError(413, str(e), code="image_too_large")
    return from_janus_error(e)


def _error_of(e: BaseException) -> APIError:
    if isinstance(e, APIError):
        return e
    if isinstance(e, JanusError):
        return from_janus_error(e)
    log.exception("unexpected error in a chat request", exc_info=e)
    return APIError(500, f"internal error: {type(e).__name__}: {e}", type="server_error")
