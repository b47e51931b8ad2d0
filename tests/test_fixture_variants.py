"""The weight files derived at test time (tests/fixture_variants.py) hold exactly the committed
checkpoint's tensors: names, dtypes, shapes and values, in every layout."""

from __future__ import annotations

import hashlib
import json
import zipfile

import numpy as np
import pytest
from safetensors import safe_open

import fixture_variants as fv
from conftest import FIXTURES, REFERENCE, TINY, TINY_HF, VARIANTS
from fixture_variants import read_torch_bin, torch_bin  # scripts/torch_format.py

SOURCE = TINY / "pytorch_model.bin"
N = fv.SHARDS


@pytest.fixture(scope="module")
def source():
    return read_torch_bin(SOURCE)


def assert_same(actual: dict, expected: dict, ordered: bool = True) -> None:
    if ordered:
        assert list(actual) == list(expected)
    else:
        assert sorted(actual) == sorted(expected)
    for k, (dtype, arr) in expected.items():
        a_dtype, a = actual[k]
        assert a_dtype == dtype and a.shape == arr.shape, (k, a_dtype, a.shape, dtype, arr.shape)
        np.testing.assert_array_equal(a, arr, err_msg=k)


def read_safetensors(path):
    """By hand, and cross-checked with the safetensors library's view of the header."""
    tensors, metadata = fv.read_safetensors(path)
    with safe_open(str(path), framework="numpy") as f:
        assert sorted(f.keys()) == sorted(tensors)
        assert f.metadata() == metadata == {"format": "pt"}
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    end = 0
    for name, info in header.items():  # contiguous, in header order, no gaps, up to the end of the file
        if name != "__metadata__":
            assert info["data_offsets"][0] == end, name
            end = info["data_offsets"][1]
    assert 8 + n + end == len(data)
    return tensors


def test_source_reader_round_trips_the_committed_bin_byte_for_byte(source):
    # The torch-free reader and writer reproduce the file torch.save wrote.
    assert {dtype for dtype, _ in source.values()} == {"BF16"} and len(source) == 420
    assert torch_bin(source, archive="pytorch_model") == SOURCE.read_bytes()


def test_files_on_disk_are_the_generators_output():
    assert fv.is_fresh()
    for rel, data in fv.derive().items():
        assert (FIXTURES / rel).read_bytes() == data, rel


def test_single_safetensors(source):
    assert_same(read_safetensors(VARIANTS / "model.safetensors"), source, ordered=False)


@pytest.mark.parametrize("kind", ["safetensors", "bin"])
def test_shards_and_index(source, kind):
    folder = VARIANTS / f"sharded-{kind}"
    stem = "model" if kind == "safetensors" else "pytorch_model"
    names = [f"{stem}-{i:05d}-of-{N:05d}.{kind}" for i in range(1, N + 1)]
    assert sorted(p.name for p in folder.iterdir()) == sorted(names + [f"{stem}.{kind}.index.json"])
    index = json.loads((folder / f"{stem}.{kind}.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(a.nbytes for _, a in source.values())
    merged = {}
    keys = list(source)
    for i, name in enumerate(names):
        shard = (read_safetensors(folder / name) if kind == "safetensors"
                 else read_torch_bin(folder / name))
        assert not set(shard) & set(merged)
        assert sorted(k for k, f in index["weight_map"].items() if f == name) == sorted(shard)
        # shards split the key list in half, in file order
        assert sorted(shard) == sorted(keys[: len(keys) // 2] if i == 0 else keys[len(keys) // 2:])
        merged.update(shard)
    assert_same(merged, source, ordered=kind == "bin")
    assert sorted(index["weight_map"]) == sorted(source)


def test_sharded_bin_is_torch_zip_layout():
    # torch names the zip folder after the file and aligns every record to 64 bytes.
    path = VARIANTS / "sharded-bin" / f"pytorch_model-00001-of-{N:05d}.bin"
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        assert {i.filename.split("/")[0] for i in infos} == {path.stem}
        assert [i.filename.split("/", 1)[1] for i in infos][:4] == [
            "data.pkl", ".format_version", ".storage_alignment", "byteorder"]
        data = path.read_bytes()
        for i in infos:
            start = i.header_offset + 30 + int.from_bytes(data[i.header_offset + 26:i.header_offset + 28], "little") \
                + int.from_bytes(data[i.header_offset + 28:i.header_offset + 30], "little")
            assert start % 64 == 0 and data[start:start + i.file_size] == z.read(i)


def test_transformers_layout(source):
    hf = read_safetensors(TINY_HF / "model.safetensors")
    raw = {k: a for k, (_, a) in source.items()}
    dropped = [k for k in source if ".attn_pool." in k or k.endswith("quantize.codebook_used")]
    qkv = [k for k in source if ".attn.qkv." in k]
    assert len(hf) == len(source) - len(dropped) + 2 * len(qkv)
    assert {dtype for dtype, _ in hf.values()} == {"BF16"}
    assert_same(hf, fv.hf_layout(source), ordered=False)
    # spot checks written out independently of scripts/janus_layout.py
    np.testing.assert_array_equal(hf["lm_head.weight"][1], raw["language_model.lm_head.weight"])
    np.testing.assert_array_equal(hf["model.vision_model.embeddings.position_embedding.weight"][1],
                                  raw["vision_model.vision_tower.pos_embed"][0])
    for k in qkv:
        layer, kind = k.split(".")[3], k.rsplit(".", 1)[1]
        base = f"model.vision_model.encoder.layers.{layer}.self_attn."
        parts = [hf[f"{base}{p}_proj.{kind}"][1] for p in "qkv"]
        np.testing.assert_array_equal(np.concatenate(parts), raw[k])
    kept = {a.tobytes() for k, a in raw.items() if k not in dropped and k not in qkv}
    assert kept <= {a.tobytes() for _, a in hf.values()}


def test_byte_identical_to_what_torch_wrote():
    # reference.json records the sha256 of the variants scripts/make_fixtures.py wrote with
    # torch.save and safetensors; the derived files must be those very bytes.
    recorded = json.loads((REFERENCE / "reference.json").read_text())["files"]
    for rel in fv.OUTPUTS:
        if rel.startswith("weight-variants/"):
            digest = hashlib.sha256((FIXTURES / rel).read_bytes()).hexdigest()
            assert digest == recorded[rel]["sha256"], rel
    # (the transformers-layout file's size is in tiny-janus-pro-hf/README.md)
    assert (TINY_HF / "model.safetensors").stat().st_size == 9378830


def test_stale_or_missing_files_are_detected(tmp_path):
    fv.write(tmp_path)
    assert fv.is_fresh(tmp_path)
    target = tmp_path / "weight-variants" / "model.safetensors"
    data = target.read_bytes()
    target.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert not fv.is_fresh(tmp_path)
    fv.write(tmp_path)
    assert fv.is_fresh(tmp_path)
    (tmp_path / "tiny-janus-pro-hf" / "model.safetensors").unlink()
    assert not fv.is_fresh(tmp_path)
    assert not list(tmp_path.glob(".derive-*"))  # no temporary folders left behind
