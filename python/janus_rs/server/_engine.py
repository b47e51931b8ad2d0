"""The model behind the server: admission (bounded queue), a semaphore around model calls, and
blocking native work in worker threads that a stop flag can interrupt within one token/step."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, TypeVar

import anyio.to_thread

from .._chat import ChatModel
from ._errors import APIError

T = TypeVar("T")


class Cancelled(Exception):
    """Raised in a token/step callback when the client went away; stops the native work."""


class Engine:
    """One loaded model with its limits.

    At most ``max_concurrency`` model calls run at once; up to ``max_queue`` more wait for a
    turn; a request beyond that is refused with 429. Native calls release the GIL, so waiting
    requests, streaming and other routes keep being served while the model computes.
    """

    def __init__(self, model: ChatModel, model_id: str, *, max_concurrency: int = 1, max_queue: int = 64) -> None:
        self.model = model
        self.model_id = model_id
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._admitted = 0
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def busy(self) -> int:
        """Requests running or waiting for a turn."""
        return self._admitted

    def admit(self) -> None:
        """Count a request in, or refuse it with 429 when the queue is full."""
        if self._admitted >= self.max_concurrency + self.max_queue:
            raise APIError(
                429,
                f"the server is busy: {self.max_concurrency} request(s) running and {self.max_queue} waiting; retry later",
                type="rate_limit_error",
                code="queue_full",
                headers={"Retry-After": "1"},
            )
        self._admitted += 1

    def leave(self) -> None:
        self._admitted -= 1

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a worker thread once the semaphore allows (the caller has been admitted)."""
        async with self._semaphore:
            return await anyio.to_thread.run_sync(fn)

    def start(self, fn: Callable[[], T]) -> "asyncio.Task[T]":
        """Like :meth:`run`, as a task that lives on even if the request handler is cancelled:
        its slot is released when the thread finishes, not when the client leaves."""
        task = asyncio.ensure_future(self.run(fn))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task


class StopFlag:
    """Set when the client disconnects; checked by the native loop's callbacks."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled()
