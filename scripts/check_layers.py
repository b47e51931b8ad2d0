#!/usr/bin/env python3
"""Check that the crate's imports only point down the pipeline, and that files stay short.

The top-level modules of `src/` form layers, lowest first:

    error → profile, device, threads, memory → loading → kernels → models → preprocess → generation
          → pipelines → python, fuzzing

A module may use any module of a lower layer and itself, never one of its own layer or above
(`models` never reaches `generation` or `pipelines`; `loading` never reaches `models`). Every
`crate::<module>` path counts, in `use` lines, grouped `use crate::{a::x, b::y}` imports and
inline paths alike, and so do `super::` chains that climb out of a module. Comments are
ignored; `#[cfg(test)]` code is held to the same rule.

Files: at most `MAX_LINES` lines each, unless `LONG_FILES` names the file with the reason.

Usage: `python scripts/check_layers.py [SRC_DIR]`; exit status 1 with one line per violation.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

LAYERS: list[set[str]] = [
    {"error"},
    {"profile", "device", "threads", "memory"},
    {"loading"},
    {"kernels"},
    {"models"},
    {"preprocess"},
    {"generation"},
    {"pipelines"},
    {"python", "fuzzing"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}

MAX_LINES = 600
# path relative to src/ -> why it may be longer
LONG_FILES: dict[str, str] = {}

_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_STRING = re.compile(r'r#*"(?:.|\n)*?"#*|"(?:\\.|[^"\\])*"')
_CRATE_GROUP = re.compile(r"\bcrate::\{")
_CRATE_PATH = re.compile(r"(?<![\w:])\$?crate::(\w+)")
_SUPER_PATH = re.compile(r"(?<![\w:])((?:super::)+)(\w+)")


def module_path(file: Path, src: Path) -> list[str]:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts == ["lib"]:
        return []
    return parts


def strip(code: str) -> str:
    """Source without comments and string literals (a path in a message is not an import)."""

    def keep_newlines(m: re.Match[str]) -> str:
        return "\n" * m.group(0).count("\n")

    out, i = [], 0
    # One pass that respects whichever of string/comment starts first.
    token = re.compile(_STRING.pattern + "|" + _COMMENT.pattern, re.S)
    for m in token.finditer(code):
        out.append(code[i : m.start()])
        out.append(keep_newlines(m))
        i = m.end()
    out.append(code[i:])
    return "".join(out)


def group_heads(code: str, start: int) -> list[str]:
    """The first identifier of each top-level item of the `{...}` group opening at `start`."""
    depth, item, heads = 0, "", []
    for ch in code[start:]:
        if ch == "{":
            depth += 1
            if depth == 1:
                continue
        elif ch == "}":
            depth -= 1
            if depth == 0:
                break
        if depth == 1 and ch == ",":
            heads.append(item)
            item = ""
        elif depth >= 1:
            item += ch
    heads.append(item)
    names = []
    for head in heads:
        m = re.match(r"\s*(\w+)", head)
        if m:
            names.append(m.group(1))
    return names


def targets(code: str, here: list[str]) -> list[tuple[int, str]]:
    """(line, top-level module) for every path out of this file's module."""
    found: list[tuple[int, str]] = []

    def line_of(pos: int) -> int:
        return code.count("\n", 0, pos) + 1

    for m in _CRATE_PATH.finditer(code):
        found.append((line_of(m.start()), m.group(1)))
    for m in _CRATE_GROUP.finditer(code):
        for name in group_heads(code, m.end() - 1):
            found.append((line_of(m.start()), name))
    for m in _SUPER_PATH.finditer(code):
        ups = m.group(1).count("super::")
        # `super` from a file module names its parent; an inline `mod tests` adds one level,
        # so this may resolve one level too high: only top-level names that exist are checked.
        if ups >= len(here):
            found.append((line_of(m.start()), m.group(2)))
    return found


def check(src: Path) -> list[str]:
    problems = []
    for file in sorted(src.rglob("*.rs")):
        rel = file.relative_to(src).as_posix()
        text = file.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines > MAX_LINES and rel not in LONG_FILES:
            problems.append(
                f"src/{rel}: {lines} lines (more than {MAX_LINES}); split it along a seam "
                "or give the reason in LONG_FILES"
            )
        here = module_path(file, src)
        if not here:
            continue  # lib.rs declares the modules
        top = here[0]
        if top not in RANK:
            problems.append(f"src/{rel}: module `{top}` has no layer in scripts/check_layers.py")
            continue
        for line, target in targets(strip(text), here):
            if target == top or target not in RANK:
                continue
            if RANK[target] >= RANK[top]:
                problems.append(
                    f"src/{rel}:{line}: `{top}` uses `crate::{target}`, which is not below it "
                    f"(layers: {' → '.join('/'.join(sorted(names)) for names in LAYERS)})"
                )
    return problems


def main(argv: list[str]) -> int:
    src = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "src"
    problems = check(src)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"layers ok: {sum(1 for _ in src.rglob('*.rs'))} files under {src}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
