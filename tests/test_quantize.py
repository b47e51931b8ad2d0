"""`quantize=` on the tiny checkpoints: argument checks, which matrices are quantized (the tiny
LLM is 64 wide, so q8_0's 32-blocks fit every projection but the 172-wide down_proj, and the
k-quants' 256-blocks fit none: the fallback rule), what is reported, and the error it adds.

Kernel-level accuracy of each format, and an LLM whose widths every format takes, are tested in
Rust (`kernels::linear` and `models::llama` tests). Quantized outputs are approximate: only
bounds on their error are asserted, never equality of free-running results.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from conftest import FIXTURES, REFERENCE, TINY, rel_err

TINY_FLOW = FIXTURES / "tiny-janusflow"


@pytest.fixture(scope="module")
def q8():
    from janus_rs import JanusPro

    return JanusPro.from_pretrained(TINY, dtype="float32", quantize="q8_0")


@pytest.mark.parametrize(
    "value, error, match",
    [
        ("q4_0", "InputError", r'unsupported quantize "q4_0": use None, "q8_0", "q6_k" or "q4_k"'),
        ("", "InputError", "unsupported quantize"),
        (8, "InputTypeError", "quantize must be None or one of"),
        (True, "InputTypeError", "quantize must be None or one of"),
    ],
)
def test_bad_values_are_refused_before_loading(value, error, match, tmp_path):
    import janus_rs

    # A folder that does not exist: the argument is checked first.
    with pytest.raises(getattr(janus_rs, error), match=match):
        janus_rs.JanusPro.from_pretrained(tmp_path / "missing", quantize=value)
    with pytest.raises(getattr(janus_rs, error), match=match):
        janus_rs.JanusFlow.from_pretrained(tmp_path / "missing", quantize=value)


def test_what_is_quantized_and_reported(q8):
    assert q8.quantize == "q8_0" and q8.info["quantize"] == "q8_0"
    # 2 layers × (q, k, v, o, gate, up) + lm_head quantized; the 172-wide down_proj stays float.
    assert q8.info["llm_weight_formats"] == {"q8_0": 13, "float32": 2}
    assert "quantize='q8_0'" in repr(q8)


def test_case_and_spaces_are_accepted_and_fallback_follows_the_dtype():
    from janus_rs import JanusPro

    m = JanusPro.from_pretrained(TINY, dtype="bfloat16", quantize=" Q8_0 ")
    assert m.info["llm_weight_formats"] == {"q8_0": 13, "bfloat16": 2}
    assert (m.dtype, m.info["compute_dtype"]) == ("bfloat16", "float32")


def test_unquantizable_widths_stay_float_exactly(ref, caplog):
    from janus_rs import JanusPro

    with caplog.at_level(logging.INFO, logger="janus_rs"):
        m = JanusPro.from_pretrained(TINY, dtype="float32", quantize="q4_k")
    assert m.info["llm_weight_formats"] == {"float32": 15}
    assert "quantize=q4_k: 15 of 15 LLM weight matrices stay float32" in caplog.text
    # Nothing was quantized: the float32 results, unchanged.
    hidden, logits = m.forward(ref["und_inputs_embeds"])
    plain = JanusPro.from_pretrained(TINY, dtype="float32")
    hidden_f32, logits_f32 = plain.forward(ref["und_inputs_embeds"])
    np.testing.assert_array_equal(hidden, hidden_f32)
    np.testing.assert_array_equal(logits, logits_f32)


def test_unquantized_model_says_nothing(caplog):
    from janus_rs import JanusPro

    with caplog.at_level(logging.INFO, logger="janus_rs"):
        m = JanusPro.from_pretrained(TINY)
    assert m.quantize is None and m.info["llm_weight_formats"] == {"bfloat16": 15}
    assert "quantize" not in caplog.text and "quantize" not in repr(m)


def test_quantized_error_is_small_but_present(q8, ref):
    # Measured on this fixture: hidden states 0.2-0.4% off the float32 reference (q8_0 weights
    # plus candle's 8-bit rounding of the activations); bounds about 5× that, and not zero.
    hidden, logits = q8.forward(ref["und_inputs_embeds"])
    err_hidden = rel_err(hidden, ref["und_last_hidden"])
    err_logits = rel_err(logits, ref["und_logits"])
    assert 1e-5 < err_hidden < 0.02, err_hidden
    assert 1e-5 < err_logits < 0.02, err_logits


def test_quantized_models_run_every_call(q8):
    answer = q8.understand(REFERENCE / "input.png", "Describe this image.", max_new_tokens=4)
    assert isinstance(answer, str)
    out = q8.generate("a red cat", num_images=2, seed=1, progress=False)
    assert out.array.shape == (2, 64, 64, 3)
    again = q8.generate("a red cat", num_images=2, seed=1, progress=False)
    np.testing.assert_array_equal(out.tokens, again.tokens)


def test_janusflow_takes_the_same_option():
    from janus_rs import JanusFlow

    m = JanusFlow.from_pretrained(TINY_FLOW, quantize="q8_0")
    assert m.quantize == "q8_0" and m.info["llm_weight_formats"]["q8_0"] > 0
    assert "quantize='q8_0'" in repr(m)
    assert isinstance(m.understand(TINY_FLOW / "input.png", "Describe this image.", max_new_tokens=3), str)


def test_cli_takes_quantize(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "janus_rs", "understand", "--model", str(TINY), "--quantize", "q8_0",
         "--image", str(REFERENCE / "input.png"), "--question", "Describe this image.", "--max-new-tokens", "2"],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "janus_rs", "understand", "--model", str(TINY), "--quantize", "q4_0",
         "--image", str(REFERENCE / "input.png"), "--question", "hi"],
        capture_output=True, text=True,
    )
    assert bad.returncode == 2 and "--quantize" in bad.stderr


def test_half_precision_activations_are_widened_for_quantized_products(ref):
    # Half-precision activations around quantized products (widened to f32 for them; on CUDA,
    # candle's dequantize-then-GEMM path refused bf16 inputs: "dtype mismatch in matmul op"
    # on an H200; the CPU kernels take them, so this checks the CPU half of that rule).
    from janus_rs import JanusPro

    m = JanusPro.from_pretrained(TINY, dtype="float16", quantize="q8_0")
    assert m.info["llm_weight_formats"] == {"q8_0": 13, "float16": 2}
    hidden, _ = m.forward(ref["und_inputs_embeds"])
    assert rel_err(hidden, ref["und_last_hidden"]) < 0.03
    assert m.generate("a red cat", num_images=1, seed=0, progress=False).array.shape == (1, 64, 64, 3)


# ---------------------------------------------------------------- the quantized-weights cache


def copy_tiny(dest):
    import shutil

    shutil.copytree(TINY, dest)
    return dest


def test_cache_is_written_once_then_read(tmp_path, monkeypatch, ref):
    from janus_rs import JanusPro

    monkeypatch.setenv("JANUS_RS_CACHE_DIR", str(tmp_path / "cache"))
    ckpt = copy_tiny(tmp_path / "ckpt")
    first = JanusPro.from_pretrained(ckpt, quantize="q8_0")
    assert first.info["quant_cache"] == "written"
    path = first.info["quant_cache_path"]
    assert path.startswith(str(tmp_path / "cache")) and path.endswith("-q8_0-v1.gguf")
    second = JanusPro.from_pretrained(ckpt, quantize="q8_0")
    assert second.info["quant_cache"] == "hit" and second.info["quant_cache_path"] == path
    assert second.info["llm_weight_formats"] == first.info["llm_weight_formats"]
    # The same blocks: the same outputs.
    np.testing.assert_array_equal(first.forward(ref["und_inputs_embeds"])[1], second.forward(ref["und_inputs_embeds"])[1])
    # Another format is another file; a changed checkpoint is another fingerprint.
    assert JanusPro.from_pretrained(ckpt, quantize="q6_k").info["quant_cache"] in ("written", "nothing quantized")
    (ckpt / "pytorch_model.bin").touch()
    os.utime(ckpt / "pytorch_model.bin", (1, 1))
    changed = JanusPro.from_pretrained(ckpt, quantize="q8_0")
    assert changed.info["quant_cache"] == "written" and changed.info["quant_cache_path"] != path


def test_a_damaged_cache_file_is_rewritten(tmp_path, monkeypatch, ref):
    from janus_rs import JanusPro

    monkeypatch.setenv("JANUS_RS_CACHE_DIR", str(tmp_path / "cache"))
    ckpt = copy_tiny(tmp_path / "ckpt")
    path = JanusPro.from_pretrained(ckpt, quantize="q8_0").info["quant_cache_path"]
    with open(path, "r+b") as f:
        f.truncate(100)
    m = JanusPro.from_pretrained(ckpt, quantize="q8_0")
    assert m.info["quant_cache"].startswith("rewritten; the old file was unreadable:"), m.info["quant_cache"]
    again = JanusPro.from_pretrained(ckpt, quantize="q8_0")
    assert again.info["quant_cache"] == "hit"


def test_cache_off_and_nothing_to_cache(tmp_path, monkeypatch):
    from janus_rs import JanusPro

    monkeypatch.setenv("JANUS_RS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("JANUS_RS_QUANT_CACHE", "0")
    m = JanusPro.from_pretrained(TINY, quantize="q8_0")
    assert m.info["quant_cache"] == "off" and m.info["quant_cache_path"] is None
    monkeypatch.delenv("JANUS_RS_QUANT_CACHE")
    assert JanusPro.from_pretrained(TINY, quantize="q4_k").info["quant_cache"] == "nothing quantized"
    assert JanusPro.from_pretrained(TINY).info["quant_cache"] == "off"
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_cli_quantize_command(tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "janus_rs", "quantize", "--model", str(TINY), "--to", "q8_0",
           "-o", str(tmp_path / "qc")]
    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "quantized in" in first.stdout and "13 q8_0" in first.stdout and str(tmp_path / "qc") in first.stdout
    second = subprocess.run(cmd, capture_output=True, text=True)
    assert second.returncode == 0 and "already cached" in second.stdout
    nothing = subprocess.run(cmd[:-4] + ["--to", "q4_k"], capture_output=True, text=True)
    assert nothing.returncode == 1 and "not cached: nothing quantized" in nothing.stderr
    missing_to = subprocess.run(cmd[:6], capture_output=True, text=True)
    assert missing_to.returncode == 2 and "--to" in missing_to.stderr
