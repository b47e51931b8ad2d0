"""Read and write torch ``.bin`` state dicts (``torch.save``'s zip format) without torch: numpy
only. Used by the fuzz-seed maker (scripts/make_fuzz_seeds.py) and by the test fixtures
(tests/fixture_variants.py), which run where torch is not installed.

A tensor is a pair ``(dtype, array)`` with a safetensors dtype name ("F32", "F16", "BF16") and a
numpy array; bfloat16 has no numpy dtype, so BF16 arrays hold the raw bits as ``uint16``.

``torch_bin`` writes what ``torch.save(state_dict, path)`` writes (torch 2.x, checked byte for
byte against files written by torch 2.15): the pickle of ``data.pkl``, the records
``.format_version``, ``.storage_alignment``, ``byteorder``, ``data/<key>``, ``version``,
``.data/serialization_id`` in that order, each record 64-byte aligned by a ``FB`` extra field,
data descriptors, zip64 end records, and the serialization id computed the way libtorch
computes it on Linux (libstdc++ ``std::hash`` of the record names, combined in the iteration
order of an ``std::unordered_set``, then the combined CRC-32s of the records).
"""

from __future__ import annotations

import bisect
import io
import pickle
import struct
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Mapping, Union

import numpy as np

Tensor = tuple[str, np.ndarray]

# safetensors dtype name -> (torch storage class, numpy dtype of the stored elements)
STORAGES = {
    "F32": ("FloatStorage", np.dtype("<f4")),
    "F16": ("HalfStorage", np.dtype("<f2")),
    "BF16": ("BFloat16Storage", np.dtype("<u2")),
}
_DTYPE_OF_STORAGE = {storage: dtype for dtype, (storage, _) in STORAGES.items()}


# ---------------------------------------------------------------------------------------------- reading
class _StorageRef:
    def __init__(self, dtype: str, key: str, numel: int):
        self.dtype, self.key, self.numel = dtype, key, numel


class _StorageClass:
    def __init__(self, name: str):
        self.name = name


class _Unpickler(pickle.Unpickler):
    """Resolves only the globals a plain state dict uses; anything else is refused."""

    def __init__(self, data: bytes, records: dict[str, bytes]):
        super().__init__(io.BytesIO(data))
        self.records = records

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self._rebuild_tensor_v2
        if module == "torch" and name in _DTYPE_OF_STORAGE:
            return _StorageClass(name)
        raise pickle.UnpicklingError(f"unexpected global in a state dict: {module}.{name}")

    def persistent_load(self, pid):
        kind, cls, key, _location, numel = pid
        if kind != "storage" or not isinstance(cls, _StorageClass):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        return _StorageRef(_DTYPE_OF_STORAGE[cls.name], key, numel)

    def _rebuild_tensor_v2(self, storage, offset, shape, stride, _requires_grad, _hooks, *_metadata):
        item = STORAGES[storage.dtype][1]
        flat = np.frombuffer(self.records[f"data/{storage.key}"], dtype=item)
        if flat.size != storage.numel:
            raise ValueError(f"storage {storage.key}: {flat.size} elements, pickle says {storage.numel}")
        view = np.lib.stride_tricks.as_strided(flat[offset:], shape=tuple(shape),
                                               strides=tuple(s * item.itemsize for s in stride), writeable=False)
        return storage.dtype, np.ascontiguousarray(view)


def read_torch_bin(source: Union[str, Path, bytes]) -> dict[str, Tensor]:
    """The state dict in a torch ``.bin`` (zip format) as ``{name: (dtype, array)}``, in file order."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = z.namelist()
        prefix = names[0].split("/", 1)[0] + "/"
        records = {n[len(prefix):]: z.read(n) for n in names if n.startswith(prefix)}
    state = _Unpickler(records["data.pkl"], records).load()
    return dict(state)


# ---------------------------------------------------------------------------------------------- writing
class _Global:
    """Stands in for a torch function or class: pickled as a GLOBAL of that name, nothing imported."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle insists the function of a reduce be callable
        raise RuntimeError("a stand-in is never called")


class _Rebuild:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class _Storage:
    def __init__(self, cls: _Global, key: str, numel: int):
        self.cls, self.key, self.numel = cls, key, numel


