"""Checkpoint layouts, dtypes and config handling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import TINY, VARIANTS, make_checkpoint, rel_err
from janus_rs import JanusPro

LAYOUTS = {
    "single .bin": [TINY / "pytorch_model.bin"],
    "single safetensors": [VARIANTS / "model.safetensors"],
    "sharded .bin": sorted((VARIANTS / "sharded-bin").iterdir()),
    "sharded safetensors": sorted((VARIANTS / "sharded-safetensors").iterdir()),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_weight_layout_gives_the_reference(tmp_path, ref, layout):
    model = JanusPro.from_pretrained(make_checkpoint(tmp_path / "ckpt", LAYOUTS[layout]))
    _, logits = model.forward(ref["und_inputs_embeds"])
    assert rel_err(logits, ref["und_logits"]) < 1e-4
    emb = model.inputs_embeds(ref["und_input_ids"], ref["und_pixel_values"][None])
    assert rel_err(emb, ref["und_inputs_embeds"]) < 1e-4
    assert [f.split("/")[-1] for f in model.info["weight_files"]] == [
        f.name for f in LAYOUTS[layout] if not f.name.endswith(".json")
    ]


def test_safetensors_preferred_when_both_present(tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt", [TINY / "pytorch_model.bin", VARIANTS / "model.safetensors"])
    assert JanusPro.from_pretrained(ckpt).info["weight_files"][0].endswith("model.safetensors")


@pytest.mark.parametrize("dtype,tol", [("bfloat16", 5e-2), ("float16", 5e-3)])
def test_reduced_precision_dtypes(ref, dtype, tol):
    # The weights are bf16-representable, so the only error is activation rounding: about
    # 2^-8 relative per op for bf16 and 2^-11 for f16, accumulated over a two-layer model.
    model = JanusPro.from_pretrained(TINY, dtype=dtype)
    assert model.dtype == dtype
    _, logits = model.forward(ref["und_inputs_embeds"])
    assert rel_err(logits, ref["und_logits"]) < tol
    assert rel_err(logits, ref["und_logits"]) > 0  # really computed in reduced precision


def test_info_and_repr(model):
    info = model.info
    # The tiny checkpoint is stored in bf16, as the official ones are: on CPU the default keeps
    # the weights in bf16 and computes in float32.
    assert info["device"] == "cpu" and info["dtype"] == "bfloat16"
    assert info["compute_dtype"] == "float32"
    assert info["hidden_size"] == 64 and info["num_layers"] == 2 and info["vocab_size"] == 416
    assert info["num_image_tokens"] == 16 and info["image_size"] == 64
    assert info["roles"] == ("<|User|>", "<|Assistant|>")
    # Ids are looked up by string in this checkpoint's tokenizer.
    assert info["special_token_ids"] == {
        "bos": 400, "eos": 401, "pad": 402, "image": 403, "begin_of_image": 412, "end_of_image": 413,
    }
    assert model.token_id("<|User|>") == 410
    r = repr(model)
    assert "tiny-janus-pro" in r and "cpu" in r and "bfloat16" in r and "parameters=" in r


def test_llama_defaults_apply_when_fields_are_absent(tmp_path, ref):
    # The fixture config omits rms_norm_eps and rope_theta (as the real 7B config does); an
    # explicit copy of the defaults gives identical results.
    ckpt = make_checkpoint(tmp_path / "ckpt", [VARIANTS / "model.safetensors"])
    cfg = json.loads((ckpt / "config.json").read_text())
    assert "rms_norm_eps" not in cfg["language_config"] and "rope_theta" not in cfg["language_config"]
    cfg["language_config"].update(rms_norm_eps=1e-6, rope_theta=10000.0)
    (ckpt / "config.json").write_text(json.dumps(cfg))
    _, a = JanusPro.from_pretrained(ckpt).forward(ref["und_inputs_embeds"])
    _, b = JanusPro.from_pretrained(TINY).forward(ref["und_inputs_embeds"])
    np.testing.assert_array_equal(a, b)


def test_plain_roles_for_janus_1_3b_style(tmp_path):
    model = JanusPro.from_pretrained(TINY, roles=("User", "Assistant"))
    prompt = model.format_prompt([("user", "hi")], system_prompt="")
    assert prompt == "User: hi\n\nAssistant:"


def test_model_can_be_dropped_and_reloaded():
    for _ in range(3):
        m = JanusPro.from_pretrained(TINY)
        assert m.num_parameters > 0
        del m


def test_default_dtype_follows_the_stored_weights(tmp_path):
    """CPU default: bf16 storage for a bf16 checkpoint (the same weights, f32 arithmetic),
    float32 for an f32 one; an explicit dtype always wins. The f32 and packed-bf16 kernels add
    in different orders, so activations agree to a few f32 ulps rather than bit for bit: greedy
    answers and image tokens are identical; a sampled token may differ where its draw falls
    within those ulps of a tie (1 seed in 20 here once the softmax had its own exp)."""
    from fixture_variants import read_safetensors, safetensors_bytes

    tensors, metadata = read_safetensors(VARIANTS / "model.safetensors")
    widened = {name: ("F32", (arr.astype(np.uint32) << 16).view(np.float32)) if dtype == "BF16"
               else (dtype, arr) for name, (dtype, arr) in tensors.items()}
    f32_dir = make_checkpoint(tmp_path / "f32", [])
    (f32_dir / "model.safetensors").write_bytes(safetensors_bytes(widened, metadata))

    from_bf16 = JanusPro.from_pretrained(TINY)
    from_f32 = JanusPro.from_pretrained(f32_dir)
    explicit = JanusPro.from_pretrained(TINY, dtype="float32")
    assert from_bf16.info["dtype"] == "bfloat16" and from_bf16.info["compute_dtype"] == "float32"
    assert from_f32.info["dtype"] == "float32" and explicit.info["dtype"] == "float32"

    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    answers = [m.understand(image, "What is this?", max_new_tokens=6) for m in (from_bf16, from_f32, explicit)]
    assert answers[0] == answers[1] == answers[2]
    tokens = [m.generate_tokens("a cat", seed=3, temperature=0) for m in (from_bf16, from_f32, explicit)]
    np.testing.assert_array_equal(tokens[0], tokens[1])
    np.testing.assert_array_equal(tokens[0], tokens[2])
    embeds = np.random.default_rng(1).standard_normal((2, 40, from_bf16.info["hidden_size"]), dtype=np.float32)
    (h16, l16), (h32, l32) = from_bf16.forward(embeds), from_f32.forward(embeds)
    np.testing.assert_allclose(h16, h32, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(l16, l32, rtol=1e-5, atol=1e-5)
