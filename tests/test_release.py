"""What the release depends on: one version everywhere, the guard against installing both
distributions, and the wheel-tag check that .ci/run and the release workflow run on every wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import janus_rs
from janus_rs import _distribution

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPTS / name), *args], capture_output=True, text=True, timeout=120)


def test_version_is_set_once_and_in_the_changelog() -> None:
    r = _script("check_version.py")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == janus_rs.__version__


def test_release_tag_must_match_the_version() -> None:
    r = _script("check_version.py", "--tag", "v999.0.0")
    assert r.returncode == 1
    assert "does not match the version in Cargo.toml" in r.stderr


def test_cli_version_is_the_package_version() -> None:
    r = subprocess.run([sys.executable, "-m", "janus_rs", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"janus-rs {janus_rs.__version__}"


def _dist_info(site: Path, name: str, version: str = "0.1.0") -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.4\nName: {name.replace('_', '-')}\nVersion: {version}\n")


def test_one_distribution_is_accepted(tmp_path: Path) -> None:
    _dist_info(tmp_path, "janus_rs_cu13")
    _dist_info(tmp_path, "numpy", "2.0.0")
    assert _distribution.installed_distributions(tmp_path) == ["janus-rs-cu13"]
    _distribution.check_single_distribution(tmp_path)


def test_both_distributions_are_refused_with_the_fix(tmp_path: Path) -> None:
    _dist_info(tmp_path, "janus_rs")
    _dist_info(tmp_path, "janus_rs_cu13")
    assert _distribution.installed_distributions(tmp_path) == ["janus-rs", "janus-rs-cu13"]
    with pytest.raises(ImportError, match="both janus-rs and janus-rs-cu13 are installed") as e:
        _distribution.check_single_distribution(tmp_path)
    assert "pip uninstall -y janus-rs janus-rs-cu13" in str(e.value)


def test_a_missing_folder_has_no_distributions(tmp_path: Path) -> None:
    assert _distribution.installed_distributions(tmp_path / "missing") == []


# --- scripts/check_wheels.py, on wheels made here around the installed native module ---

NATIVE_SO = next(Path(janus_rs.__file__).parent.glob("_native*.so"), None)


def _wheel(folder: Path, filename: str, tag: str | None = None, so: bool = True) -> Path:
    path = folder / filename
    name, version, py, abi, plat = filename[: -len(".whl")].split("-")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}-{version}.dist-info/WHEEL",
                   f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag or f'{py}-{abi}-{plat}'}\n")
        if so:
            assert NATIVE_SO is not None
            z.writestr("janus_rs/_native.abi3.so", NATIVE_SO.read_bytes())
    return path


def _check_wheels(*args: str | Path) -> subprocess.CompletedProcess:
    pytest.importorskip("elftools", reason="scripts/check_wheels.py reads ELF files with pyelftools")
    return _script("check_wheels.py", *map(str, args))


def test_a_manylinux_wheel_passes(tmp_path: Path) -> None:
    r = _check_wheels(_wheel(tmp_path, "janus_rs-0.1.0-cp310-abi3-manylinux_2_99_x86_64.whl"))
    assert r.returncode == 0, r.stderr
    assert "cp310-abi3-manylinux_2_99_x86_64" in r.stdout and "uploadable" in r.stdout


def test_local_versions_and_linux_tags_are_refused(tmp_path: Path) -> None:
    r = _check_wheels(_wheel(tmp_path, "janus_rs-0.1.0+cu130-cp310-abi3-linux_x86_64.whl"))
    assert r.returncode == 1
    assert "PyPI refuses local labels" in r.stderr
    assert "platform tag 'linux_x86_64' is not one PyPI accepts" in r.stderr


def test_symbols_newer_than_the_tag_are_found(tmp_path: Path) -> None:
    # The native module needs glibc >= 2.25 whatever it was built with (getrandom), so a
    # manylinux_2_17 label is a lie the check must catch.
    r = _check_wheels(_wheel(tmp_path, "janus_rs-0.1.0-cp310-abi3-manylinux_2_17_x86_64.whl"))
    assert r.returncode == 1
    assert "newer than glibc 2.17" in r.stderr


def test_the_wheel_file_must_carry_the_name_s_tag(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path, "janus_rs-0.1.0-cp310-abi3-manylinux_2_28_x86_64.whl",
                   tag="cp310-abi3-linux_x86_64", so=False)
    r = _check_wheels(wheel)
    assert r.returncode == 1
    assert "do not include the file name's" in r.stderr


def test_libraries_outside_the_policy_need_allowing(tmp_path: Path) -> None:
    pytest.importorskip("elftools")
    sys.path.insert(0, str(SCRIPTS))
    try:
        import check_wheels
    finally:
        sys.path.remove(str(SCRIPTS))
    assert NATIVE_SO is not None
    data = NATIVE_SO.read_bytes()
    assert check_wheels.check_elf("x.so", data, (2, 99), set()) == []
    # Pretend the policy allows nothing: every DT_NEEDED entry is then reported by name.
    saved = check_wheels.MANYLINUX_LIBS
    check_wheels.MANYLINUX_LIBS = set()
    try:
        problems = check_wheels.check_elf("x.so", data, (2, 99), set())
        assert any("links libc.so.6" in p for p in problems), problems
        assert not any("libc.so.6" in p for p in check_wheels.check_elf("x.so", data, (2, 99), {"libc.so.6"}))
    finally:
        check_wheels.MANYLINUX_LIBS = saved
