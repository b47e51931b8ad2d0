"""``understand(stream=True)`` / ``chat(stream=True)``: text pieces as they decode, whole UTF-8
characters only, joined equal to the non-streamed answer; stopping early stops generation."""

from __future__ import annotations

import threading
import time

import pytest

from janus_rs import ContextLengthError, InputError
from janus_rs.streaming import TextStreamer

from conftest import REFERENCE

IMAGE = REFERENCE / "input.png"
MULTIBYTE = "héllo 😀 世界 ünïcödé ✓ naïve"


def test_streamer_holds_back_split_characters(model):
    ids = model.encode(MULTIBYTE)
    # The tiny byte-level BPE splits most of these characters across several tokens.
    assert any("\ufffd" in model.decode([i]) for i in ids)
    streamer = TextStreamer(model.decode)
    pieces = [streamer.push(i) for i in ids]
    pieces.append(streamer.flush())
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == MULTIBYTE == model.decode(ids)
    assert sum(1 for p in pieces if p) > 5  # it really streams, not all at the end


def test_streamer_flush_keeps_an_unfinished_character_visible(model):
    ids = model.encode("a😀")
    streamer = TextStreamer(model.decode)
    out = "".join(streamer.push(i) for i in ids[:-1])
    out += streamer.flush()
    assert out == model.decode(ids[:-1])


@pytest.mark.parametrize("image", [IMAGE, None])
def test_stream_joins_to_the_answer(model, image):
    answer = model.understand(image, "What is this?", max_new_tokens=40)
    pieces = list(model.understand(image, "What is this?", max_new_tokens=40, stream=True))
    assert len(pieces) > 1
    assert "".join(pieces) == answer


def test_stream_with_sampling_is_seeded(model):
    kw = dict(max_new_tokens=30, do_sample=True, temperature=0.8, top_p=0.9, seed=5)
    assert "".join(model.understand(IMAGE, "Describe.", stream=True, **kw)) == model.understand(IMAGE, "Describe.", **kw)


def test_chat_stream(model):
    messages = [
        {"role": "user", "content": "<image_placeholder>\nWhat is this?", "images": [IMAGE]},
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "What colour is it?"},
    ]
    assert "".join(model.chat(messages, max_new_tokens=20, stream=True)) == model.chat(messages, max_new_tokens=20)


def test_on_token_still_called_when_streaming(model):
    seen: list[int] = []
    text = "".join(model.understand(None, "Hi", max_new_tokens=12, stream=True, on_token=seen.append))
    assert len(seen) == 12 or (seen and seen[-1] == model.info["special_token_ids"]["eos"])
    assert text == model.decode(seen)


def test_breaking_out_stops_generation(model):
    produced: list[int] = []

    def slow(token_id: int) -> None:
        produced.append(token_id)
        time.sleep(0.01)

    stream = model.understand(None, "Hello", max_new_tokens=300, stream=True, on_token=slow)
    for _piece in stream:
        break
    stream.close()
    assert len(produced) < 100, len(produced)
    assert not [t for t in threading.enumerate() if t.name == "janus-rs-stream"]
    # The model is fine afterwards.
    assert isinstance(model.understand(None, "Hello", max_new_tokens=4), str)


def test_errors_surface_when_iterating(model):
    with pytest.raises(InputError, match="max_new_tokens"):
        model.understand(None, "x", max_new_tokens=-1, stream=True)  # checked at once
    stream = model.understand(None, "word " * 2000, max_new_tokens=4, stream=True)
    with pytest.raises(ContextLengthError):
        list(stream)


def test_pieces_arrive_while_tokens_are_produced(model):
    """Pieces reach the consumer as they decode, not all at the end."""
    def on_token(_t: int) -> None:
        time.sleep(0.005)

    start = time.perf_counter()
    arrivals = [time.perf_counter() - start
                for _ in model.understand(None, "Hello", max_new_tokens=80, stream=True, on_token=on_token)]
    total = time.perf_counter() - start
    assert len(arrivals) > 10
    assert arrivals[0] < total / 4, (arrivals[0], total)
