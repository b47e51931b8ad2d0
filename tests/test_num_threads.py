"""One thread count per process (`threads=`, `janus_rs.set_num_threads`, `JANUS_RS_NUM_THREADS`).

The count can only be set once per process, so each case runs in a fresh interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import TINY


def run(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("JANUS_RS_NUM_THREADS", "RAYON_NUM_THREADS", "CANDLE_NUM_THREADS")}
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120)


def test_the_first_model_sets_the_count_for_both_pools():
    # os.environ is Python's copy from start-up: read the C environment candle reads.
    out = run(
        "import ctypes, janus_rs\n"
        "getenv = ctypes.CDLL(None).getenv\n"
        "getenv.restype = ctypes.c_char_p\n"
        "assert janus_rs.get_num_threads() is None\n"
        f"m = janus_rs.JanusPro.from_pretrained({str(TINY)!r}, threads=1)\n"
        "m.generate('a red cat', num_images=1, seed=0, progress=False)\n"
        "print(janus_rs.get_num_threads(), getenv(b'RAYON_NUM_THREADS').decode(), getenv(b'CANDLE_NUM_THREADS').decode())\n"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1", "1"]


def test_environment_variable_and_default():
    out = run(f"import janus_rs; janus_rs.JanusPro.from_pretrained({str(TINY)!r}); print(janus_rs.get_num_threads())",
              JANUS_RS_NUM_THREADS="1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
    out = run("import janus_rs; print(janus_rs.set_num_threads())")
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 1
    bad = run("import janus_rs; janus_rs.set_num_threads()", JANUS_RS_NUM_THREADS="many")
    assert bad.returncode != 0 and 'JANUS_RS_NUM_THREADS="many" is not a positive whole number' in bad.stderr


def test_a_different_count_later_is_refused_the_same_is_fine():
    out = run(
        "import janus_rs\n"
        "janus_rs.set_num_threads(1)\n"
        f"janus_rs.JanusPro.from_pretrained({str(TINY)!r}, threads=1)\n"
        f"janus_rs.JanusPro.from_pretrained({str(TINY)!r})\n"
        "try:\n"
        "    janus_rs.set_num_threads(2)\n"
        "except janus_rs.InputError as e:\n"
        "    print(e)\n"
    )
    assert out.returncode == 0, out.stderr
    assert "threads=2: this process already runs 1 threads" in out.stdout


@pytest.mark.parametrize("value, error", [(0, "InputError"), (-2, "InputError"), ("2", "InputTypeError"),
                                          (2.0, "InputTypeError"), (True, "InputTypeError")])
def test_bad_values(value, error, tmp_path):
    import janus_rs

    with pytest.raises(getattr(janus_rs, error), match="threads must be"):
        janus_rs.JanusPro.from_pretrained(tmp_path / "missing", threads=value)
    with pytest.raises(getattr(janus_rs, error), match="threads must be"):
        janus_rs.set_num_threads(value)
