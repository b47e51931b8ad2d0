"""The installed ``janus-rs`` distribution carries complete, consistent metadata and ships its
typing files.

Written for a wheel install (``pip install ".[test]"``, as CI does). In an editable install
(``maturin develop``, ``pip install -e``) the metadata is the one written at install time, and
the RECORD lists no package files, so the file-list test is skipped there.
"""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path

import pytest

import janus_rs

DIST_NAME = "janus-rs"
REPO_URL = "https://github.com/janus-rs/janus-rs"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dist() -> metadata.Distribution:
    return metadata.distribution(DIST_NAME)


@pytest.fixture(scope="module")
def meta(dist: metadata.Distribution):  # -> PackageMetadata
    return dist.metadata


def _is_editable(dist: metadata.Distribution) -> bool:
    text = dist.read_text("direct_url.json")
    if not text:
        return False
    return bool(json.loads(text).get("dir_info", {}).get("editable", False))


def test_name_and_version(meta) -> None:
    assert meta["Name"] == DIST_NAME
    assert meta["Version"] == janus_rs.__version__
    assert metadata.version(DIST_NAME) == janus_rs.__version__


def test_version_matches_cargo_toml() -> None:
    """The Python version is the crate's (``dynamic = ["version"]``)."""
    cargo = ROOT / "Cargo.toml"
    if not cargo.is_file():
        pytest.skip("Cargo.toml not found next to the tests")
    package = re.search(r"^\[package\]\s*$(.*?)(?=^\[|\Z)", cargo.read_text(encoding="utf-8"), re.M | re.S)
    assert package is not None
    version = re.search(r'^version\s*=\s*"([^"]+)"', package.group(1), re.M)
    assert version is not None
    assert version.group(1) == janus_rs.__version__


def test_summary_and_description(meta) -> None:
    summary = meta["Summary"]
    assert summary and "Janus" in summary and "\n" not in summary
    assert meta["Description-Content-Type"].startswith("text/markdown")
    assert "janus-rs" in (meta.get_payload() or meta.get("Description") or "")


def test_license(meta) -> None:
    # PEP 639: an SPDX expression plus the bundled license text; no legacy license classifiers
    # (PyPI rejects uploads that combine the two).
    assert meta.get("License-Expression") == "MIT"
    assert "LICENSE" in (meta.get_all("License-File") or [])
    classifiers = meta.get_all("Classifier") or []
    assert not [c for c in classifiers if c.startswith("License ::")], classifiers


def test_license_text_is_shipped(dist: metadata.Distribution) -> None:
    files = dist.files or []
    licenses = [f for f in files if f.name == "LICENSE"]
    assert licenses, "LICENSE is not part of the installed distribution"
    text = licenses[0].read_text(encoding="utf-8")
    assert "MIT License" in text and "the janus-rs authors" in text


def test_requires_python_and_dependencies(meta) -> None:
    assert meta["Requires-Python"] == ">=3.10"
    requires = meta.get_all("Requires-Dist") or []
    runtime = {re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0].lower() for r in requires if "extra ==" not in r}
    assert {"numpy", "pillow", "tqdm"} <= runtime, requires
    test_extra = {
        re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0].lower()
        for r in requires
        if re.search(r"""extra\s*==\s*["']test["']""", r)
    }
    assert {"pytest", "safetensors", "nbclient", "nbformat", "ipykernel", "mypy"} <= test_extra, requires
    assert "test" in (meta.get_all("Provides-Extra") or [])


def test_classifiers(meta) -> None:
    classifiers = set(meta.get_all("Classifier") or [])
    expected = {
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Developers",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Programming Language :: Rust",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Typing :: Typed",
    }
    assert expected <= classifiers, sorted(expected - classifiers)
    assert len([c for c in classifiers if c.startswith("Development Status ::")]) == 1


def test_authors_and_keywords(meta) -> None:
    author = meta.get("Author") or meta.get("Author-email") or ""
    assert "janus-rs" in author
    keywords = meta.get("Keywords") or ""
    assert "janus" in keywords.split(",")


def test_project_urls(meta) -> None:
    urls = dict(entry.split(", ", 1) for entry in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Repository", "Issues", "Documentation"} <= set(urls), urls
    for label, url in urls.items():
        assert url.startswith(REPO_URL), (label, url)
    assert urls["Issues"] == f"{REPO_URL}/issues"


def test_console_script(dist: metadata.Distribution) -> None:
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts.get("janus-rs") == "janus_rs.cli:main"


def test_typing_files_next_to_the_package() -> None:
    """``py.typed`` and the native module's stub sit next to the imported package."""
    package_dir = Path(janus_rs.__file__).parent
    assert (package_dir / "py.typed").is_file()
    assert (package_dir / "_native.pyi").is_file()


def test_distribution_files(dist: metadata.Distribution) -> None:
    """The wheel installs the package with its typing files, and it is the package imported."""
    if _is_editable(dist):
        pytest.skip("editable install: its RECORD lists no package files (checked for wheel installs)")
    files = {f.as_posix(): f for f in dist.files or []}
    for name in ("janus_rs/__init__.py", "janus_rs/py.typed", "janus_rs/_native.pyi"):
        assert name in files, f"{name} is not an installed file of {DIST_NAME}"
    native = [n for n in files if re.fullmatch(r"janus_rs/_native\..*(so|pyd)", n)]
    assert native, "the compiled janus_rs._native module is not an installed file"
    installed_init = Path(files["janus_rs/__init__.py"].locate()).resolve()
    assert installed_init == Path(janus_rs.__file__).resolve(), (installed_init, janus_rs.__file__)
