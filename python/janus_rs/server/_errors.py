"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}`` with an HTTP status."""

from __future__ import annotations

import logging
from typing import Any

from ..errors import ContextLengthError, ImageError, InputError, JanusError, NotFoundError

log = logging.getLogger("janus_rs.server")


class APIError(Exception):
    """An error answered to the client with ``status`` and an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def from_janus_error(e: JanusError) -> APIError:
    """The status and body a janus-rs exception maps to."""
    message = str(e)
    if isinstance(e, ContextLengthError):
        return APIError(400, message, code="context_length_exceeded")
    if isinstance(e, InputError) and "KV cache" in message and "the limit is" in message:
        # The core refused to allocate a cache that would not fit in memory now.
        return APIError(503, message, type="server_error", code="insufficient_memory", headers={"Retry-After": "5"})
    if isinstance(e, ImageError):
        return APIError(400, message, code="invalid_image")
    if isinstance(e, (InputError, NotFoundError)):
        return APIError(400, message)
    return APIError(500, message, type="server_error", code=type(e).__name__)
