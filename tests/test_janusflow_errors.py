"""Bad input to JanusFlow: each mistake raises a clear exception from ``janus_rs.errors`` (never
a crash or a bare Rust/numpy error), and the model stays usable afterwards."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, TINY, steps_before_sigint

from janus_rs import JanusFlow, JanusPro
from janus_rs.errors import ConfigError, InputError, JanusError, NotFoundError

TINY_FLOW = FIXTURES / "tiny-janusflow"
VAE = TINY_FLOW / "vae"
PROMPT = "a red cat"


@pytest.fixture(scope="module")
def flow() -> JanusFlow:
    return JanusFlow.from_pretrained(TINY_FLOW, vae=VAE)


def _vae_copy(tmp_path: Path, **config_changes) -> Path:
    dest = tmp_path / "vae"
    shutil.copytree(VAE, dest)
    cfg = json.loads((dest / "config.json").read_text())
    for k, v in config_changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (dest / "config.json").write_text(json.dumps(cfg))
    return dest


# ---------------------------------------------------------------- loading


def test_missing_vae_folder(tmp_path):
    with pytest.raises(NotFoundError, match="VAE folder not found"):
        JanusFlow.from_pretrained(TINY_FLOW, vae=tmp_path / "no" / "such" / "vae")


def test_vae_folder_without_weights(tmp_path):
    dest = _vae_copy(tmp_path)
    (dest / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(NotFoundError):
        JanusFlow.from_pretrained(TINY_FLOW, vae=dest)


def test_vae_with_other_latent_channels(tmp_path):
    with pytest.raises(ConfigError, match="8 latent channels"):
        JanusFlow.from_pretrained(TINY_FLOW, vae=_vae_copy(tmp_path, latent_channels=8))


def test_folder_that_is_not_a_vae(tmp_path):
    # The model folder itself: its config.json is not a diffusers config.
    with pytest.raises(ConfigError, match="not a diffusers VAE config"):
        JanusFlow.from_pretrained(TINY_FLOW, vae=TINY_FLOW)
    with pytest.raises(ConfigError, match="UNet2DConditionModel"):
        JanusFlow.from_pretrained(TINY_FLOW, vae=_vae_copy(tmp_path, _class_name="UNet2DConditionModel"))


def test_float16_vae_is_refused():
    with pytest.raises(InputError, match="float16"):
        JanusFlow.from_pretrained(TINY_FLOW, vae=VAE, vae_dtype="float16")
    # A float16 model keeps its VAE out of float16.
    m = JanusFlow.from_pretrained(TINY_FLOW, vae=VAE, dtype="float16")
    assert m.dtype == "float16" and m.info["vae_dtype"] == "float32"


def test_wrong_model_class_for_the_checkpoint():
    with pytest.raises(ConfigError, match="JanusPro"):
        JanusFlow.from_pretrained(TINY)
    with pytest.raises(ConfigError, match="JanusFlow"):
        JanusPro.from_pretrained(TINY_FLOW)


def test_generate_without_a_vae():
    m = JanusFlow.from_pretrained(TINY_FLOW)
    assert not m.has_vae and "vae=None" in repr(m)
    with pytest.raises(InputError, match="no VAE"):
        m.generate(PROMPT, num_steps=1, progress=False)
    with pytest.raises(InputError, match="no VAE"):
        m.decode_latents(np.zeros((1, 4, 8, 8), np.float32))
    # Latents still work.
    assert m.generate_latents(PROMPT, num_steps=1, seed=0, progress=False).shape == (1, 4, 8, 8)


def test_vae_revision_without_vae():
    with pytest.raises(InputError, match="vae_revision"):
        JanusFlow.from_pretrained(TINY_FLOW, vae_revision="main")


# ---------------------------------------------------------------- sampling arguments


@pytest.mark.parametrize("num_steps", [0, -1, 1.5, "3", True, None])
def test_bad_num_steps(flow, num_steps):
    with pytest.raises(InputError, match="num_steps"):
        flow.generate(PROMPT, num_steps=num_steps, progress=False)


@pytest.mark.parametrize("cfg_weight", [math.nan, math.inf, -math.inf, "2", None, True])
def test_bad_cfg_weight(flow, cfg_weight):
    with pytest.raises(InputError, match="cfg_weight"):
        flow.generate(PROMPT, num_steps=1, cfg_weight=cfg_weight, progress=False)


@pytest.mark.parametrize(
    "noise, match",
    [
        (np.zeros((1, 4, 8), np.float32), "shape"),
        (np.zeros((1, 4, 16, 16), np.float32), "shape"),
        (np.zeros((1, 3, 8, 8), np.float32), "shape"),
        (np.zeros((2, 4, 8, 8), np.float32), "shape"),  # 2 latents for 1 image
        (np.zeros((0, 4, 8, 8), np.float32), "shape"),
        (np.zeros((1, 4, 8, 8), np.int32), "float"),
        (np.zeros((1, 4, 8, 8), np.complex64), "float"),
        (np.full((1, 4, 8, 8), np.nan, np.float32), "NaN"),
        (np.full((1, 4, 8, 8), np.inf, np.float32), "NaN"),
        ([[1.0]], "shape"),
        ("noise", "float"),
    ],
)
def test_bad_initial_noise(flow, noise, match):
    with pytest.raises(InputError, match=match):
        flow.generate(PROMPT, num_steps=1, initial_noise=noise, progress=False)


def test_float64_noise_is_accepted(flow):
    z = np.random.default_rng(0).standard_normal((1, 4, 8, 8))
    a = flow.generate_latents(PROMPT, num_steps=1, initial_noise=z, progress=False)
    b = flow.generate_latents(PROMPT, num_steps=1, initial_noise=z.astype(np.float32), progress=False)
    np.testing.assert_array_equal(a, b)


def test_other_bad_arguments(flow):
    with pytest.raises(InputError, match="num_images"):
        flow.generate(PROMPT, num_images=0, num_steps=1, progress=False)
    with pytest.raises(InputError, match="limit"):
        flow.generate(PROMPT, num_images=3, num_steps=1, max_images=2, progress=False)
    with pytest.raises(InputError, match="limit"):
        flow.generate([PROMPT, PROMPT], num_images=2, num_steps=1, max_images=3, progress=False)
    with pytest.raises(InputError, match="prompt"):
        flow.generate([], num_steps=1, progress=False)
    with pytest.raises(InputError, match="empty"):
        flow.generate("  ", num_steps=1, progress=False)
    with pytest.raises(InputError, match="seed"):
        flow.generate(PROMPT, num_steps=1, seed=-1, progress=False)
    with pytest.raises(InputError, match="latents"):
        flow.decode_latents(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(InputError, match="NaN"):
        flow.decode_latents_float(np.full((1, 4, 8, 8), np.nan, np.float32))
    with pytest.raises(InputError, match="t must be finite"):
        flow.velocity(PROMPT, np.zeros((1, 4, 8, 8), np.float32), math.nan)


def test_native_layer_validates_too(flow):
    # The Rust core checks what the Python wrapper checks (for other callers of _native).
    native = flow._native
    z = np.zeros((1, 4, 8, 8), np.float32)
    with pytest.raises(InputError, match="num_steps"):
        native.generate_latents([PROMPT], [1], 2.0, 0, [0], None, 8)
    with pytest.raises(InputError, match="cfg_weight"):
        native.generate_latents([PROMPT], [1], math.nan, 1, [0], None, 8)
    with pytest.raises(InputError, match="initial_noise"):
        native.generate_latents([PROMPT], [1], 2.0, 1, [0], np.zeros((1, 4, 4, 4), np.float32), 8)
    with pytest.raises(InputError, match="NaN"):
        native.generate_latents([PROMPT], [1], 2.0, 1, [0], np.full_like(z, np.nan), 8)
    with pytest.raises(InputError, match="limit"):
        native.generate_latents([PROMPT], [9], 2.0, 1, [0], None, 8)


def test_kv_cache_limit(flow, monkeypatch):
    monkeypatch.setenv("JANUS_RS_MAX_KV_CACHE_BYTES", "1000")
    with pytest.raises(InputError, match="KV cache"):
        flow.generate_latents(PROMPT, num_steps=1, seed=0, progress=False)


def test_callback_errors_propagate(flow):
    def boom(done: int, total: int) -> None:
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        flow.generate_latents(PROMPT, num_steps=3, seed=0, progress=boom)


def test_model_usable_after_errors(flow):
    for bad in [dict(num_steps=0), dict(cfg_weight=math.nan), dict(initial_noise=np.zeros((1, 4, 2, 2), np.float32))]:
        with pytest.raises(JanusError):
            flow.generate(PROMPT, progress=False, **bad)
    out = flow.generate(PROMPT, num_steps=2, seed=3, progress=False)
    assert out.array.shape == (1, 64, 64, 3)
    assert flow.understand(None, "Hi", max_new_tokens=2) is not None


def test_sigint_stops_sampling_within_a_step():
    load = f"janus_rs.JanusFlow.from_pretrained({str(TINY_FLOW)!r}, vae={str(VAE)!r})"
    call = "generate('a red cat', num_images=16, num_steps=500, seed=0, progress=on_step)"
    after = "assert model.generate('a red cat', num_steps=2, seed=1, progress=False).array.shape == (1, 64, 64, 3)"
    assert steps_before_sigint(load, call, after) <= 3


# Issue 12: mistakes that once escaped as bare OverflowError/TypeError or blamed CUDA.
HUGE = 2**70
FLOW_MISTAKES = [
    ("num_images-huge", lambda f: f.generate(PROMPT, num_images=HUGE, num_steps=1, progress=False), ValueError, "num_images must be an integer >= 1 and <= 18446744073709551615"),
    ("num_steps-huge", lambda f: f.generate(PROMPT, num_steps=HUGE, progress=False), ValueError, "num_steps must be an integer >= 1 and <= 18446744073709551615"),
    ("seed-huge", lambda f: f.generate(PROMPT, seed=HUGE, num_steps=1, progress=False), ValueError, f"seed must be an integer >= 0 and <= 18446744073709551615, got {HUGE}"),
    ("max_images-huge", lambda f: f.generate_latents(PROMPT, max_images=HUGE, num_steps=1, progress=False), ValueError, "max_images must be an integer >= 1 and <="),
    ("cfg_weight-huge-int", lambda f: f.generate(PROMPT, cfg_weight=2**2000, num_steps=1, progress=False), ValueError, "cfg_weight must be a finite number"),
    ("schedule-huge", lambda f: JanusFlow.schedule(HUGE), ValueError, "num_steps must be an integer >= 1 and <="),
    ("prompt-int", lambda f: f.generate(3, num_steps=1, progress=False), TypeError, "prompt must be a string or a non-empty list of strings, got 3"),
    ("progress-str", lambda f: f.generate(PROMPT, num_steps=1, progress="bar"), TypeError, "progress must be True, False or a callable"),
    ("understand-seed-huge", lambda f: f.understand(None, "hi", seed=HUGE, max_new_tokens=1), ValueError, "seed must be an integer >= 0 and <="),
    ("missing-image", lambda f: f.understand("/no/such/image.png", "hi"), FileNotFoundError, r"image file not found: /no/such/image\.png"),
    ("device-cuda-abc", lambda f: JanusFlow.from_pretrained(TINY_FLOW, device="cuda:abc"), ValueError, 'invalid device "cuda:abc"'),
    ("vae_dtype-int", lambda f: JanusFlow.from_pretrained(TINY_FLOW, vae=VAE, vae_dtype=16), TypeError, "vae_dtype must be a string"),
    ("vae-int", lambda f: JanusFlow.from_pretrained(TINY_FLOW, vae=3), TypeError, "vae must be a folder path or a hub id"),
]


@pytest.mark.parametrize("call,builtin,message", [m[1:] for m in FLOW_MISTAKES], ids=[m[0] for m in FLOW_MISTAKES])
def test_flow_mistakes_are_janus_errors(flow, call, builtin, message):
    import re

    with pytest.raises(JanusError) as e:
        call(flow)
    assert isinstance(e.value, builtin), f"{type(e.value).__name__}: {e.value}"
    assert re.search(message, str(e.value)), str(e.value)
    assert flow.generate_latents(PROMPT, num_steps=1, seed=0, progress=False).shape[0] == 1

