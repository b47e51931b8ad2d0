"""Write the seed corpora of the fuzz targets (fuzz/seeds/<target>/). Needs only numpy and
Pillow (torch .bin files are written by scripts/torch_format.py in torch.save's format). Run by hand:

    python scripts/make_fuzz_seeds.py
"""

from __future__ import annotations

import io
import json
import struct
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_format  # noqa: E402  (scripts/torch_format.py: torch .bin files without torch)

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"
FIX = ROOT / "tests" / "fixtures"


def write(target: str, name: str, data: bytes) -> None:
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def torch_bin(tensors: dict[str, np.ndarray], extra_pickle: bytes = b"") -> bytes:
    """A float32 state dict as torch.save writes it (an OrderedDict, the records through Python's
    zipfile), by the torch-free writer in torch_format.py."""
    return torch_format.torch_bin({k: ("F32", np.asarray(v, dtype=np.float32)) for k, v in tensors.items()},
                                  extra_pickle=extra_pickle, ordered_dict=True, plain_zip=True)


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
