"""Write the seed corpora of the fuzz targets (fuzz/seeds/<target>/). Needs only numpy and
Pillow (torch .bin files are written by hand in torch.save's zip format). Run by hand:

    python scripts/make_fuzz_seeds.py
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import sys
import types
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"
FIX = ROOT / "tests" / "fixtures"


def write(target: str, name: str, data: bytes) -> None:
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def fake_torch():
    """Stand-ins named like torch's, so pickle writes the same GLOBALs torch.save does."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise RuntimeError("never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    storages = {}
    for name in ["FloatStorage", "BFloat16Storage", "HalfStorage"]:
        cls = type(name, (), {"__module__": "torch", "__qualname__": name})
        setattr(torch, name, cls)
        storages[name] = cls
    torch._utils = utils
    sys.modules["torch"] = torch
    sys.modules["torch._utils"] = utils
    return utils, storages


class _Rebuild:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class _Storage:
    def __init__(self, cls, key, numel):
        self.cls, self.key, self.numel = cls, key, numel


def torch_bin(tensors: dict[str, np.ndarray], extra_pickle: bytes = b"") -> bytes:
    utils, storages = fake_torch()
    entries = OrderedDict()
    blobs = {}
    for i, (name, arr) in enumerate(tensors.items()):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        storage = _Storage(storages["FloatStorage"], str(i), arr.size)
        strides = tuple(s // 4 for s in arr.strides)
        entries[name] = _Rebuild(utils._rebuild_tensor_v2, (storage, 0, arr.shape, strides, False, OrderedDict()))
        blobs[str(i)] = arr.tobytes()

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                return ("storage", obj.cls, obj.key, "cpu", obj.numel)
            return None

    buf = io.BytesIO()
    P(buf, protocol=2).dump(entries)
    data_pkl = buf.getvalue()
    if extra_pickle:
        data_pkl = data_pkl[:2] + extra_pickle + data_pkl[2:]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        def put(name: str, data: bytes | str) -> None:  # fixed timestamps: reproducible files
            z.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)

        put("archive/data.pkl", data_pkl)
        for key, blob in blobs.items():
            put(f"archive/data/{key}", blob)
        put("archive/version", "3\n")
    return out.getvalue()


def safetensors(tensors: dict[str, tuple[str, list[int], bytes]]) -> bytes:
    header, data, off = {}, b"", 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        data += raw
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def main() -> None:
    rng = np.random.default_rng(0)
    # config
    for i, p in enumerate([FIX / "tiny-janus-pro" / "config.json", FIX / "tiny-janus-pro-hf" / "config.json",
                           FIX / "tiny-janusflow" / "config.json", FIX / "tiny-janus-pro" / "preprocessor_config.json",
                           FIX / "tiny-janus-pro-hf" / "preprocessor_config.json",
                           FIX / "tiny-janus-pro" / "processor_config.json",
                           FIX / "tiny-janusflow" / "vae" / "config.json"]):
        write("config", f"{i}-{p.parent.name}-{p.name}", p.read_bytes())
    # torch_pickle
    small = {"w": rng.standard_normal((2, 3)), "b": rng.standard_normal((3,))}
    write("torch_pickle", "state_dict.bin", torch_bin(small))
    evil = b"cos\nsystem\nX\x04\x00\x00\x00true\x85R0"
    write("torch_pickle", "os_system.bin", torch_bin(small, extra_pickle=evil))
    # safetensors
    f32 = rng.standard_normal(6).astype(np.float32).tobytes()
    bf16 = (np.frombuffer(rng.standard_normal(4).astype(np.float32).tobytes(), np.uint32) >> 16).astype(np.uint16).tobytes()
    write("safetensors", "f32_bf16.safetensors", safetensors({"a": ("F32", [2, 3], f32), "b": ("BF16", [4], bf16)}))
    write("safetensors", "empty_shape.safetensors", safetensors({"s": ("F32", [], f32[:4])}))
    # shard_index
    write("shard_index", "valid.json", json.dumps({"metadata": {"total_size": 16}, "weight_map": {"w": "shard.safetensors"}}).encode())
    write("shard_index", "two_shards.json", json.dumps({"weight_map": {"w": "shard.safetensors", "x": "other.safetensors"}}).encode())
    write("shard_index", "escape.json", json.dumps({"weight_map": {"w": "../shard.safetensors"}}).encode())
    # image
    img = Image.fromarray(rng.integers(0, 255, (7, 9, 3), dtype=np.uint8))
    for fmt, mode in [("PNG", "RGB"), ("PNG", "P"), ("PNG", "LA"), ("JPEG", "RGB"), ("GIF", "P"), ("BMP", "RGB"),
                      ("TIFF", "RGB"), ("WEBP", "RGB")]:
        buf = io.BytesIO()
        img.convert(mode).save(buf, format=fmt)
        write("image", f"{fmt.lower()}-{mode}", buf.getvalue())
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 65535, (5, 4), dtype=np.uint16)).save(buf, format="PNG")
    write("image", "png-16bit", buf.getvalue())
    print("seeds written to", SEEDS)


if __name__ == "__main__":
    main()
