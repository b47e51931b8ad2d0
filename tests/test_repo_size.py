"""The tracked tree stays small: the derived weight files are made at test time, not committed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import fixture_variants

ROOT = Path(__file__).resolve().parent.parent
LIMIT_MIB = 25


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tracked() -> list[str]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    top = _git("rev-parse", "--show-toplevel")
    if top.returncode != 0:
        pytest.skip(f"{ROOT} is not a git checkout (an sdist or an export?): {top.stderr.decode().strip()}")
    if Path(top.stdout.decode().strip()).resolve() != ROOT:
        pytest.skip(f"{ROOT} is not the top of its git checkout (an sdist unpacked inside another repository?)")
    files = _git("ls-files", "-z")
    assert files.returncode == 0, files.stderr.decode()
    return [p for p in files.stdout.decode().split("\0") if p]


def test_tracked_tree_is_under_25_mib(tracked):
    sizes = {}
    for rel in tracked:
        try:
            sizes[rel] = os.lstat(ROOT / rel).st_size
        except FileNotFoundError:  # deleted in the work tree, not yet committed
            pass
    total = sum(sizes.values())
    largest = sorted(sizes.items(), key=lambda kv: -kv[1])[:10]
    assert total <= LIMIT_MIB * 1024 * 1024, (
        f"tracked files total {total / 2**20:.1f} MiB > {LIMIT_MIB} MiB; largest: "
        + ", ".join(f"{rel} ({size / 2**20:.1f} MiB)" for rel, size in largest))


def test_derived_weight_files_are_ignored_not_tracked(tracked):
    derived = [f"tests/fixtures/{rel}" for rel in fixture_variants.OUTPUTS]
    assert not set(derived) & set(tracked), "derived weight files must not be committed"
    extra = [f"tests/fixtures/{fixture_variants.STAMP.name}", f"tests/fixtures/{fixture_variants.LOCK.name}"]
    ignored = _git("check-ignore", "--no-index", *derived, *extra)
    assert sorted(ignored.stdout.decode().split()) == sorted(derived + extra), ignored.stderr.decode()
    assert "tests/fixtures/tiny-janus-pro/pytorch_model.bin" in tracked  # the one source of the weights
