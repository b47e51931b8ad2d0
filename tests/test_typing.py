"""Users who type-check their code get useful types from janus-rs: ``mypy --strict`` accepts a
realistic script written against the public API (``tests/typing/sample_usage.py``).

This checks the installed package's ``py.typed`` marker, its annotations (e.g. the
``understand(..., stream=True)`` overloads) and the ``_native.pyi`` stub as a user's mypy sees
them. Needs the ``test`` extra's ``mypy``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parent / "typing" / "sample_usage.py"


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy not installed (pip install 'janus-rs[test]')")
def test_sample_usage_passes_mypy_strict(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.pop("MYPYPATH", None)  # janus_rs must be found as installed, like in a user's project
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            "--python-executable",
            sys.executable,
            "--no-error-summary",
            "--show-error-codes",
            str(SAMPLE),
        ],
        cwd=tmp_path,  # away from the repo, so no local config or source tree is picked up
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"mypy --strict failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
