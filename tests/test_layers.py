"""The crate's imports point only down the pipeline (scripts/check_layers.py), and the checker
itself catches what it is meant to catch."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_layers.py"


@pytest.fixture(scope="module")
def layers():
    spec = importlib.util.spec_from_file_location("check_layers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_crate_points_down():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(ROOT / "src")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "layers ok" in result.stdout


def test_every_top_level_module_has_a_layer(layers):
    src = ROOT / "src"
    tops = {p.stem if p.is_file() else p.name for p in src.iterdir()}
    tops -= {"lib"}
    assert tops <= set(layers.RANK), sorted(tops - set(layers.RANK))


def write(src: Path, rel: str, text: str) -> None:
    path = src / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_upward_imports_are_reported(layers, tmp_path):
    src = tmp_path / "src"
    write(src, "lib.rs", "pub mod models;\n")
    # plain use, grouped use, inline path, and a super chain out of the module
    write(src, "models/mod.rs", "use crate::generation::image;\n")
    write(src, "models/llama.rs", "use crate::{error::Result, pipelines::JanusPro};\n")
    write(src, "models/vq.rs", "fn f() { crate::python::init(); }\n")
    write(src, "models/uvit.rs", "use super::super::pipelines::x;\n")
    write(src, "loading/config.rs", "use crate::models::uvit::Params;\n")
    write(src, "kernels/conv.rs", "use crate::kernels::gemm;\nuse crate::models::llama;\n")
    problems = layers.check(src)
    text = "\n".join(problems)
    assert "src/models/mod.rs:1: `models` uses `crate::generation`" in text
    assert "src/models/llama.rs:1: `models` uses `crate::pipelines`" in text
    assert "src/models/vq.rs:1: `models` uses `crate::python`" in text
    assert "src/models/uvit.rs:1: `models` uses `crate::pipelines`" in text
    assert "src/loading/config.rs:1: `loading` uses `crate::models`" in text
    assert "src/kernels/conv.rs:2: `kernels` uses `crate::models`" in text
    assert "crate::error" not in text and "crate::kernels" not in text
    assert len(problems) == 6, problems


def test_comments_and_strings_are_not_imports(layers, tmp_path):
    src = tmp_path / "src"
    write(
        src,
        "models/llama.rs",
        "//! Called by [`crate::generation::image`].\n"
        "/* crate::pipelines */\n"
        'const HINT: &str = "see crate::pipelines::JanusPro";\n'
        "use crate::loading::LlamaConfig; // not crate::generation\n",
    )
    assert layers.check(src) == []


def test_unknown_modules_and_long_files_are_reported(layers, tmp_path, monkeypatch):
    src = tmp_path / "src"
    write(src, "server/mod.rs", "use crate::error::Result;\n")
    write(src, "models/vq.rs", "\n" * (layers.MAX_LINES + 1))
    problems = layers.check(src)
    assert any("module `server` has no layer" in p for p in problems), problems
    assert any(p.startswith("src/models/vq.rs: 601 lines") for p in problems), problems
    monkeypatch.setitem(layers.LONG_FILES, "models/vq.rs", "a stated reason")
    assert not any("vq.rs" in p for p in layers.check(src))