class _Pickler(pickle._Pickler):  # the Python pickler, so that GLOBALs can be written for stand-ins
    dispatch = pickle._Pickler.dispatch.copy()

    def save_stand_in(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + obj.module.encode() + b"\n" + obj.name.encode() + b"\n")
        self.memoize(obj)

    dispatch[_Global] = save_stand_in

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def state_dict_pickle(tensors: Mapping[str, Tensor], ordered_dict: bool = False) -> tuple[bytes, dict[str, bytes]]:
    """``data.pkl`` of ``torch.save(state_dict)`` (protocol 2; one contiguous storage per tensor, keys
    "0", "1", ... in order) and the storages' bytes by key. The state dict is a ``dict``, or an
    ``OrderedDict`` with ``ordered_dict``."""
    rebuild = _Global("torch._utils", "_rebuild_tensor_v2")
    classes = {dtype: _Global("torch", storage) for dtype, (storage, _) in STORAGES.items()}
    entries = OrderedDict() if ordered_dict else {}
    blobs = {}
    for i, (name, (dtype, arr)) in enumerate(tensors.items()):
        arr = np.ascontiguousarray(arr, dtype=STORAGES[dtype][1])
        key = str(i)
        storage = _Storage(classes[dtype], key, arr.size)
        shape = tuple(int(n) for n in arr.shape)
        stride = tuple(int(s) // arr.itemsize for s in arr.strides)
        entries[name] = _Rebuild(rebuild, (storage, 0, shape, stride, False, OrderedDict()))
        blobs[key] = arr.tobytes()
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(entries)
    return buf.getvalue(), blobs


def _hash_bytes(data: bytes, seed: int = 0xC70F6907) -> int:
    """libstdc++'s std::_Hash_bytes (64-bit), i.e. std::hash<std::string>."""
    m64 = (1 << 64) - 1
    mul = (0xC6A4A793 << 32) + 0x5BD1E995

    def shift_mix(v: int) -> int:
        return v ^ (v >> 47)

    n = len(data)
    aligned = n & ~7
    h = (seed ^ (n * mul)) & m64
    for i in range(0, aligned, 8):
        d = (shift_mix((int.from_bytes(data[i:i + 8], "little") * mul) & m64) * mul) & m64
        h = ((h ^ d) * mul) & m64
    if n & 7:
        h = ((h ^ int.from_bytes(data[aligned:], "little")) * mul) & m64
    return shift_mix((shift_mix(h) * mul) & m64)


def _hash_combine(seed: int, value: int) -> int:
    """c10::hash_combine."""
    return (seed ^ ((value + 0x9E3779B9 + (seed << 6) + (seed >> 2)) & ((1 << 64) - 1))) & ((1 << 64) - 1)


_PRIMES = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 103, 109,
           113, 127, 137, 139, 149, 157, 167, 179, 193, 199, 211, 227, 241, 257, 277, 293, 313, 337, 359, 383, 409, 439,
           467, 503, 541, 577, 619, 661, 709, 761, 823, 887, 953, 1031, 1109, 1193, 1289, 1381, 1493, 1613, 1741, 1879,
           2029, 2179, 2357, 2549, 2753, 2971, 3209, 3469, 3739, 4027, 4349, 4703, 5087, 5503, 5953, 6427, 6949, 7517,
           8123, 8783, 9497, 10273, 11113, 12011, 12983, 14033, 15173, 16411, 17749, 19183, 20753, 22447, 24281]
_FAST_BUCKETS = [2, 2, 2, 3, 5, 5, 7, 7, 11, 11, 11, 11, 13, 13]


