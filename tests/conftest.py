"""Shared fixtures: the bundled tiny Janus-Pro checkpoint and its reference tensors (made by
``scripts/make_fixtures.py`` with the transformers port as the oracle), and the weight files
derived from it at the start of the session (``fixture_variants.py``)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import fixture_variants

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "tiny-janus-pro"
# The same weights in the transformers-converted layout (scripts/make_hf_layout_fixture.py).
TINY_HF = FIXTURES / "tiny-janus-pro-hf"
REFERENCE = FIXTURES / "tiny-janus-pro-reference"
VARIANTS = FIXTURES / "weight-variants"

# Only TINY's pytorch_model.bin is committed: VARIANTS' weight files and TINY_HF's
# model.safetensors are derived from it (tests/fixture_variants.py). Write them, if missing or
# stale, before any test module lists or loads them.
fixture_variants.ensure()

# Quantized-weights cache files of the test session go to a folder of its own, never to
# ~/.cache/janus-rs (set before any model loads; subprocesses inherit it).
_QUANT_CACHE = tempfile.mkdtemp(prefix="janus-rs-test-quant-cache-")
os.environ["JANUS_RS_CACHE_DIR"] = _QUANT_CACHE
os.environ.pop("JANUS_RS_QUANT_CACHE", None)

NON_WEIGHT_FILES = [
    "config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
]


@pytest.fixture(scope="session")
def ref() -> dict[str, np.ndarray]:
    return load_file(str(REFERENCE / "reference.safetensors"))


@pytest.fixture(scope="session")
def ref_json() -> dict:
    return json.loads((REFERENCE / "reference.json").read_text(encoding="utf-8"))


def _cuda_skip_reason() -> str | None:
    import janus_rs

    reason = janus_rs.cuda_unavailable_reason()
    return None if reason is None else f"no usable CUDA GPU ({reason})"


CUDA_SKIP_REASON = _cuda_skip_reason()
requires_cuda = pytest.mark.skipif(CUDA_SKIP_REASON is not None, reason=CUDA_SKIP_REASON or "")
# Parity tests run on every device present; float32 on CUDA must meet the CPU tolerances.
PARITY_DEVICES = ["cpu", pytest.param("cuda", marks=requires_cuda)]
# (device, checkpoint folder, dtype): both checkpoint layouts must give the reference outputs,
# and so must bf16 weight storage on CPU (f32 compute; the tiny checkpoint's weights are bf16,
# like the official ones, so storing them in bf16 changes nothing but summation order).
PARITY_CASES = [
    pytest.param(("cpu", TINY, "float32"), id="cpu-official"),
    pytest.param(("cpu", TINY_HF, "float32"), id="cpu-transformers"),
    pytest.param(("cpu", TINY, "bfloat16"), id="cpu-official-bf16-weights"),
    pytest.param(("cuda", TINY, "float32"), id="cuda-official", marks=requires_cuda),
    pytest.param(("cuda", TINY_HF, "float32"), id="cuda-transformers", marks=requires_cuda),
]
# (device, dtype) for JanusFlow's parity suite.
FLOW_PARITY_CASES = [
    pytest.param(("cpu", "float32"), id="cpu"),
    pytest.param(("cpu", "bfloat16"), id="cpu-bf16-weights"),
    pytest.param(("cuda", "float32"), id="cuda", marks=requires_cuda),
]


@pytest.fixture(scope="session")
def model():
    from janus_rs import JanusPro

    return JanusPro.from_pretrained(TINY)


def make_checkpoint(dest: Path, weight_files: list[Path], skip: tuple[str, ...] = ()) -> Path:
    """A checkpoint folder at ``dest`` with the tiny model's configs and the given weights."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in NON_WEIGHT_FILES:
        if name not in skip:
            shutil.copy(TINY / name, dest / name)
    for f in weight_files:
        shutil.copy(f, dest / f.name)
    return dest


def rel_err(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual − expected| / max |expected|."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return float(np.abs(actual.astype(np.float64) - expected).max() / np.abs(expected).max())


SIGINT_SCRIPT = """
import os, signal, sys, threading
import janus_rs

# A shell that starts us in the background leaves SIGINT ignored; Ctrl-C in a terminal
# raises KeyboardInterrupt, so make sure that handler is installed.
signal.signal(signal.SIGINT, signal.default_int_handler)
model = {load}
started = threading.Event()
steps = []

def on_step(done, total):
    steps.append(done)
    started.set()

def interrupt():
    started.wait()
    os.kill(os.getpid(), signal.SIGINT)   # arrives while the main thread is inside Rust

threading.Thread(target=interrupt, daemon=True).start()
try:
    model.{call}
except KeyboardInterrupt:
    n = len(steps)
    # The model still works afterwards.
    {after}
    print("interrupted after", n)
    sys.exit(0)
print("not interrupted", len(steps))
sys.exit(1)
"""


def steps_before_sigint(load: str, call: str, after: str) -> int:
    """Run ``model = load; model.call`` in a subprocess, send it SIGINT after the first progress
    callback, check ``after`` runs, and return how many steps were done when it stopped. (A
    subprocess, so the signal cannot reach pytest itself.)"""
    import subprocess
    import sys

    code = SIGINT_SCRIPT.format(load=load, call=call, after=after)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return int(r.stdout.split()[2])
