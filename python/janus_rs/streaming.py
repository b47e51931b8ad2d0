"""Text streaming: token ids in, printable text pieces out, as the answer is generated."""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator, Sequence

REPLACEMENT_CHAR = "\ufffd"


class TextStreamer:
    """Turns token ids into text pieces as they arrive.

    Byte-level BPE tokens can end in the middle of a UTF-8 character (an emoji or a CJK
    character often spans two or three tokens). Each new token is decoded together with the
    tokens since the last emitted piece; text that still ends in an incomplete character
    (decoded as U+FFFD) is held back until the character is complete. Joining every piece
    gives exactly ``decode(all ids)``.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._prefix_offset = 0  # tokens before this are fully emitted
        self._read_offset = 0  # tokens before this have been emitted as text

    def push(self, token_id: int) -> str:
        """Add one token; returns the new text it completes ("" if none yet)."""
        self._ids.append(int(token_id))
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._decode(self._ids[self._prefix_offset :])
        if len(new_text) > len(prefix_text) and not new_text.endswith(REPLACEMENT_CHAR):
            piece = new_text[len(prefix_text) :]
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
            return piece
        return ""

    def flush(self) -> str:
        """The text still held back at the end (an incomplete character stays as U+FFFD)."""
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._decode(self._ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._ids)
        return new_text[len(prefix_text) :]


class _StopStreaming(Exception):
    """Raised inside the token callback when the consumer stopped iterating."""


_DONE = object()


def stream_tokens(
    run: Callable[[Callable[[int], None]], Any],
    decode: Callable[[Sequence[int]], str],
    on_token: Callable[[int], Any] | None = None,
) -> Iterator[str]:
    """Run ``run(callback)`` in a worker thread and yield decoded text pieces as ``callback``
    receives token ids. The native generation releases the GIL, so the consumer runs while
    tokens are produced. Closing the iterator early (``break``, garbage collection, Ctrl-C in
    the consumer) stops the generation at its next token."""
    tokens: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()

    def callback(token_id: int) -> None:
        if stop.is_set():
            raise _StopStreaming()
        if on_token is not None:
            on_token(token_id)
        tokens.put(token_id)

    def worker() -> None:
        try:
            run(callback)
        except _StopStreaming:
            pass
        except BaseException as e:  # handed to the consumer, raised there
            tokens.put(e)
        finally:
            tokens.put(_DONE)

    thread = threading.Thread(target=worker, name="janus-rs-stream", daemon=True)
    streamer = TextStreamer(decode)
    thread.start()
    try:
        while True:
            item = tokens.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            piece = streamer.push(item)
            if piece:
                yield piece
        rest = streamer.flush()
        if rest:
            yield rest
    finally:
        stop.set()
        thread.join()
