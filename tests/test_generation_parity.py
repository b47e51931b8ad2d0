"""Text-to-image parity with the reference (official loop semantics with argmax in place of
multinomial, float32, same weights) on the bundled tiny checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import PARITY_CASES, REFERENCE, rel_err

TOL = 1e-4


@pytest.fixture(scope="module", params=PARITY_CASES)
def model(request):
    """The tiny checkpoint, in both layouts, in float32 on each available device (CUDA skipped
    without a GPU), and with bf16-stored weights on CPU (f32 compute, same tolerances)."""
    from janus_rs import JanusPro

    device, folder, dtype = request.param
    return JanusPro.from_pretrained(folder, device=device, dtype=dtype)


def test_generation_prompt_and_cfg_rows(model, ref, ref_json):
    ids = model.generation_prompt_ids("a red cat")
    np.testing.assert_array_equal(ids, ref["gen_prompt_ids"])
    rows = ref["gen_tokens_rows"]
    np.testing.assert_array_equal(rows[0], ids)
    pad = model.info["special_token_ids"]["pad"]
    # Unconditional row: BOS, pads, <begin_of_image>.
    assert rows[1][0] == ids[0] and rows[1][-1] == ids[-1] and (rows[1][1:-1] == pad).all()


def test_step0_logits(model, ref):
    rows = ref["gen_tokens_rows"]
    embeds = np.stack([model.inputs_embeds(r) for r in rows])
    hidden, _ = model.forward(embeds)
    logits = model.image_token_logits(hidden[:, -1])
    assert rel_err(logits[0], ref["gen_step0_logits_cond"]) < TOL
    assert rel_err(logits[1], ref["gen_step0_logits_uncond"]) < TOL
    cfg = logits[1] + 5.0 * (logits[0] - logits[1])
    assert rel_err(cfg, ref["gen_step0_logits_cfg"]) < TOL


def test_greedy_image_tokens_and_pixels(model, ref):
    out = model.generate("a red cat", num_images=1, cfg_weight=5.0, temperature=0.0, progress=False)
    np.testing.assert_array_equal(out.tokens[0], ref["gen_image_tokens"])
    assert out.tokens.dtype == np.int64 and out.tokens.shape == (1, 16)
    decoded = model.decode_tokens_float(out.tokens)
    assert rel_err(decoded, ref["gen_decoded"]) < TOL
    assert out.array.shape == (1, 64, 64, 3) and out.array.dtype == np.uint8
    assert np.abs(out.array.astype(int) - ref["gen_image_u8"].astype(int)).max() <= 1
    img = out.images[0]
    assert img.size == (64, 64) and img.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(img), out.array[0])


def test_vq_decoder_on_random_tokens(model, ref):
    decoded = model.decode_tokens_float(ref["vq_decode_random_tokens"][None])
    assert rel_err(decoded, ref["vq_decode_random_out"]) < TOL


def test_vq_encoder_and_round_trip(model, ref):
    pixels = model._native.vq_pixels([np.asarray(__import__("PIL.Image", fromlist=["x"]).open(REFERENCE / "input.png").convert("RGB"))])
    np.testing.assert_allclose(pixels, ref["vq_input"], rtol=0, atol=1e-6)
    latent = model._native.encode_latent(ref["vq_input"])
    assert rel_err(latent, ref["vq_encoder_out"]) < TOL
    tokens = model.encode_pixels(ref["vq_input"])
    np.testing.assert_array_equal(tokens[0], ref["vq_tokens"])
    np.testing.assert_array_equal(model.encode_image(REFERENCE / "input.png")[0], ref["vq_tokens"])
    roundtrip = model.decode_tokens_float(tokens)
    assert rel_err(roundtrip, ref["vq_roundtrip_decoded"]) < TOL
