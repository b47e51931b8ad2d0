"""Parity with the reference implementation (transformers port, float32, same bf16-rounded
weights) on the bundled tiny checkpoint, through the public Python API."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import PARITY_CASES, REFERENCE, rel_err

TOL = 1e-4  # relative, float32


@pytest.fixture(scope="module", params=PARITY_CASES)
def model(request):
    """The tiny checkpoint, in both layouts, in float32 on each available device (CUDA skipped
    without a GPU), and with bf16-stored weights on CPU (f32 compute, same tolerances)."""
    from janus_rs import JanusPro

    device, folder, dtype = request.param
    return JanusPro.from_pretrained(folder, device=device, dtype=dtype)
INPUT = REFERENCE / "input.png"
INPUT2 = REFERENCE / "input2.png"


def test_resizer_matches_pil_on_fixture_images(model, ref):
    # Byte-exact PIL bicubic is not promised; the resizer may differ by one level.
    for path, key in [(INPUT, "und_image_resized"), (INPUT2, "mi_image2_resized")]:
        ours = model.resize_image(path)
        assert ours.shape == ref[key].shape
        assert np.abs(ours.astype(int) - ref[key].astype(int)).max() <= 1


def test_pixel_values_given_the_resized_image(model, ref):
    px = model.preprocess(ref["und_image_resized"])
    np.testing.assert_array_equal(px[0], ref["und_pixel_values"])
    px2 = model.preprocess(ref["mi_image2_resized"])
    np.testing.assert_array_equal(px2[0], ref["mi_pixel_values"][1])


def test_prompt_ids_match(model, ref, ref_json):
    prompt = model.format_prompt([("user", "<image_placeholder>\nDescribe this image.")])
    assert prompt == ref_json["und_prompt"]
    np.testing.assert_array_equal(model.prompt_ids(prompt), ref["und_input_ids"])


def test_vision_and_aligner(model, ref):
    vision = model.vision_features(ref["und_pixel_values"][None])
    assert rel_err(vision[0], ref["und_vision_out"]) < TOL
    aligned = model.align_image_features(vision)
    assert rel_err(aligned[0], ref["und_aligner_out"]) < TOL


def test_merged_input_embeddings(model, ref):
    emb = model.inputs_embeds(ref["und_input_ids"], ref["und_pixel_values"][None])
    assert rel_err(emb, ref["und_inputs_embeds"]) < TOL


def test_hidden_state_and_logits(model, ref):
    hidden, logits = model.forward(ref["und_inputs_embeds"])
    assert rel_err(hidden, ref["und_last_hidden"]) < TOL
    assert rel_err(logits, ref["und_logits"]) < TOL
    # A batch of one gives the same result.
    hidden_b, logits_b = model.forward(ref["und_inputs_embeds"][None])
    np.testing.assert_allclose(logits_b[0], logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("image_form", ["path", "pil", "numpy", "bytes"])
def test_greedy_answer_tokens_identical(model, ref, image_form):
    image = {
        "path": INPUT,
        "pil": Image.open(INPUT),
        "numpy": np.asarray(Image.open(INPUT).convert("RGB")),
        "bytes": INPUT.read_bytes(),
    }[image_form]
    tokens: list[int] = []
    answer = model.understand(image, "Describe this image.", max_new_tokens=32, on_token=tokens.append)
    # The reference never reaches EOS within 32 tokens, so EOS-stopping changes nothing here.
    assert tokens == ref["und_greedy_ids_eos"].tolist()
    assert tokens[:8] == ref["und_greedy_ids"].tolist()
    assert answer == model.decode(tokens)


def test_two_images_two_turns(model, ref, ref_json):
    conversation = [
        {"role": "user", "content": "<image_placeholder>\n<image_placeholder>\nCompare the two images.",
         "images": [INPUT, INPUT2]},
        {"role": "assistant", "content": "The first is wide and the second is tall."},
        {"role": "user", "content": "Which one is brighter?"},
    ]
    prompt = model.format_prompt([(m["role"], m["content"]) for m in conversation])
    assert prompt == ref_json["mi_prompt"]
    np.testing.assert_array_equal(model.prompt_ids(prompt), ref["mi_input_ids"])
    emb = model.inputs_embeds(ref["mi_input_ids"], ref["mi_pixel_values"])
    assert rel_err(emb, ref["mi_inputs_embeds"]) < TOL
    _, logits = model.forward(ref["mi_inputs_embeds"])
    assert rel_err(logits[-1], ref["mi_logits_last"]) < TOL

    tokens: list[int] = []
    model.chat(conversation, max_new_tokens=8, on_token=tokens.append)
    eos = model.info["special_token_ids"]["eos"]
    expected = ref["mi_greedy_ids"].tolist()
    assert eos not in expected  # the reference ran with EOS disabled; it never came up
    assert tokens == expected
