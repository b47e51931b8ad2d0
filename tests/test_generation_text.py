"""Decoding behaviour: stopping, seeded sampling, callbacks, threads."""

from __future__ import annotations

import threading

import pytest

from conftest import REFERENCE

INPUT = REFERENCE / "input.png"
Q = "Describe this image."


def tokens_of(model, **kw):
    out: list[int] = []
    model.understand(INPUT, Q, on_token=out.append, **kw)
    return out


def test_seeded_sampling_is_reproducible(model):
    a = tokens_of(model, max_new_tokens=16, do_sample=True, temperature=1.5, seed=123)
    b = tokens_of(model, max_new_tokens=16, do_sample=True, temperature=1.5, seed=123)
    c = tokens_of(model, max_new_tokens=16, do_sample=True, temperature=1.5, seed=124)
    assert a == b
    assert a != c
    greedy = tokens_of(model, max_new_tokens=16)
    assert a != greedy


def test_sampling_is_the_same_in_another_thread(model):
    expected = tokens_of(model, max_new_tokens=12, do_sample=True, top_p=0.9, top_k=50, seed=9)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        tokens_of(model, max_new_tokens=12, do_sample=True, top_p=0.9, top_k=50, seed=9))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 3


def test_zero_temperature_and_tiny_temperature_are_greedy(model):
    greedy = tokens_of(model, max_new_tokens=10)
    assert tokens_of(model, max_new_tokens=10, do_sample=True, temperature=0.0, seed=1) == greedy
    assert tokens_of(model, max_new_tokens=10, do_sample=True, temperature=1e-6, seed=1) == greedy


def test_stops_at_max_new_tokens_and_zero_is_empty(model):
    assert len(tokens_of(model, max_new_tokens=5)) == 5
    assert model.understand(INPUT, Q, max_new_tokens=0) == ""


def test_stops_at_eos(model):
    # Penalising every token but EOS steers greedy decoding into EOS, which must end the answer.
    eos = model.info["special_token_ids"]["eos"]
    out = tokens_of(model, max_new_tokens=400, repetition_penalty=1e9)
    assert eos in out and out[-1] == eos and len(out) < 400


def test_callback_errors_propagate_and_stop(model):
    seen = []

    def on_token(t):
        seen.append(t)
        if len(seen) == 3:
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        model.understand(INPUT, Q, max_new_tokens=20, on_token=on_token)
    assert len(seen) == 3


def test_text_only_question(model):
    answer = model.understand(None, "Say something.", max_new_tokens=4)
    assert isinstance(answer, str)


def test_system_prompt_override_changes_the_prompt(model):
    assert model.format_prompt([("user", "hi")], system_prompt="") == "<|User|>: hi\n\n<|Assistant|>:"
    assert model.format_prompt([("user", "hi")]).startswith("You are a helpful language and vision assistant.")
