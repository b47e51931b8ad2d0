"""Check that wheels could be uploaded to PyPI and honour their manylinux tag.

    python scripts/check_wheels.py [--allow-external LIB ...] WHEEL...

For every wheel: the file name parses; the version has no local label (``+cu130``: PyPI refuses
those); the tags are ``cp310-abi3-<platform>`` with a platform PyPI takes (``linux_*`` it does
not); the file is under PyPI's default 100 MB limit. For a ``manylinux_X_Y`` wheel, every ELF
file inside it needs no glibc symbol version newer than X.Y and links only the libraries the
manylinux policy allows (glibc, libgcc_s, libstdc++) plus those given with ``--allow-external``
(for janus-rs-cu13: the driver and the CUDA libraries its ``nvidia-*`` dependencies install).
Needs pyelftools (a dependency of auditwheel). Prints one line per wheel: name, tags, size.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import zipfile
from pathlib import Path

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

WHEEL_NAME = re.compile(
    r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[^-]+)(-(?P<build>\d[^-]*))?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$"
)
# The platform tags PyPI accepts for binary wheels (warehouse's _valid_platform_tag), less the
# old manylinux1/2010 aliases janus-rs never builds.
PYPI_PLATFORMS = re.compile(
    r"^(manylinux_\d+_\d+_(x86_64|aarch64|ppc64le|s390x|armv7l|i686)"
    r"|manylinux2014_(x86_64|aarch64|ppc64le|s390x|armv7l|i686)"
    r"|musllinux_\d+_\d+_(x86_64|aarch64|ppc64le|s390x|armv7l|i686)"
    r"|macosx_\d+_\d+_(x86_64|arm64|universal2)"
    r"|win_amd64|win_arm64|win32)$"
)
# What a manylinux wheel may link from the system (PEP 600's policy lists, x86_64 and aarch64).
MANYLINUX_LIBS = {
    "libgcc_s.so.1", "libstdc++.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libc.so.6",
    "libnsl.so.1", "libutil.so.1", "libpthread.so.0", "libresolv.so.2", "libX11.so.6",
    "libXext.so.6", "libXrender.so.1", "libICE.so.6", "libSM.so.6", "libGL.so.1",
    "libgobject-2.0.so.0", "libgthread-2.0.so.0", "libglib-2.0.so.0", "libz.so.1",
    "libexpat.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "libcrypt.so.1",
}
PYPI_SIZE_LIMIT = 100 * 1024 * 1024


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def check_elf(name: str, data: bytes, glibc: tuple[int, ...], allowed: set[str]) -> list[str]:
    problems = []
    elf = ELFFile(io.BytesIO(data))
    needed: list[str] = []
    for section in elf.iter_sections():
        if isinstance(section, DynamicSection):
            needed += [t.needed for t in section.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
        elif isinstance(section, GNUVerNeedSection):
            for _verneed, auxes in section.iter_versions():
                for aux in auxes:
                    m = re.fullmatch(r"GLIBC_(\d+(?:\.\d+)+)", aux.name)
                    if m and _version_tuple(m.group(1)) > glibc:
                        problems.append(f"{name} needs {aux.name}, newer than glibc {'.'.join(map(str, glibc))}")
    for lib in needed:
        if lib not in MANYLINUX_LIBS and lib not in allowed:
            problems.append(f"{name} links {lib}, which a manylinux wheel may neither need nor carry unrepaired")
    return problems


def check_wheel(path: Path, allowed: set[str]) -> list[str]:
    m = WHEEL_NAME.match(path.name)
    if not m:
        return [f"{path.name}: not a wheel file name"]
    problems = []
    if "+" in m["version"]:
        problems.append(f"{path.name}: local version {m['version']!r}; PyPI refuses local labels")
    if (m["py"], m["abi"]) != ("cp310", "abi3"):
        problems.append(f"{path.name}: tags {m['py']}-{m['abi']}, expected cp310-abi3 (one wheel for CPython >= 3.10)")
    size = path.stat().st_size
    if size > PYPI_SIZE_LIMIT:
        problems.append(f"{path.name}: {size / 2**20:.1f} MiB, over PyPI's 100 MiB limit per file")
    for plat in m["plat"].split("."):
        if not PYPI_PLATFORMS.match(plat):
            problems.append(f"{path.name}: platform tag {plat!r} is not one PyPI accepts")
            continue
        ml = re.match(r"^manylinux_(\d+)_(\d+)_", plat)
        if ml:
            glibc = (int(ml.group(1)), int(ml.group(2)))
            with zipfile.ZipFile(path) as z:
                wheel_meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/WHEEL"))).decode()
                tags = re.findall(r"(?m)^Tag: (\S+)$", wheel_meta)
                if f"{m['py']}-{m['abi']}-{plat}" not in tags:
                    problems.append(f"{path.name}: the WHEEL file's tags {tags} do not include the file name's")
                for member in z.namelist():
                    data = z.read(member)
                    if data[:4] == b"\x7fELF":
                        problems += check_elf(f"{path.name}:{member}", data, glibc, allowed)
    print(f"{path.name}: {m['name']} {m['version']}, {m['py']}-{m['abi']}-{m['plat']}, {size / 2**20:.1f} MiB"
          + ("" if problems else ", uploadable"))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheels", nargs="+", type=Path)
    parser.add_argument("--allow-external", action="append", default=[], metavar="LIB",
                        help="a shared library the wheel may link without carrying it (e.g. libcuda.so.1)")
    args = parser.parse_args(argv)
    problems = []
    for wheel in args.wheels:
        problems += check_wheel(wheel, set(args.allow_external))
    for p in problems:
        print("error:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
