"""Text-to-image behaviour: seeds, batching, progress, interruption, bad input."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from janus_rs import GenerationResult, InputError


def test_seed_reproducible_and_reported(model):
    a = model.generate("a red cat", num_images=2, seed=7, progress=False)
    b = model.generate("a red cat", num_images=2, seed=7, progress=False)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.array, b.array)
    assert a.seed == 7 and isinstance(a, GenerationResult) and len(a) == 2
    c = model.generate("a red cat", num_images=2, progress=False)
    d = model.generate("a red cat", num_images=2, seed=c.seed, progress=False)
    np.testing.assert_array_equal(c.tokens, d.tokens)
    assert not np.array_equal(a.tokens, model.generate("a red cat", num_images=2, seed=8, progress=False).tokens)


def test_same_seed_same_images_in_other_threads(model):
    expected = model.generate_tokens("a red cat", num_images=3, seed=11, progress=False)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        model.generate_tokens("a red cat", num_images=3, seed=11, progress=False))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, expected)


def test_prompt_list_batches_like_separate_calls(model):
    prompts = ["a red cat", "a blue dog sitting on a green hill"]
    together = model.generate_tokens(prompts, num_images=2, temperature=0, progress=False)
    assert together.shape == (4, 16)
    for i, p in enumerate(prompts):
        alone = model.generate_tokens(p, num_images=1, temperature=0, progress=False)
        np.testing.assert_array_equal(together[2 * i], alone[0])
        np.testing.assert_array_equal(together[2 * i + 1], alone[0])


def test_greedy_images_are_identical_across_the_batch(model):
    out = model.generate("a red cat", num_images=3, temperature=0, progress=False)
    assert (out.tokens == out.tokens[0]).all()
    assert out.prompts == ["a red cat"] * 3


def test_top_k_one_is_greedy(model):
    greedy = model.generate_tokens("a red cat", temperature=0, progress=False)
    np.testing.assert_array_equal(model.generate_tokens("a red cat", top_k=1, seed=3, progress=False), greedy)


def test_progress_callback_and_bar(model, capsys):
    calls = []
    model.generate_tokens("a red cat", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 16) for i in range(1, 17)]
    model.generate_tokens("a red cat", progress=True)  # tqdm bar, must not fail


def test_interrupt_from_callback_stops_within_a_step(model):
    calls = []

    def stop(done, total):
        calls.append(done)
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.generate("a red cat", progress=stop)
    assert calls == [1, 2, 3]
    assert model.generate("a red cat", progress=False, seed=1).array.shape == (1, 64, 64, 3)


def test_decode_tokens_accepts_1d_and_2d(model):
    tokens = model.generate_tokens("a red cat", seed=1, progress=False)
    np.testing.assert_array_equal(model.decode_tokens(tokens[0]), model.decode_tokens(tokens))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"prompt": ""}, "the prompt is empty"),
        ({"prompt": "   "}, "the prompt is empty"),
        ({"prompt": []}, "non-empty list of strings"),
        ({"prompt": ["ok", 3]}, "non-empty list of strings"),
        ({"num_images": 0}, "num_images must be an integer >= 1"),
        ({"num_images": 10_000}, "exceeds the limit of 64"),
        ({"num_images": 40, "prompt": ["a", "b"]}, "80 images exceeds the limit of 64"),
        ({"cfg_weight": -1.0}, "cfg_weight must be a finite number >= 0"),
        ({"cfg_weight": float("inf")}, "cfg_weight must be a finite number >= 0"),
        ({"cfg_weight": "5"}, "cfg_weight must be a number"),
        ({"temperature": -0.5}, "temperature must be a finite number >= 0"),
        ({"temperature": float("nan")}, "temperature must be a finite number >= 0"),
        ({"top_p": 2.0}, r"top_p must be in \(0, 1\]"),
        ({"seed": -1}, "seed must be an integer >= 0"),
    ],
)
def test_bad_generation_input(model, kwargs, message):
    kwargs = {"prompt": "a red cat", "progress": False, **kwargs}
    prompt = kwargs.pop("prompt")
    with pytest.raises(InputError, match=message):
        model.generate(prompt, **kwargs)


@pytest.mark.parametrize(
    "tokens,message",
    [
        (np.full((1, 16), 256), r"tokens must be in \[0, 256\)"),
        (np.full((1, 16), -1), r"tokens must be in \[0, 256\)"),
        (np.zeros((1, 15), np.int64), r"tokens must have shape \(n, 16\)"),
        (np.zeros((0, 16), np.int64), r"tokens must have shape \(n, 16\)"),
        (np.zeros((1, 16), np.float32), "tokens must be integers"),
    ],
)
def test_bad_tokens_to_decode(model, tokens, message):
    with pytest.raises(InputError, match=message):
        model.decode_tokens(tokens)