def _unordered_set_order(names: list[str]) -> list[str]:
    """Iteration order of a libstdc++ std::unordered_set<std::string> after inserting ``names`` in
    order (prime rehash policy, max load factor 1, new nodes at the front of their bucket)."""
    hashes = {n: _hash_bytes(n.encode()) for n in names}
    nodes: list[str] = []
    buckets, next_resize = 1, 0

    def place(order: list[str], name: str, nb: int) -> None:
        b = hashes[name] % nb
        first = next((i for i, other in enumerate(order) if hashes[other] % nb == b), None)
        order.insert(0 if first is None else first, name)

    for name in names:
        count = len(nodes) + 1
        if count > next_resize:
            min_buckets = max(count, 0 if next_resize else 11)
            if min_buckets >= buckets:
                want = max(min_buckets + 1, buckets * 2)
                if want < len(_FAST_BUCKETS):
                    buckets = _FAST_BUCKETS[want]
                else:
                    i = bisect.bisect_left(_PRIMES, want, 6)
                    if i >= len(_PRIMES):
                        raise ValueError("too many records for this unordered_set model")
                    buckets = _PRIMES[i]
                next_resize = buckets
                rehashed: list[str] = []
                for other in nodes:
                    place(rehashed, other, buckets)
                nodes = rehashed
            else:
                next_resize = buckets
        place(nodes, name, buckets)
    return nodes


def _serialization_id(records: list[tuple[str, bytes]]) -> bytes:
    names = 0
    for name in _unordered_set_order([n for n, _ in records]):
        names = _hash_combine(names, _hash_bytes(name.encode()))
    crcs = 0
    for _, data in records:
        crcs = _hash_combine(crcs, zlib.crc32(data))
    return f"{names:020d}{crcs:020d}".encode()


def _torch_zip(archive: str, records: list[tuple[str, bytes]]) -> bytes:
    """The zip that libtorch's PyTorchStreamWriter (miniz) writes: stored records, data 64-byte
    aligned through an "FB" extra field, zero times, data descriptors, zip64 end records."""
    out = bytearray()
    central = bytearray()
    for name, data in records:
        full = f"{archive}/{name}".encode()
        offset = len(out)
        if offset >= 0xFFFFFFFF or len(data) >= 0xFFFFFFFF:
            raise ValueError("records past 4 GiB need zip64 extra fields, not written here")
        pad = -(offset + 30 + len(full) + 4) % 64
        extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
        crc = zlib.crc32(data)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 0, 0x0808, 0, 0, 0, 0, 0, 0, len(full), len(extra))
        out += full + extra + data
        out += struct.pack("<IIII", 0x08074B50, crc, len(data), len(data))
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0, 0, 0x0808, 0, 0, 0, crc, len(data), len(data),
                               len(full), 0, 0, 0, 0, 0, offset) + full
    cd_offset, n = len(out), len(records)
    out += central
    eocd64 = len(out)
    out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 0x2D, 0, 0, n, n, len(central), cd_offset)
    out += struct.pack("<IIQI", 0x07064B50, 0, eocd64, 1)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(central), cd_offset, 0)
    return bytes(out)


def _plain_zip(archive: str, records: list[tuple[str, bytes]]) -> bytes:
    """The same records through Python's zipfile with a fixed timestamp (the fuzz seeds' layout)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        for name, data in records:
            z.writestr(zipfile.ZipInfo(f"{archive}/{name}", date_time=(2026, 1, 1, 0, 0, 0)), data)
    return out.getvalue()


def torch_bin(tensors: Mapping[str, Tensor], archive: str = "archive", *, extra_pickle: bytes = b"",
              ordered_dict: bool = False, plain_zip: bool = False) -> bytes:
    """The bytes ``torch.save(state_dict, f)`` writes, ``f`` being ``<archive>.bin`` (torch names
    the zip folder after the file; "archive" for a stream).

    ``extra_pickle`` is spliced into data.pkl right after the PROTO opcode (for malicious fuzz
    seeds). ``plain_zip`` writes only data.pkl, data/<key> and version through Python's zipfile
    instead of libtorch's layout (the committed fuzz seeds were made that way)."""
    data_pkl, blobs = state_dict_pickle(tensors, ordered_dict=ordered_dict)
    if extra_pickle:
        data_pkl = data_pkl[:2] + extra_pickle + data_pkl[2:]
    if plain_zip:
        return _plain_zip(archive, [("data.pkl", data_pkl)] + [(f"data/{k}", b) for k, b in blobs.items()]
                          + [("version", b"3\n")])
    records = [("data.pkl", data_pkl), (".format_version", b"1"), (".storage_alignment", b"64"),
               ("byteorder", b"little")]
    records += [(f"data/{k}", b) for k, b in blobs.items()]
    records.append(("version", b"3\n"))
    records.append((".data/serialization_id", _serialization_id(records)))
    return _torch_zip(archive, records)

