"""The transformers-converted layout beyond the parity tests: transformers ≥ 5 nests the
image-processor settings in processor_config.json instead of writing preprocessor_config.json."""

from __future__ import annotations

import shutil

import numpy as np

from janus_rs import JanusPro

from conftest import REFERENCE, TINY, TINY_HF


def test_image_processor_nested_in_processor_config(tmp_path):
    folder = tmp_path / "hf"
    shutil.copytree(TINY_HF, folder)
    (folder / "preprocessor_config.json").unlink()
    nested = JanusPro.from_pretrained(folder)
    flat = JanusPro.from_pretrained(TINY_HF)
    image = REFERENCE / "input.png"
    np.testing.assert_array_equal(nested.preprocess(image), flat.preprocess(image))
    assert nested.image_size == 64


def test_layout_name_and_sizes_in_info_and_repr():
    official, hf = JanusPro.from_pretrained(TINY), JanusPro.from_pretrained(TINY_HF)
    assert (official.info["layout"], hf.info["layout"]) == ("official", "transformers")
    assert "layout='transformers'" in repr(hf) and "name='tiny-janus-pro-hf'" in repr(hf)
    for key in ["hidden_size", "num_layers", "vocab_size", "image_size", "num_image_tokens", "image_vocab_size"]:
        assert official.info[key] == hf.info[key], key
    # The port drops attn_pool and codebook_used: fewer stored elements, same model.
    assert hf.num_parameters < official.num_parameters
