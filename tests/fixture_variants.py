"""The weight files derived from the tiny Janus-Pro checkpoint: not committed, written here from
``tests/fixtures/tiny-janus-pro/pytorch_model.bin`` (the one committed copy of the weights) with
numpy and the pure-Python torch-format code in ``scripts/torch_format.py``; no torch needed.

    weight-variants/model.safetensors                        the same tensors, one safetensors file
    weight-variants/sharded-safetensors/model-0000{1,2}-of-00002.safetensors + model.safetensors.index.json
    weight-variants/sharded-bin/pytorch_model-0000{1,2}-of-00002.bin          + pytorch_model.bin.index.json
    tiny-janus-pro-hf/model.safetensors                      the transformers-converted layout
                                                             (scripts/janus_layout.py:official_to_hf)

The files are byte-identical to what ``scripts/make_fixtures.py`` (torch.save / safetensors) and
``scripts/make_hf_layout_fixture.py`` (transformers' save_pretrained) wrote when they were committed.
Shards split the key list in half in file order; index files are the HF format.

``tests/conftest.py`` calls :func:`ensure` when the test session starts: it (re)writes the files
when they are missing, or when the source, this generator or a derived file has changed since
the last run (a stamp, ``tests/fixtures/.derived-weights.json``, records the hashes). Writers
take a lock and move finished files into place, so parallel sessions are safe. By hand:

    python tests/fixture_variants.py            # write (or refresh) the derived files
    python tests/fixture_variants.py --check    # exit 1 if they are missing or stale
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

from janus_layout import official_to_hf  # noqa: E402  (scripts/janus_layout.py)
from torch_format import STORAGES, Tensor, read_torch_bin, torch_bin  # noqa: E402  (scripts/torch_format.py)

FIXTURES = ROOT / "tests" / "fixtures"
SOURCE = FIXTURES / "tiny-janus-pro" / "pytorch_model.bin"
STAMP = FIXTURES / ".derived-weights.json"
LOCK = FIXTURES / ".derived-weights.lock"
SHARDS = 2

# Every derived file, relative to FIXTURES (these paths are in .gitignore).
OUTPUTS = [
    "weight-variants/model.safetensors",
    *(f"weight-variants/sharded-safetensors/model-{i:05d}-of-{SHARDS:05d}.safetensors" for i in range(1, SHARDS + 1)),
    "weight-variants/sharded-safetensors/model.safetensors.index.json",
    *(f"weight-variants/sharded-bin/pytorch_model-{i:05d}-of-{SHARDS:05d}.bin" for i in range(1, SHARDS + 1)),
    "weight-variants/sharded-bin/pytorch_model.bin.index.json",
    "tiny-janus-pro-hf/model.safetensors",
]
# What the output depends on besides the source weights.
GENERATOR_FILES = [Path(__file__).resolve(), SCRIPTS / "torch_format.py", SCRIPTS / "janus_layout.py"]

# safetensors orders tensors by dtype (descending, in its enum order), then by name.
_SAFETENSORS_DTYPE_RANK = {"F16": 11, "BF16": 12, "F32": 15}


# ---------------------------------------------------------------------------------------------- formats
def safetensors_bytes(tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """What the safetensors library's serialize writes (``save_file``): tensors sorted by dtype
    then name, a compact JSON header with ``__metadata__`` first, space-padded to 8 bytes."""
    order = sorted(tensors, key=lambda k: (-_SAFETENSORS_DTYPE_RANK[tensors[k][0]], k))
    header: dict = {}
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    blobs, offset = [], 0
    for name in order:
        dtype, arr = tensors[name]
        raw = np.ascontiguousarray(arr, dtype=STORAGES[dtype][1]).tobytes()
        header[name] = {"dtype": dtype, "shape": [int(n) for n in arr.shape],
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def read_safetensors(source: Path | bytes) -> tuple[dict[str, Tensor], dict | None]:
    """``({name: (dtype, array)}, metadata)`` of a safetensors file, in header order (BF16 as uint16)."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    metadata = header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        arr = np.frombuffer(data[8 + n + a:8 + n + b], dtype=STORAGES[info["dtype"]][1]).reshape(info["shape"])
        out[name] = (info["dtype"], arr)
    return out, metadata


