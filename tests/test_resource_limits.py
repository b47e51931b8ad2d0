"""Requests whose KV cache would not fit are refused before anything is allocated.

The limit is ``JANUS_RS_MAX_KV_CACHE_BYTES`` (read at every call) or, on CPU, 90% of the
memory available when the call starts. The tiny model's cache is 2 × 2 layers × 4 heads × 16 ×
4 bytes = 1 KiB per sequence position.
"""

from __future__ import annotations

import pytest

from conftest import REFERENCE
from janus_rs import InputError

PER_POSITION = 2 * 2 * 4 * 16 * 4  # k and v, layers, kv heads, head dim, f32


@pytest.fixture
def limit(monkeypatch):
    def set_limit(value):
        monkeypatch.setenv("JANUS_RS_MAX_KV_CACHE_BYTES", str(value))

    yield set_limit
    monkeypatch.delenv("JANUS_RS_MAX_KV_CACHE_BYTES", raising=False)


def test_image_request_over_the_limit(model, limit):
    prompt_len = len(model.generation_prompt_ids("a red cat"))
    rows, positions = 2 * 4, prompt_len + 16  # 4 images: a cond and an uncond row each
    limit(rows * positions * PER_POSITION - 1)
    with pytest.raises(InputError, match=rf"needs a .* GB KV cache \({rows} sequence\(s\) × {positions} positions\).*JANUS_RS_MAX_KV_CACHE_BYTES"):
        model.generate("a red cat", num_images=4, progress=False)
    limit(rows * positions * PER_POSITION)  # exactly enough
    assert model.generate("a red cat", num_images=4, progress=False, seed=1).array.shape[0] == 4


def test_text_request_over_the_limit(model, limit):
    limit(PER_POSITION * 10)
    with pytest.raises(InputError, match="KV cache"):
        model.understand(REFERENCE / "input.png", "Describe this image.", max_new_tokens=8)
    # Nothing was left half-done: the model still answers once the limit allows it.
    limit(10**12)
    assert isinstance(model.understand(None, "hi", max_new_tokens=2), str)


def test_a_limit_that_is_not_a_number(model, limit):
    limit("lots")
    with pytest.raises(InputError, match='JANUS_RS_MAX_KV_CACHE_BYTES="lots" is not a whole number of bytes'):
        model.understand(None, "hi", max_new_tokens=2)


def test_default_limit_admits_ordinary_requests(model):
    # Without the variable the CPU limit is 90% of available memory: tiny requests pass.
    assert model.generate("a red cat", num_images=2, progress=False, seed=0).array.shape[0] == 2
