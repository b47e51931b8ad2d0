"""The command line (`python -m janus_rs`), run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys

from PIL import Image

import janus_rs

from conftest import REFERENCE, TINY


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "janus_rs", *args], capture_output=True, text=True, timeout=120)


def test_understand():
    r = run("understand", "--model", str(TINY), "--image", str(REFERENCE / "input.png"),
            "--question", "What is in this image?", "--max-new-tokens", "4")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() != ""


def test_generate_writes_images(tmp_path):
    out = tmp_path / "cat.png"
    r = run("generate", "--model", str(TINY), "--prompt", "a red cat", "--out", str(out),
            "--num-images", "2", "--seed", "5", "--quiet")
    assert r.returncode == 0, r.stderr
    paths = [tmp_path / "cat_0.png", tmp_path / "cat_1.png"]
    assert r.stdout.split() == [str(p) for p in paths]
    assert all(Image.open(p).size == (64, 64) for p in paths)
    assert "seed 5" in r.stderr


def test_info():
    r = run("info", "--model", str(TINY))
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["num_image_tokens"] == 16 and info["cuda_available"] is janus_rs.cuda_available()
    assert info["cuda_available"] or info["cuda_unavailable_reason"]


def test_understand_streams_by_default_and_matches_no_stream():
    args = ["understand", "--model", str(TINY), "--image", str(REFERENCE / "input.png"),
            "--question", "What is this?", "--max-new-tokens", "12"]
    streamed, whole = run(*args), run(*args, "--no-stream")
    assert streamed.returncode == 0 and whole.returncode == 0, streamed.stderr + whole.stderr
    assert streamed.stdout == whole.stdout


def test_generate_saves_tokens(tmp_path):
    import numpy as np

    r = run("generate", "--model", str(TINY), "--prompt", "a red cat", "--out", str(tmp_path / "one.png"),
            "--seed", "1", "--quiet", "--tokens-out", str(tmp_path / "t.npy"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(tmp_path / "one.png"), str(tmp_path / "t.npy")]
    assert np.load(tmp_path / "t.npy").shape == (1, 16)


def test_demo_makes_an_image_and_an_answer(tmp_path):
    out = tmp_path / "demo.png"
    r = run("demo", "--model", str(TINY), "--out", str(out), "--quiet", "--max-new-tokens", "8")
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == (64, 64)
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"image: {out}") and lines[1].startswith("Describe this image. ")
    assert "JanusPro(name='tiny-janus-pro'" in r.stderr


def test_info_without_a_model_and_version():
    r = run("info")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["janus_rs_version"] == janus_rs.__version__ and "num_parameters" not in info
    v = run("--version")
    assert v.returncode == 0 and v.stdout.strip() == f"janus-rs {janus_rs.__version__}"


def test_help_reads_well():
    top = run("--help").stdout
    for text in ["understand", "generate", "info", "hub id", "exit status"]:
        assert text in top, text
    gen = run("generate", "--help").stdout
    assert "--cfg-weight" in gen and "(default: 5.0)" in gen and "--offline" in gen


def test_offline_hub_id_error(tmp_path):
    import os

    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path), HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, "-m", "janus_rs", "info", "--model", "deepseek-ai/Janus-Pro-1B"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1
    assert "hf download deepseek-ai/Janus-Pro-1B" in r.stderr and str(tmp_path) in r.stderr


def test_errors_exit_nonzero_with_a_message(tmp_path):
    r = run("generate", "--model", str(tmp_path / "missing"), "--prompt", "x")
    assert r.returncode == 1
    assert "janus-rs: error: model folder not found" in r.stderr
    r = run("understand", "--model", str(TINY), "--image", str(tmp_path / "no.png"), "--question", "q")
    assert r.returncode == 1 and "no.png" in r.stderr
    assert run("frobnicate").returncode == 2
