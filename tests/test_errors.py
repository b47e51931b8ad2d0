"""The bad-input matrix: every bad input gives a Python exception whose class and message name
the problem, and the model keeps working afterwards (the autouse ``model_still_works`` fixture
runs a call on the shared model after every case). Odd but valid inputs (1×1, grayscale, RGBA,
16-bit and palette images, strided arrays, extra unknown tensors in a checkpoint) are accepted.

Extra tensors a checkpoint has beyond what the model reads are accepted and ignored: real
checkpoints carry some (the unused SigLIP ``attn_pool.*``, the VQ ``codebook_used`` buffer), and
the transformers layout drops them; a missing or misshaped tensor the model needs is an error
naming its key. Generation parameters are covered in test_generation.py, hub ids in test_hub.py,
hostile pickles in test_untrusted_pickles.py, memory limits in test_resource_limits.py."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

import janus_rs
from conftest import REFERENCE, TINY, VARIANTS, make_checkpoint
from janus_rs import (
    ConfigError,
    ContextLengthError,
    DeviceError,
    ImageError,
    InputError,
    JanusError,
    JanusPro,
    NotFoundError,
    TokenizerError,
    WeightsError,
)

INPUT = REFERENCE / "input.png"


def edit_safetensors_header(src: Path, dst: Path, edit) -> None:
    """Copy a safetensors file, letting ``edit`` change its JSON header."""
    data = src.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    dst.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])


def checkpoint(tmp_path: Path, **kw) -> Path:
    return make_checkpoint(tmp_path / "ckpt", [VARIANTS / "model.safetensors"], **kw)


def edit_config(ckpt: Path, edit) -> None:
    cfg = json.loads((ckpt / "config.json").read_text())
    edit(cfg)
    (ckpt / "config.json").write_text(json.dumps(cfg))


@pytest.fixture(autouse=True)
def model_still_works(model):
    yield
    assert model.understand(INPUT, "Describe this image.", max_new_tokens=2) is not None


# ----------------------------------------------------------------------------- loading
def test_missing_folder(tmp_path):
    with pytest.raises(NotFoundError, match="model folder not found: .*nope") as e:
        JanusPro.from_pretrained(tmp_path / "nope")
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, JanusError)


def test_missing_config(tmp_path):
    ckpt = checkpoint(tmp_path, skip=("config.json",))
    with pytest.raises(NotFoundError, match="config.json"):
        JanusPro.from_pretrained(ckpt)


def test_missing_tokenizer(tmp_path):
    ckpt = checkpoint(tmp_path, skip=("tokenizer.json",))
    with pytest.raises(NotFoundError, match="tokenizer.json"):
        JanusPro.from_pretrained(ckpt)


def test_missing_weights(tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt", [])
    with pytest.raises(NotFoundError, match="model weights .*pytorch_model.bin"):
        JanusPro.from_pretrained(ckpt)


def test_missing_shard(tmp_path):
    shards = sorted((VARIANTS / "sharded-bin").iterdir())
    ckpt = make_checkpoint(tmp_path / "ckpt", [s for s in shards if not s.name.startswith("pytorch_model-00002")])
    with pytest.raises(NotFoundError, match="shard listed in pytorch_model.bin.index.json not found: .*pytorch_model-00002-of-00002.bin"):
        JanusPro.from_pretrained(ckpt)


def test_config_not_json(tmp_path):
    ckpt = checkpoint(tmp_path)
    (ckpt / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="config.json: not valid JSON"):
        JanusPro.from_pretrained(ckpt)


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda c: c["aligner_config"]["params"].update(projector_type="linear"), "projector_type \"linear\" is not supported"),
        (lambda c: c["vision_config"]["params"].pop("width"), "unknown SigLIP model_name \"siglip_tiny_patch16_64\""),
        (lambda c: c["language_config"].update(hidden_act="gelu"), "hidden_act \"gelu\" is not supported"),
        (lambda c: c["language_config"].update(num_attention_heads=5), "not divisible by num_attention_heads 5"),
        (lambda c: c.pop("language_config"), "missing field `language_config`"),
        (lambda c: c["language_config"].update(hidden_size="big"), "invalid type: string \"big\""),
        (lambda c: c["gen_vision_config"].update(cls="VQ-32"), "cls \"VQ-32\" is not supported"),
        (lambda c: c.update(model_type="janus"), "transformers-layout config .* missing field `text_config`"),
        (lambda c: c.update(model_type="llava"), "model_type \"llava\" is not a Janus checkpoint"),
    ],
)
def test_bad_config_values(tmp_path, edit, message):
    ckpt = checkpoint(tmp_path)
    edit_config(ckpt, edit)
    with pytest.raises(ConfigError, match=message):
        JanusPro.from_pretrained(ckpt)


def test_processor_config_disagrees_with_vision_config(tmp_path):
    ckpt = checkpoint(tmp_path)
    (ckpt / "processor_config.json").write_text(json.dumps({"num_image_tokens": 576}))
    with pytest.raises(ConfigError, match="num_image_tokens 576 differs"):
        JanusPro.from_pretrained(ckpt)


def test_missing_tensor_names_its_key(tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt", [])
    key = "language_model.model.layers.1.mlp.up_proj.weight"
    edit_safetensors_header(VARIANTS / "model.safetensors", ckpt / "model.safetensors",
                            lambda h: h.__setitem__(key + ".renamed", h.pop(key)))
    with pytest.raises(WeightsError, match=f"missing tensor `{key}`"):
        JanusPro.from_pretrained(ckpt)


def test_misshaped_tensor_names_key_and_shapes(tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt", [])
    key = "aligner.layers.2.weight"
    edit_safetensors_header(VARIANTS / "model.safetensors", ckpt / "model.safetensors",
                            lambda h: h[key].update(shape=[32, 128]))
    with pytest.raises(WeightsError, match=rf"`{key}` has shape \[32, 128\] .* implies \[64, 64\]"):
        JanusPro.from_pretrained(ckpt)


def test_integer_tensor_where_floats_are_expected(tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt", [])
    key = "language_model.model.norm.weight"
    edit_safetensors_header(VARIANTS / "model.safetensors", ckpt / "model.safetensors",
                            lambda h: h[key].update(dtype="I16"))
    with pytest.raises(WeightsError, match=f"`{key}` is stored as I16"):
        JanusPro.from_pretrained(ckpt)


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda h: h["aligner.layers.0.weight"].update(data_offsets=[0, 10**9]), "invalid safetensors file"),
        (lambda h: h["aligner.layers.0.weight"].update(data_offsets=[64, 32]), "invalid safetensors file"),
        (lambda h: h["aligner.layers.0.weight"].update(shape=[10**6, 10**6]), "invalid safetensors file"),
        (lambda h: h["aligner.layers.0.bias"].update(dtype="Q4"), "invalid safetensors file"),
        (lambda h: h.__setitem__("aligner.layers.0.weight", {"dtype": "F32"}), "invalid safetensors file"),
    ],
    ids=["offset-past-end", "offsets-reversed", "shape-disagrees-with-size", "unknown-dtype", "no-offsets"],
)
def test_safetensors_header_that_lies(tmp_path, edit, message):
    ckpt = make_checkpoint(tmp_path / "ckpt", [])
    edit_safetensors_header(VARIANTS / "model.safetensors", ckpt / "model.safetensors", edit)
    with pytest.raises(WeightsError, match=rf"cannot read weight file .*model\.safetensors: {message}"):
        JanusPro.from_pretrained(ckpt)


def test_safetensors_header_length_past_the_file(tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt", [])
    data = (VARIANTS / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(struct.pack("<Q", 10**12) + data[8:])
    with pytest.raises(WeightsError, match="cannot read weight file .*model.safetensors"):
        JanusPro.from_pretrained(ckpt)


@pytest.mark.parametrize(
    "index,error,message",
    [
        ("{not json", ConfigError, "pytorch_model.bin.index.json: not valid JSON|pytorch_model.bin.index.json"),
        ('{"weight_map": {}}', ConfigError, "weight_map is empty"),
        ('{"weight_map": {"a": "../../etc/passwd"}}', ConfigError, "must be a file name inside the checkpoint folder"),
        ('{"weight_map": {"a": "/etc/passwd"}}', ConfigError, "must be a file name inside the checkpoint folder"),
        ('{"metadata": {}}', ConfigError, "missing field `weight_map`"),
    ],
    ids=["not-json", "empty", "parent-dir", "absolute", "no-weight-map"],
)
def test_bad_shard_index(tmp_path, index, error, message):
    ckpt = make_checkpoint(tmp_path / "ckpt", [])
    (ckpt / "pytorch_model.bin.index.json").write_text(index)
    with pytest.raises(error, match=message):
        JanusPro.from_pretrained(ckpt)


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("preprocessor_config.json", {"image_std": [0.5, 0.0, 0.5]}, "image_std must be non-zero"),
        ("preprocessor_config.json", {"image_mean": [0.5]}, "image_mean and image_std must have 3 values"),
        ("preprocessor_config.json", {"image_size": 32}, "image_size 32 differs from the vision tower's image_size 64"),
        ("preprocessor_config.json", {"size": {"height": 64, "width": 32}}, "height and width must be equal"),
        ("preprocessor_config.json", {"background_color": [0, 300, 0]}, "background_color must be 3 values in 0..=255"),
        ("processor_config.json", {"sft_format": "chatml"}, "sft_format \"chatml\" is not supported"),
        ("processor_config.json", {"num_image_tokens": "many"}, "invalid type: string \"many\""),
    ],
)
def test_bad_processor_configs(tmp_path, name, content, message):
    ckpt = checkpoint(tmp_path)
    base = json.loads((ckpt / name).read_text())
    base.update(content)
    (ckpt / name).write_text(json.dumps(base))
    with pytest.raises(ConfigError, match=message):
        JanusPro.from_pretrained(ckpt)


def test_janusflow_config_is_not_a_janus_pro(tmp_path):
    ckpt = checkpoint(tmp_path)
    flow = (Path(__file__).parent / "fixtures" / "tiny-janusflow" / "config.json").read_text()
    (ckpt / "config.json").write_text(flow)
    with pytest.raises(ConfigError, match=r"JanusFlow config; JanusPro cannot load it: use `janus_rs.JanusFlow.from_pretrained\(path, vae=...\)`"):
        JanusPro.from_pretrained(ckpt)


def test_extra_unknown_tensors_are_accepted(tmp_path):
    from safetensors.numpy import save_file

    ckpt = make_checkpoint(tmp_path / "ckpt", [])
    data = (VARIANTS / "model.safetensors").read_bytes()
    (ckpt / "model-00001-of-00002.safetensors").write_bytes(data)
    save_file({"some.unknown.extra": np.ones((3, 5), np.float32)}, str(ckpt / "model-00002-of-00002.safetensors"))
    (n,) = struct.unpack("<Q", data[:8])
    keys = [k for k in json.loads(data[8 : 8 + n]) if k != "__metadata__"]
    weight_map = {k: "model-00001-of-00002.safetensors" for k in keys}
    weight_map["some.unknown.extra"] = "model-00002-of-00002.safetensors"
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    m = JanusPro.from_pretrained(ckpt)
    assert m.understand(INPUT, "Describe this image.", max_new_tokens=3) == JanusPro.from_pretrained(TINY).understand(
        INPUT, "Describe this image.", max_new_tokens=3)


@pytest.mark.parametrize("name", ["model.safetensors", "pytorch_model.bin"])
def test_truncated_weight_file(tmp_path, name):
    src = VARIANTS / name if name.endswith("safetensors") else TINY / name
    ckpt = make_checkpoint(tmp_path / "ckpt", [])
    (ckpt / name).write_bytes(src.read_bytes()[: 100_000])
    with pytest.raises(WeightsError, match=f"cannot read weight file .*{name}"):
        JanusPro.from_pretrained(ckpt)


@pytest.mark.parametrize("content", [b"", b"\x00" * 64, b"garbage that is not a weight file"])
def test_empty_or_corrupt_weight_file(tmp_path, content):
    ckpt = make_checkpoint(tmp_path / "ckpt", [])
    (ckpt / "model.safetensors").write_bytes(content)
    with pytest.raises(WeightsError, match="model.safetensors"):
        JanusPro.from_pretrained(ckpt)


def test_tokenizer_that_does_not_parse(tmp_path):
    ckpt = checkpoint(tmp_path)
    (ckpt / "tokenizer.json").write_text('{"version": "1.0", "model": 42}')
    with pytest.raises(TokenizerError, match="cannot load .*tokenizer.json"):
        JanusPro.from_pretrained(ckpt)


def test_tokenizer_without_a_needed_token(tmp_path):
    ckpt = checkpoint(tmp_path)
    tok = json.loads((ckpt / "tokenizer.json").read_text(encoding="utf-8"))
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["content"] != "<begin_of_image>"]
    (ckpt / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(TokenizerError, match="has no token \"<begin_of_image>\""):
        JanusPro.from_pretrained(ckpt)


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_unavailable_is_a_clear_error(device):
    if janus_rs.cuda_available():
        pytest.skip("a CUDA GPU is available here")
    # CPU-only wheel: "the CPU-only build"; CUDA wheel without a driver: "could not be loaded".
    with pytest.raises(DeviceError, match="CUDA was requested but is not available: .*(CPU-only build|could not be loaded|reports no GPU|not available)"):
        JanusPro.from_pretrained(TINY, device=device)
    assert janus_rs.cuda_unavailable_reason()


@pytest.mark.parametrize("device,dtype,message", [("tpu", None, "invalid device \"tpu\""), ("cpu", "int8", "unsupported dtype \"int8\"")])
def test_bad_device_or_dtype(device, dtype, message):
    with pytest.raises(InputError, match=message):
        JanusPro.from_pretrained(TINY, device=device, dtype=dtype)


# ----------------------------------------------------------------------------- images
@pytest.mark.parametrize(
    "image,error,message",
    [
        (b"", ImageError, "image data is empty"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, ImageError, "cannot decode image"),
        (b"definitely not an image", ImageError, "unrecognised image format"),
        (np.zeros((0, 5, 3), np.uint8), ImageError, r"image is empty"),
        (np.zeros((8, 8, 3), np.float32), ImageError, "dtype uint8, got float32"),
        (np.zeros((8, 8, 2), np.uint8), ImageError, r"got shape \(8, 8, 2\)"),
        (np.zeros((2, 8, 8, 3), np.uint8), ImageError, r"got shape \(2, 8, 8, 3\)"),
        (12345, TypeError, "unsupported image type int"),
    ],
)
def test_bad_images(model, image, error, message):
    with pytest.raises(error, match=message):
        model.understand(image, "Describe this image.", max_new_tokens=1)


def test_missing_image_file(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        model.understand(tmp_path / "missing.png", "Describe this image.")


def test_truncated_png_names_the_file(model, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(INPUT.read_bytes()[:200])
    with pytest.raises(ImageError, match="broken.png: cannot decode image"):
        model.understand(bad, "Describe this image.")


def test_huge_image_header_is_refused(model):
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
    with pytest.raises(ImageError):
        model.understand(png + chunk(b"IEND", b""), "Describe this image.")


def _png(mode: str, size=(9, 7), bits16: bool = False) -> bytes:
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    if bits16:
        img = Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16))
    else:
        img = Image.fromarray(rng.integers(0, 255, (*size[::-1], 4), dtype=np.uint8), "RGBA").convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((1, 1, 3), np.uint8),
        _png("L"),
        _png("RGBA"),
        _png("P"),
        _png("LA"),
        _png("I;16", bits16=True),
        np.zeros((1, 500, 3), np.uint8),  # extreme aspect ratio: padded to a square
    ],
    ids=["1x1", "grayscale", "rgba", "palette", "gray-alpha", "16-bit", "1x500"],
)
def test_odd_but_valid_images_are_accepted(model, image):
    pixels = model.preprocess(image)
    assert pixels.shape == (1, 3, 64, 64) and np.isfinite(pixels).all()
    assert isinstance(model.understand(image, "Describe this image.", max_new_tokens=2), str)


def test_strided_numpy_image_is_accepted(model):
    arr = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(INPUT).convert("RGB"))
    flipped = arr[:, ::-1]  # negative strides
    np.testing.assert_array_equal(model.preprocess(flipped), model.preprocess(np.ascontiguousarray(flipped)))


# ----------------------------------------------------------------------------- prompts & parameters
def test_prompt_longer_than_context(model):
    with pytest.raises(ContextLengthError, match=r"prompt is \d+ tokens long but the model's context holds 512"):
        model.understand(None, "hello world " * 400)


def test_too_many_images_for_the_context(model):
    with pytest.raises(ContextLengthError, match="context holds 512"):
        model.understand([INPUT] * 40, "Describe these images.")


def test_image_count_mismatch(model):
    with pytest.raises(InputError, match="has 2 <image_placeholder> tags but 1 images"):
        model.chat([{"role": "user", "content": "<image_placeholder><image_placeholder> hi", "images": [INPUT]}])
    with pytest.raises(InputError, match="2 <image_placeholder> tags but 1 images were given"):
        model.understand(INPUT, "<image_placeholder> and <image_placeholder>?")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"temperature": -1.0, "do_sample": True}, "temperature must be a finite number >= 0"),
        ({"temperature": float("nan"), "do_sample": True}, "temperature must be a finite number >= 0"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"top_k": 0}, "top_k must be an integer >= 1"),
        ({"repetition_penalty": 0.0}, "repetition_penalty must be a finite number > 0"),
        ({"max_new_tokens": -1}, "max_new_tokens must be an integer >= 0"),
        ({"max_new_tokens": 2.5}, "max_new_tokens must be an integer >= 0"),
        ({"seed": -3}, "seed must be an integer >= 0"),
    ],
)
def test_bad_generation_parameters(model, kwargs, message):
    with pytest.raises(InputError, match=message):
        model.understand(INPUT, "Describe this image.", **kwargs)


@pytest.mark.parametrize(
    "messages,message",
    [
        ([], "the conversation is empty"),
        ([{"content": "hi"}], "must be a dict with 'role' and 'content'"),
        ([{"role": "system", "content": "hi"}], "the conversation has only system messages"),
        ([{"role": "narrator", "content": "hi"}], "unknown role \"narrator\""),
        ([{"role": "user", "content": 3}], "content must be a string or a list of parts"),
    ],
)
def test_bad_conversations(model, messages, message):
    with pytest.raises(InputError, match=message):
        model.chat(messages)


def test_bad_arrays_to_low_level_calls(model, ref):
    with pytest.raises(InputError, match=r"pixel_values must have shape \(n, 3, 64, 64\)"):
        model.vision_features(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(InputError, match="NaN or infinite"):
        model.vision_features(np.full((1, 3, 64, 64), np.nan, np.float32))
    with pytest.raises(InputError, match="token id 9999 is outside the vocabulary of 416"):
        model.inputs_embeds([1, 9999])
    with pytest.raises(InputError, match="16 image-token positions .* but 0 image embedding rows"):
        model.inputs_embeds(ref["und_input_ids"])
    with pytest.raises(InputError, match="inputs_embeds width 32 differs from the hidden size 64"):
        model.forward(np.zeros((3, 32), np.float32))
    with pytest.raises(ContextLengthError):
        model.forward(np.zeros((600, 64), np.float32))


# ----------------------------------------------------------------------------- every user mistake is a JanusError
# Issue 12: each mistake below once escaped as a bare built-in (FileNotFoundError, IsADirectoryError,
# TypeError, OverflowError naming no parameter) or reported the wrong problem ("CUDA is not
# available" for a malformed device). Each must be a JanusError subclass that is also the natural
# built-in, and its message must name the parameter or file and say what is allowed.
HUGE = 2**70
U64 = "18446744073709551615"


def _understand(model, **kw):
    return model.understand(INPUT, "Describe this image.", **{"max_new_tokens": 1, **kw})


def _chat(model, **kw):
    return model.chat([{"role": "user", "content": "hi"}], **{"max_new_tokens": 1, **kw})


def _generate(model, **kw):
    return model.generate("a cat", **{"progress": False, **kw})


def _generate_tokens(model, **kw):
    return model.generate_tokens("a cat", **{"progress": False, **kw})


MISTAKES = [
    # images
    ("missing-image", lambda m, tmp: m.understand(tmp / "missing.png", "hi"), NotFoundError, FileNotFoundError, r"image file not found: .*missing\.png"),
    ("missing-image-in-chat", lambda m, tmp: m.chat([{"role": "user", "content": "hi", "images": [tmp / "gone.png"]}]), NotFoundError, FileNotFoundError, r"image file not found: .*gone\.png"),
    ("folder-as-image", lambda m, tmp: m.understand(tmp, "hi"), ImageError, IsADirectoryError, "image path is a folder, not an image file: "),
    ("int-as-image", lambda m, tmp: m.understand(12345, "hi"), InputError, TypeError, "unsupported image type int: .*file path.*binary file object"),
    ("text-mode-file", lambda m, tmp: m.understand(open(INPUT, encoding="latin-1"), "hi"), InputError, TypeError, "returned str from read\\(\\), not bytes: open image files in binary mode"),
    # integers out of range (once OverflowError: "int too big to convert")
    ("understand-seed", lambda m, tmp: _understand(m, seed=HUGE), InputError, ValueError, f"seed must be an integer >= 0 and <= {U64}, got {HUGE}"),
    ("understand-max_new_tokens", lambda m, tmp: _understand(m, max_new_tokens=HUGE), InputError, ValueError, f"max_new_tokens must be an integer >= 0 and <= {U64}"),
    ("understand-top_k", lambda m, tmp: _understand(m, top_k=HUGE), InputError, ValueError, f"top_k must be an integer >= 1 and <= {U64}"),
    ("chat-seed", lambda m, tmp: _chat(m, seed=HUGE), InputError, ValueError, f"seed must be an integer >= 0 and <= {U64}"),
    ("generate-seed", lambda m, tmp: _generate(m, seed=HUGE), InputError, ValueError, f"seed must be an integer >= 0 and <= {U64}"),
    ("generate-num_images", lambda m, tmp: _generate(m, num_images=HUGE), InputError, ValueError, f"num_images must be an integer >= 1 and <= {U64}"),
    ("generate-max_images", lambda m, tmp: _generate(m, max_images=HUGE), InputError, ValueError, f"max_images must be an integer >= 1 and <= {U64}"),
    ("generate_tokens-top_k", lambda m, tmp: _generate_tokens(m, top_k=HUGE), InputError, ValueError, f"top_k must be an integer >= 1 and <= {U64}"),
    ("generate_tokens-seed", lambda m, tmp: _generate_tokens(m, seed=HUGE), InputError, ValueError, f"seed must be an integer >= 0 and <= {U64}"),
    # wrong types and values (once ValueError/TypeError/OverflowError from float() or pyo3)
    ("understand-temperature-str", lambda m, tmp: _understand(m, do_sample=True, temperature="hot"), InputError, TypeError, "temperature must be a number, got 'hot'"),
    ("understand-top_p-str", lambda m, tmp: _understand(m, top_p="0.9"), InputError, TypeError, "top_p must be a number, got '0.9'"),
    ("chat-repetition_penalty-str", lambda m, tmp: _chat(m, repetition_penalty="x"), InputError, TypeError, "repetition_penalty must be a number"),
    ("understand-system_prompt-int", lambda m, tmp: _understand(m, system_prompt=3), InputError, TypeError, "system_prompt must be a string or None, got int"),
    ("chat-messages-int", lambda m, tmp: m.chat(3), InputError, TypeError, "messages must be a list of .* dicts, got int"),
    ("generate-cfg_weight-huge-int", lambda m, tmp: _generate(m, cfg_weight=2**2000), InputError, ValueError, "cfg_weight must be a finite number, got an integer too large"),
    ("generate-temperature-huge-int", lambda m, tmp: _generate(m, temperature=2**2000), InputError, ValueError, "temperature must be a finite number"),
    ("generate-top_p-str", lambda m, tmp: _generate(m, top_p="a"), InputError, TypeError, "top_p must be a number, got 'a'"),
    ("generate-prompt-int", lambda m, tmp: m.generate(3, progress=False), InputError, TypeError, "prompt must be a string or a non-empty list of strings, got 3"),
    ("generate-progress-str", lambda m, tmp: _generate(m, progress="yes"), InputError, TypeError, "progress must be True, False or a callable, got str"),
    # low-level calls
    ("decode-negative", lambda m, tmp: m.decode([-1]), InputError, ValueError, "ids must be non-negative token ids below 2\\*\\*32, got -1"),
    ("decode-huge", lambda m, tmp: m.decode([HUGE]), InputError, ValueError, f"ids must be non-negative token ids below 2\\*\\*32, got {HUGE}"),
    ("image_token_embeddings-negative", lambda m, tmp: m.image_token_embeddings([-1]), InputError, ValueError, "tokens must be non-negative"),
    ("encode-int", lambda m, tmp: m.encode(3), InputError, TypeError, "text must be a string, got int"),
    ("format_prompt-bad-turn", lambda m, tmp: m.format_prompt([("user",)]), InputError, TypeError, r"messages\[0\] must be a \(role, content\) pair"),
    # loading: checked before CUDA's availability and before anything is read
    ("device-cuda-abc", lambda m, tmp: JanusPro.from_pretrained(TINY, device="cuda:abc"), InputError, ValueError, 'invalid device "cuda:abc": use "cpu", "cuda" or "cuda:N"'),
    ("device-cuda-minus-1", lambda m, tmp: JanusPro.from_pretrained(TINY, device="cuda:-1"), InputError, ValueError, 'invalid device "cuda:-1": use "cpu", "cuda" or "cuda:N"'),
    ("device-int", lambda m, tmp: JanusPro.from_pretrained(TINY, device=0), InputError, TypeError, r'device must be a string \("cpu", "cuda" or "cuda:N"\), got 0'),
    ("dtype-int", lambda m, tmp: JanusPro.from_pretrained(TINY, dtype=32), InputError, TypeError, "dtype must be a string .*\"auto\".* got 32"),
    ("dtype-bad-with-cuda", lambda m, tmp: JanusPro.from_pretrained(TINY, device="cuda", dtype="int8"), InputError, ValueError, 'unsupported dtype "int8": use "float32", "bfloat16", "float16" or "auto"'),
    ("roles-one", lambda m, tmp: JanusPro.from_pretrained(TINY, roles=("User",)), InputError, TypeError, r"roles must be a pair of strings \(user, assistant\)"),
    ("revision-int", lambda m, tmp: JanusPro.from_pretrained(TINY, revision=1), InputError, TypeError, "revision must be a string or None, got int"),
    ("name_or_path-int", lambda m, tmp: JanusPro.from_pretrained(3), InputError, TypeError, "name_or_path must be a folder path or a hub id"),
]


@pytest.mark.parametrize("call,error,builtin,message", [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_user_mistakes_are_janus_errors(model, tmp_path, call, error, builtin, message):
    with pytest.raises(JanusError) as e:
        call(model, tmp_path)
    assert isinstance(e.value, error), f"{type(e.value).__name__}: {e.value}"
    assert isinstance(e.value, builtin), f"{type(e.value).__name__} should also be a {builtin.__name__}"
    assert __import__("re").search(message, str(e.value)), str(e.value)
    assert "\n" not in str(e.value)


def _answer(model, image):
    return model.understand(image, "Describe this image.", max_new_tokens=6)


def test_file_objects_and_buffers_work_as_images(model):
    import io

    expected = _answer(model, INPUT)
    data = INPUT.read_bytes()
    with open(INPUT, "rb") as f:
        assert _answer(model, f) == expected
    assert _answer(model, io.BytesIO(data)) == expected
    assert _answer(model, bytearray(data)) == expected
    assert _answer(model, memoryview(data)) == expected
    np.testing.assert_array_equal(model.preprocess([io.BytesIO(data)]), model.preprocess(INPUT))
    assert model.chat([{"role": "user", "content": "Describe this image.", "images": [io.BytesIO(data)]}],
                      max_new_tokens=6) == model.chat(
        [{"role": "user", "content": "Describe this image.", "images": [INPUT]}], max_new_tokens=6)


def test_undecodable_file_object_names_it(model, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image")
    with open(bad, "rb") as f, pytest.raises(ImageError, match=r"notes\.png: unrecognised image format"):
        model.understand(f, "hi")


def test_huge_image_message_says_the_limit(model):
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def png(side: int) -> bytes:
        header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                + chunk(b"IEND", b""))

    with pytest.raises(ImageError, match="image is 100000x100000; sides larger than 16384 pixels are not accepted"):
        model.understand(png(100_000), "hi")
    with pytest.raises(ImageError, match=r"image is 16384x16384; .*limit of 512 MiB"):
        model.understand(png(16_384), "hi")


def test_cuda_unavailable_reason_does_not_claim_a_request():
    reason = janus_rs.cuda_unavailable_reason()
    if reason is None:
        pytest.skip("a CUDA GPU is available here")
    assert "requested" not in reason, reason


def test_auto_dtype_is_documented_and_accepted():
    from janus_rs import JanusFlow

    assert '"auto"' in JanusPro.from_pretrained.__doc__
    assert '"auto"' in JanusFlow.from_pretrained.__doc__
    # "auto" is the default: bf16 storage on CPU for this bf16-stored checkpoint.
    assert JanusPro.from_pretrained(TINY, dtype="auto").dtype == "bfloat16"


def test_generation_result_repr_counts_images():
    from janus_rs import GenerationResult

    one = GenerationResult(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 4), np.int64), 7, ["a"])
    two = GenerationResult(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 4), np.int64), 7, ["a", "b"])
    assert repr(one) == "GenerationResult(1 image of 8x8, seed=7)"
    assert repr(two) == "GenerationResult(2 images of 8x8, seed=7)"
