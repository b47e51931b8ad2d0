"""Turn the CPU wheel into the wheel of the CUDA distribution ``janus-rs-cu13``.

    python scripts/add_cuda_module.py CPU_WHEEL CUDA_SO OUT_DIR

Same import package (``janus_rs``), same version, the CPU core kept; added:
``janus_rs/_native_cuda.abi3.so`` (the CUDA core) and its type stub ``_native_cuda.pyi`` (the
CPU module's stub: both modules are built from the same bindings). The metadata gets the name
``janus-rs-cu13`` and depends on NVIDIA's CUDA 13 library wheels (:data:`CUDA_REQUIREMENTS`),
whose ``site-packages/nvidia/cu13/lib`` the CUDA module finds through its RUNPATH.

The result is tagged ``linux_x86_64``: ``scripts/build_cuda_wheel.sh`` then gives it its
manylinux tag with ``auditwheel repair``, leaving the driver (``libcuda.so.1``) and the CUDA
libraries out of the wheel. Standard library only; RECORD is rewritten with the new hashes.
"""

from __future__ import annotations

import base64
import hashlib
import re
import sys
import zipfile
from pathlib import Path

DISTRIBUTION = "janus-rs-cu13"
# What the CUDA module links besides libcuda.so.1 (the driver, never from PyPI): cuBLAS (with
# cuBLASLt) and cuRAND of CUDA 13, and the runtime libcudart.so.13 that cuBLAS 13.x needs
# (nvidia-cublas does not depend on nvidia-cuda-runtime itself). candle's kernels are PTX built
# into the module, so nothing is compiled at run time but by the driver.
CUDA_REQUIREMENTS = ("nvidia-cublas>=13.0,<14", "nvidia-curand>=10.4,<11", "nvidia-cuda-runtime>=13.0,<14")


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def _cuda_metadata(data: bytes) -> bytes:
    headers, sep, body = data.partition(b"\n\n")
    headers = re.sub(rb"(?m)^Name: .*$", f"Name: {DISTRIBUTION}".encode(), headers, count=1)
    headers = re.sub(rb"(?m)^(Summary: .*)$", rb"\1 (NVIDIA GPUs, CUDA 13)", headers, count=1)
    requirements = "".join(f"\nRequires-Dist: {r}" for r in CUDA_REQUIREMENTS).encode()
    headers = re.sub(rb"(?m)^Version: .*$", lambda m: m.group(0) + requirements, headers, count=1)
    return headers + sep + body


def main(cpu_wheel: str, cuda_so: str, out_dir: str) -> Path:
    src = Path(cpu_wheel)
    m = re.match(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$", src.name)
    if not m or m["name"] != "janus_rs":
        raise SystemExit(f"not a janus-rs wheel: {src.name}")
    version = m["version"]
    if "+" in version:
        raise SystemExit(f"{src.name}: a local version ({version}) cannot be uploaded to PyPI")
    new_name = DISTRIBUTION.replace("-", "_")
    old_info, new_info = f"janus_rs-{version}.dist-info", f"{new_name}-{version}.dist-info"
    out = Path(out_dir) / f"{new_name}-{version}-{m['py']}-{m['abi']}-linux_x86_64.whl"

    files: dict[str, bytes] = {}
    with zipfile.ZipFile(src) as zin:
        for item in zin.infolist():
            if item.filename.endswith("/RECORD"):
                continue
            data = zin.read(item.filename)
            path = item.filename.replace(old_info + "/", new_info + "/", 1)
            if path == f"{new_info}/METADATA":
                data = _cuda_metadata(data)
            elif path == f"{new_info}/WHEEL":
                data = re.sub(rb"(?m)^Tag: (\S+)-(\S+)-\S+$", rb"Tag: \1-\2-linux_x86_64", data)
            files[path] = data
    if "janus_rs/_native.pyi" not in files:
        raise SystemExit(f"{src.name} has no janus_rs/_native.pyi")
    files["janus_rs/_native_cuda.pyi"] = files["janus_rs/_native.pyi"]
    files["janus_rs/_native_cuda.abi3.so"] = Path(cuda_so).read_bytes()

    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in files.items())
    record += f"{new_info}/RECORD,,\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for path, data in files.items():
            info = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if path.endswith(".so") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(info, data)
        zout.writestr(zipfile.ZipInfo(f"{new_info}/RECORD", date_time=(2020, 1, 1, 0, 0, 0)), record)
    print(out)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
