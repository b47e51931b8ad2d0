"""JanusFlow parity with the official code (``janus/janusflow`` at 1daa72f, float32 from the same
bf16-rounded weights, stored noise) on the bundled tiny checkpoint
(``tests/fixtures/tiny-janusflow``, see its README for every reference tensor and tolerance),
through the public Python API. Float32 on every available device (CUDA skipped without a GPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import FIXTURES, FLOW_PARITY_CASES, rel_err

TINY_FLOW = FIXTURES / "tiny-janusflow"
VAE = TINY_FLOW / "vae"
INPUT = TINY_FLOW / "input.png"
PROMPT = "a red cat"

TOL = 1e-4  # relative (max |diff| / max |ref|), float32 forwards
EXACT = 1e-5  # weight-only / gather-only tensors
LATENT_TOL = 1e-3  # errors accumulate over 30 steps through the LLM (fixture README)


@pytest.fixture(scope="module")
def fref() -> dict[str, np.ndarray]:
    return load_file(str(TINY_FLOW / "reference.safetensors"))


@pytest.fixture(scope="module")
def fref_json() -> dict:
    return json.loads((TINY_FLOW / "reference.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module", params=FLOW_PARITY_CASES)
def flow(request):
    """float32 on each available device, and bf16-stored weights (f32 compute) on CPU."""
    from janus_rs import JanusFlow

    device, dtype = request.param
    return JanusFlow.from_pretrained(TINY_FLOW, vae=VAE, device=device, dtype=dtype)


# ---------------------------------------------------------------- loading


def test_loads_with_derived_sizes(flow):
    info = flow.info
    assert (info["hidden_size"], info["vision_width"], info["gen_width"]) == (64, 32, 48)
    assert flow.latent_shape == (4, 8, 8)
    assert info["latent_token_grid"] == 4
    assert info["vae_dtype"] == "float32" and info["vae_scaling_factor"] == pytest.approx(0.13025)
    assert info["roles"] == ("User", "Assistant")
    assert flow.has_vae
    assert repr(flow).startswith("JanusFlow(name='tiny-janusflow'") and "vae='vae' (float32)" in repr(flow)


def test_tokenizer_appends_the_generation_tag(flow, fref_json):
    ids = fref_json["tokenizer"]["ids"]
    for token, i in ids.items():
        assert flow.token_id(token) == i, token
    assert flow.info["special_token_ids"]["begin_of_generation"] == 414
    assert flow.info["special_token_ids"]["pad"] == fref_json["tokenizer"]["pad_id"]


# ---------------------------------------------------------------- understanding


def test_prompt_and_ids(flow, fref, fref_json):
    prompt = flow.format_prompt([("user", "<image_placeholder>\nDescribe this image.")])
    assert prompt == fref_json["und_prompt"]
    ids = flow.prompt_ids(prompt)
    np.testing.assert_array_equal(ids, fref["und_input_ids"])
    # <begin_of_image> and the placeholders are the 17 positions the images fill.
    mask = (ids == flow.token_id("<image_placeholder>")) | (ids == flow.token_id("<begin_of_image>"))
    np.testing.assert_array_equal(mask.astype(np.uint8), fref["und_images_seq_mask"])


def test_pixel_values(flow, fref):
    px = flow.preprocess(INPUT)
    assert px.shape == (1, 3, 64, 64)
    # The bicubic resizer may differ from PIL by one level (1/127.5 after normalising).
    assert np.abs(px[0] - fref["und_pixel_values"]).max() <= 1 / 127.5 + 1e-6


def test_vision_aligner_and_embeddings(flow, fref):
    vision = flow.vision_features(fref["und_pixel_values"][None])
    assert rel_err(vision[0], fref["und_vision_out"]) < TOL
    aligned = flow.align_image_features(fref["und_vision_out"][None])
    assert rel_err(aligned[0], fref["und_aligner_out"]) < EXACT
    emb = flow.inputs_embeds(fref["und_input_ids"], fref["und_pixel_values"][None])
    assert rel_err(emb, fref["und_inputs_embeds"]) < TOL
    # <end_of_image> keeps its text embedding; <begin_of_image> does not.
    ids = fref["und_input_ids"]
    text = flow.inputs_embeds(np.where(fref["und_images_seq_mask"] == 1, 0, ids))
    end = int(np.flatnonzero(ids == flow.token_id("<end_of_image>"))[0])
    beg = int(np.flatnonzero(ids == flow.token_id("<begin_of_image>"))[0])
    np.testing.assert_array_equal(emb[end], text[end])
    assert np.abs(emb[beg] - text[beg]).max() > 0


def test_hidden_state_and_logits(flow, fref):
    hidden, logits = flow.forward(fref["und_inputs_embeds"])
    assert rel_err(hidden, fref["und_last_hidden"]) < TOL
    assert rel_err(logits, fref["und_logits"]) < TOL


def test_greedy_answer_tokens_identical(flow, fref):
    tokens: list[int] = []
    answer = flow.understand(INPUT, "Describe this image.", max_new_tokens=8, on_token=tokens.append)
    assert tokens == fref["und_greedy_ids"].tolist()
    assert answer == flow.decode(tokens)
    streamed = "".join(flow.understand(INPUT, "Describe this image.", max_new_tokens=8, stream=True))
    assert streamed == answer


# ---------------------------------------------------------------- generation


def test_generation_prompt_and_schedule(flow, fref):
    from janus_rs import JanusFlow

    np.testing.assert_array_equal(flow.generation_prompt_ids(PROMPT), fref["gen_prompt_ids"])
    t, dt = JanusFlow.schedule(30)
    np.testing.assert_array_equal(t, fref["gen_timesteps"])
    assert dt == float(fref["gen_dt"][0])


def test_step0_encoder_decoder_and_velocity(flow, fref):
    z0 = fref["gen_init_noise"]
    rows = np.concatenate([z0, z0])
    x_emb, t_emb, z_emb = flow.flow_encode(rows, 0.0)
    assert rel_err(t_emb, fref["gen_step0_t_emb"]) < TOL
    assert rel_err(x_emb, fref["gen_step0_enc_out"]) < TOL
    assert rel_err(z_emb, fref["gen_step0_z_emb"]) < TOL
    # The LLM on the step-0 sequence: the conditional rows need no mask.
    hidden, _ = flow.forward(fref["gen_step0_llm_inputs_embeds"][:2])
    assert rel_err(hidden, fref["gen_step0_llm_last_hidden"][:2]) < TOL
    dec_in, v = flow.flow_decode(
        fref["gen_step0_llm_last_hidden"][:, -16:], fref["gen_step0_enc_out"], fref["gen_step0_t_emb"]
    )
    assert rel_err(dec_in, fref["gen_step0_dec_in"]) < EXACT
    assert rel_err(v, fref["gen_step0_velocity_cond_uncond"]) < TOL
    # The whole step (prompt rows, mask, LLM, decoder, guidance).
    v_rows, v_cfg = flow.velocity(PROMPT, z0, 0.0, cfg_weight=2.0)
    assert rel_err(v_rows, fref["gen_step0_velocity_cond_uncond"]) < TOL
    assert rel_err(v_cfg, fref["gen_step0_velocity_cfg"]) < TOL


def test_latents_after_every_step(flow, fref):
    latents = flow.generate_latents(
        PROMPT, num_images=2, initial_noise=fref["gen_init_noise"], return_all_steps=True, progress=False
    )
    assert latents.shape == (31, 2, 4, 8, 8) and latents.dtype == np.float32
    np.testing.assert_array_equal(latents[0], fref["gen_init_noise"])
    for s in range(1, 31):
        assert rel_err(latents[s], fref["gen_latents"][s]) < LATENT_TOL, s
    assert rel_err(latents[30], fref["gen_final_latent"]) < LATENT_TOL
    final = flow.generate_latents(PROMPT, num_images=2, initial_noise=fref["gen_init_noise"], progress=False)
    np.testing.assert_array_equal(final, latents[30])


def test_cached_prompt_equals_full_recompute(flow, fref):
    kwargs = dict(num_images=2, initial_noise=fref["gen_init_noise"], return_all_steps=True, progress=False)
    cached = flow.generate_latents(PROMPT, **kwargs)
    full = flow.generate_latents(PROMPT, cache_prefix=False, **kwargs)
    np.testing.assert_allclose(cached, full, rtol=0, atol=1e-5 * np.abs(full).max())


def test_generate_end_to_end(flow, fref):
    out = flow.generate(PROMPT, num_images=2, cfg_weight=2.0, num_steps=30, initial_noise=fref["gen_init_noise"], progress=False)
    assert len(out) == 2 and out.prompts == [PROMPT, PROMPT]
    assert out.array.shape == (2, 64, 64, 3) and out.array.dtype == np.uint8
    assert out.latents is not None and out.tokens is out.latents
    assert rel_err(out.latents, fref["gen_final_latent"]) < LATENT_TOL
    assert np.abs(out.array.astype(int) - fref["gen_image_u8"].astype(int)).max() <= 1
    img = out.images[0]
    assert img.size == (64, 64) and img.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(img), out.array[0])


def test_vae_decoder_on_the_reference_latent(flow, fref):
    decoded = flow.decode_latents_float(fref["gen_final_latent"])
    assert rel_err(decoded, fref["gen_decoded"]) < TOL
    u8 = flow.decode_latents(fref["gen_final_latent"])
    assert np.abs(u8.astype(int) - fref["gen_image_u8"].astype(int)).max() <= 1


def test_vae_decoder_on_the_diffusers_reference(flow):
    vref = load_file(str(TINY_FLOW / "vae_reference.safetensors"))
    assert rel_err(flow.decode_latents_float(vref["latents_scaled"]), vref["decoded"]) < TOL
    assert rel_err(flow.decode_latents_float(vref["latents_scaled_nonsquare"]), vref["decoded_nonsquare"]) < TOL


# ---------------------------------------------------------------- behaviour


def test_seeded_noise_is_reproducible(flow):
    a = flow.generate_latents(PROMPT, num_images=2, num_steps=2, seed=1, progress=False)
    b = flow.generate_latents(PROMPT, num_images=2, num_steps=2, seed=1, progress=False)
    c = flow.generate_latents(PROMPT, num_images=2, num_steps=2, seed=2, progress=False)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0
    out = flow.generate(PROMPT, num_steps=2, progress=False)
    again = flow.generate(PROMPT, num_steps=2, seed=out.seed, progress=False)
    np.testing.assert_array_equal(out.array, again.array)


def test_progress_counts_steps_over_prompts(flow):
    calls: list[tuple[int, int]] = []
    flow.generate_latents([PROMPT, "a dog"], num_steps=3, seed=0, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, 6) for i in range(1, 7)]


def test_prompts_are_independent(flow, fref):
    z0 = fref["gen_init_noise"]
    both = flow.generate_latents([PROMPT, "a dog"], num_images=1, num_steps=3, initial_noise=z0, progress=False)
    alone = flow.generate_latents(PROMPT, num_images=1, num_steps=3, initial_noise=z0[:1], progress=False)
    np.testing.assert_array_equal(both[:1], alone)
    assert np.abs(both[1] - alone[0]).max() > 0
