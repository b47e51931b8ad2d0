"""Turn the CPU wheel into the CUDA wheel: add ``janus_rs/_native_cuda.abi3.so``.

    python scripts/add_cuda_module.py CPU_WHEEL CUDA_SO OUT_DIR

The result gets the local version ``+cu130`` (so it is told apart from the CPU wheel) and the
platform tag ``linux_x86_64``: the CUDA module links ``libcuda.so.1``, which a manylinux wheel may
not depend on. Standard library only; RECORD is rewritten with the new hashes.
"""

from __future__ import annotations

import base64
import hashlib
import re
import sys
import zipfile
from pathlib import Path

LOCAL_VERSION = "cu130"


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def main(cpu_wheel: str, cuda_so: str, out_dir: str) -> Path:
    src = Path(cpu_wheel)
    m = re.match(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$", src.name)
    if not m:
        raise SystemExit(f"not a wheel file name: {src.name}")
    name, version = m["name"], m["version"]
    new_version = f"{version.split('+')[0]}+{LOCAL_VERSION}"
    old_info, new_info = f"{name}-{version}.dist-info", f"{name}-{new_version}.dist-info"
    out = Path(out_dir) / f"{name}-{new_version}-{m['py']}-{m['abi']}-linux_x86_64.whl"

    files: dict[str, bytes] = {}
    with zipfile.ZipFile(src) as zin:
        for item in zin.infolist():
            if item.filename.endswith("/RECORD"):
                continue
            data = zin.read(item.filename)
            path = item.filename.replace(old_info + "/", new_info + "/", 1)
            if path == f"{new_info}/METADATA":
                data = re.sub(rb"(?m)^Version: .*$", f"Version: {new_version}".encode(), data, count=1)
            elif path == f"{new_info}/WHEEL":
                data = re.sub(rb"(?m)^Tag: (\S+)-(\S+)-\S+$", rb"Tag: \1-\2-linux_x86_64", data)
            files[path] = data
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