def index_json(weight_map: Mapping[str, str], total_size: int) -> bytes:
    return (json.dumps({"metadata": {"total_size": total_size}, "weight_map": dict(weight_map)}, indent=2,
                       sort_keys=True) + "\n").encode()


def _dtype_of(arr: np.ndarray) -> str:
    return {np.dtype("<f4"): "F32", np.dtype("<f2"): "F16", np.dtype("<u2"): "BF16"}[arr.dtype]


def hf_layout(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The state dict renamed (and qkv split) into the transformers port's layout."""
    return {k: (_dtype_of(a), a) for k, a in official_to_hf({k: a for k, (_, a) in tensors.items()}).items()}


def derive(source: Path = SOURCE) -> dict[str, bytes]:
    """Every derived file's bytes, by path relative to FIXTURES."""
    sd = read_torch_bin(source)
    keys = list(sd)
    half = len(keys) // SHARDS
    shards = [keys[:half], keys[half:]]
    total_size = sum(a.nbytes for _, a in sd.values())
    meta = {"format": "pt"}
    files = {"weight-variants/model.safetensors": safetensors_bytes(sd, meta)}
    wm_st, wm_bin = {}, {}
    for i, ks in enumerate(shards, 1):
        fs = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        fb = f"pytorch_model-{i:05d}-of-{len(shards):05d}.bin"
        part = {k: sd[k] for k in ks}
        files[f"weight-variants/sharded-safetensors/{fs}"] = safetensors_bytes(part, meta)
        files[f"weight-variants/sharded-bin/{fb}"] = torch_bin(part, archive=fb[: -len(".bin")])
        for k in ks:
            wm_st[k], wm_bin[k] = fs, fb
    files["weight-variants/sharded-safetensors/model.safetensors.index.json"] = index_json(wm_st, total_size)
    files["weight-variants/sharded-bin/pytorch_model.bin.index.json"] = index_json(wm_bin, total_size)
    files["tiny-janus-pro-hf/model.safetensors"] = safetensors_bytes(hf_layout(sd), meta)
    assert sorted(files) == sorted(OUTPUTS), sorted(files)
    return files


# ---------------------------------------------------------------------------------------------- freshness
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _inputs() -> dict[str, str]:
    files = {"source": SOURCE, **{f"generator:{p.name}": p for p in GENERATOR_FILES}}
    return {name: _sha256(p) for name, p in files.items()}


def is_fresh(fixtures: Path = FIXTURES) -> bool:
    """The stamp matches the source and generator, and every derived file is the one recorded."""
    stamp_path = fixtures / STAMP.name
    try:
        stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if stamp.get("inputs") != _inputs() or sorted(stamp.get("outputs", {})) != sorted(OUTPUTS):
        return False
    for rel, sha in stamp["outputs"].items():
        path = fixtures / rel
        if not path.is_file() or _sha256(path) != sha:
            return False
    return True


@contextmanager
def _locked() -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (the writes below are still atomic renames)
        yield
        return
    with open(LOCK, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def write(fixtures: Path = FIXTURES) -> list[str]:
    """Write every derived file (each to a temporary name first, then renamed into place) and the
    stamp; returns the relative paths written."""
    files = derive()
    tmp = Path(tempfile.mkdtemp(prefix=".derive-", dir=fixtures))
    try:
        staged = []
        for rel, data in files.items():
            t = tmp / rel.replace("/", "__")
            t.write_bytes(data)
            staged.append((t, fixtures / rel))
        for t, dest in staged:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(t, dest)
        stamp = {"note": "written by tests/fixture_variants.py; not committed",
                 "inputs": _inputs(),
                 "outputs": {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}}
        t = tmp / STAMP.name
        t.write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(t, fixtures / STAMP.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return list(files)


def ensure() -> bool:
    """Make sure the derived files exist and are current; returns whether they were (re)written."""
    if is_fresh():
        return False
    with _locked():
        if is_fresh():  # another session wrote them while we waited
            return False
        write()
        return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--check"]:
        fresh = is_fresh()
        print("derived weight files are current" if fresh else "derived weight files are missing or stale")
        return 0 if fresh else 1
    if argv:
        print(__doc__)
        return 2
    with _locked():
        written = write()
    for rel in written:
        print(f"wrote tests/fixtures/{rel} ({(FIXTURES / rel).stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
