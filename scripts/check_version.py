"""Check that janus-rs's version lives in one place and that the changelog and a tag agree with it.

    python scripts/check_version.py [--tag vX.Y.Z]

* The version is ``[package] version`` in Cargo.toml; pyproject.toml declares it dynamic (maturin
  copies it into the wheel's metadata) and the native module exports it as ``__version__``.
* CHANGELOG.md has a section ``## [X.Y.Z]`` for it.
* With ``--tag`` (the release workflow passes the pushed tag): the tag is ``vX.Y.Z`` and that
  section carries a release date instead of "Unreleased".
Standard library only; prints the version.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cargo_version() -> str:
    text = (ROOT / "Cargo.toml").read_text()
    package = re.search(r"(?ms)^\[package\]\s*$(.*?)(?=^\[)", text)
    m = re.search(r'(?m)^version\s*=\s*"([^"]+)"\s*$', package.group(1) if package else "")
    if not m:
        raise SystemExit("Cargo.toml: no [package] version")
    return m.group(1)


def changelog_heading(version: str) -> str | None:
    """The ``## [version] ...`` line of CHANGELOG.md, or ``None``."""
    text = (ROOT / "CHANGELOG.md").read_text()
    m = re.search(rf"(?m)^## \[{re.escape(version)}\](.*)$", text)
    return m.group(0) if m else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", help="the git tag being released, e.g. v0.1.0")
    args = parser.parse_args(argv)
    problems = []
    version = cargo_version()
    if not re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?", version):
        problems.append(f"Cargo.toml version {version!r} is not X.Y.Z (PEP 440 and SemVer alike)")
    pyproject = (ROOT / "pyproject.toml").read_text()
    project = re.search(r"(?ms)^\[project\]\s*$(.*?)(?=^\[)", pyproject)
    if not project or not re.search(r'(?m)^dynamic\s*=\s*\[[^\]]*"version"', project.group(1)):
        problems.append('pyproject.toml: [project] must declare dynamic = ["version"] (maturin takes it from Cargo.toml)')
    elif re.search(r"(?m)^version\s*=", project.group(1)):
        problems.append("pyproject.toml: [project] sets a version; it belongs in Cargo.toml only")
    heading = changelog_heading(version)
    if heading is None:
        problems.append(f"CHANGELOG.md has no '## [{version}]' section")
    if args.tag is not None:
        if args.tag != f"v{version}":
            problems.append(f"tag {args.tag!r} does not match the version in Cargo.toml (v{version})")
        if heading is not None and not re.search(r"\d{4}-\d{2}-\d{2}", heading):
            problems.append(f"CHANGELOG.md: {heading!r} has no release date; replace 'Unreleased' with the date")
    for p in problems:
        print("error:", p, file=sys.stderr)
    if not problems:
        print(version)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
