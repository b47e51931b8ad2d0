"""Reading and checking request fields: every problem is a 400 that names the field."""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

from starlette.requests import Request

from ._errors import APIError, bad_request

_MISSING = object()


async def read_json(request: Request, max_bytes: int) -> dict[str, Any]:
    """The request's JSON object; 413 past ``max_bytes``, 400 for anything but a JSON object."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise APIError(413, f"request body of {int(declared)} bytes exceeds the limit of {max_bytes} bytes",
                       code="request_too_large")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise APIError(413, f"request body exceeds the limit of {max_bytes} bytes", code="request_too_large")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise bad_request("the request body is empty: send a JSON object")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise bad_request(f"the request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def get_str(body: Mapping[str, Any], name: str, default: Any = _MISSING, *, choices: tuple[str, ...] | None = None) -> Any:
    value = body.get(name)
    if value is None:
        if default is _MISSING:
            raise bad_request(f"'{name}' is required", param=name)
        return default
    if not isinstance(value, str):
        raise bad_request(f"'{name}' must be a string, got {_json_type(value)}", param=name)
    if choices is not None and value not in choices:
        raise bad_request(f"'{name}' must be one of {', '.join(repr(c) for c in choices)}, got {value!r}", param=name)
    return value


def get_int(body: Mapping[str, Any], name: str, default: Any, *, minimum: int, maximum: int) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"'{name}' must be an integer, got {_json_type(value)}", param=name)
    if not minimum <= value <= maximum:
        raise bad_request(f"'{name}' must be between {minimum} and {maximum}, got {value}", param=name)
    return value


def get_float(body: Mapping[str, Any], name: str, default: Any, *, minimum: float, maximum: float,
              exclusive_minimum: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad_request(f"'{name}' must be a number, got {_json_type(value)}", param=name)
    value = float(value)
    low_ok = value > minimum if exclusive_minimum else value >= minimum
    if not (math.isfinite(value) and low_ok and value <= maximum):
        low = "(" if exclusive_minimum else "["
        raise bad_request(f"'{name}' must be in {low}{minimum:g}, {maximum:g}], got {value:g}", param=name)
    return value


def get_bool(body: Mapping[str, Any], name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request(f"'{name}' must be true or false, got {_json_type(value)}", param=name)
    return value


def get_seed(body: Mapping[str, Any]) -> int | None:
    seed: int | None = get_int(body, "seed", None, minimum=0, maximum=2**64 - 1)
    return seed


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
