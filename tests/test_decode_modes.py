"""The fixed-shape ("static") image-token decode, the graph-ready form of the loop, must give
the tokens the eager loop gives (`JANUS_RS_DECODE`): on the CPU with the host sampler, for one
prompt and for prompts of different lengths (left padding), with and without top-k; on CUDA
(skipped without a GPU) greedy static vs eager, and the captured graph vs static bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TINY, requires_cuda

PROMPTS = ["a red cat", "a very long prompt about a small green house by the sea at dawn"]


def tokens(model, monkeypatch, mode: str, prompt, **kw) -> np.ndarray:
    monkeypatch.setenv("JANUS_RS_DECODE", mode)
    out = model.generate(prompt, progress=False, **kw)
    return out.tokens


@pytest.fixture(scope="module")
def cpu_model():
    from janus_rs import JanusPro

    return JanusPro.from_pretrained(TINY, device="cpu", dtype="float32")


@pytest.mark.parametrize(
    "prompt,kw",
    [
        ("a red cat", dict(num_images=2, seed=3)),
        (PROMPTS, dict(num_images=2, seed=11)),
        (PROMPTS, dict(num_images=1, temperature=0.0)),
        ("a red cat", dict(num_images=3, seed=5, top_k=50, temperature=0.7)),
    ],
    ids=["one-prompt", "padded-prompts", "greedy-padded", "top-k"],
)
@pytest.mark.parametrize("mode", ["static", "graph"])
def test_static_decode_matches_eager_on_cpu(cpu_model, monkeypatch, prompt, kw, mode):
    eager = tokens(cpu_model, monkeypatch, "eager", prompt, **kw)
    other = tokens(cpu_model, monkeypatch, mode, prompt, **kw)
    np.testing.assert_array_equal(other, eager)


def test_unknown_decode_mode_is_an_input_error(cpu_model, monkeypatch):
    from janus_rs import InputError

    with pytest.raises(InputError, match="JANUS_RS_DECODE"):
        tokens(cpu_model, monkeypatch, "fast", "a red cat")


@pytest.fixture(scope="module")
def cuda_model():
    from janus_rs import JanusPro

    return JanusPro.from_pretrained(TINY, device="cuda", dtype="float32")


@requires_cuda
def test_static_decode_matches_eager_on_cuda_greedy(cuda_model, monkeypatch):
    eager = tokens(cuda_model, monkeypatch, "eager", PROMPTS, num_images=2, temperature=0.0)
    static = tokens(cuda_model, monkeypatch, "static", PROMPTS, num_images=2, temperature=0.0)
    np.testing.assert_array_equal(static, eager)


@requires_cuda
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_cuda_graph_matches_static(cuda_model, monkeypatch, temperature):
    kw = dict(num_images=2, seed=7, temperature=temperature)
    static = tokens(cuda_model, monkeypatch, "static", PROMPTS, **kw)
    graph = tokens(cuda_model, monkeypatch, "graph", PROMPTS, **kw)
    np.testing.assert_array_equal(graph, static)
    # A second call captures anew and must agree too (graphs are per call).
    np.testing.assert_array_equal(tokens(cuda_model, monkeypatch, "graph", PROMPTS, **kw), static)
