"""The command line (`python -m janus_rs`), run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys

from PIL import Image

import janus_rs

from conftest import FIXTURES, REFERENCE, TINY

FLOW = FIXTURES / "tiny-janusflow"
VAE = FLOW / "vae"


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
    gen = " ".join(run("generate", "--help").stdout.split())
    assert "--cfg-weight" in gen and "(default: 5.0; JanusFlow: 2.0)" in gen and "--offline" in gen
    assert "--vae" in gen and "--roles" in gen and "--num-steps" in gen


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


def assert_one_line_error(r: subprocess.CompletedProcess, status: int, *needles: str) -> None:
    assert r.returncode == status, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("janus-rs: error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for needle in needles:
        assert needle in r.stderr, (needle, r.stderr)


def test_help_never_shows_default_none():
    for cmd in ["understand", "generate", "demo", "info"]:
        text = " ".join(run(cmd, "--help").stdout.split())
        assert "(default: None)" not in text and "(default: False)" not in text, cmd
        assert "(default: main) (default" not in text, cmd
        assert "(default: main)" in text, cmd


def test_outputs_are_checked_before_the_model_is_loaded(tmp_path):
    """A bad --out / --tokens-out fails at once: nothing generated, nothing written, the flag named.
    The model given does not even exist, so reaching the loader would report that instead."""
    missing_model = str(tmp_path / "no-model")
    cases = [
        (["--out", str(tmp_path / "nodir" / "x.png"), "--num-images", "64"], 1, ["--out", "nodir", "does not exist"]),
        (["--out", str(tmp_path / "x.foo")], 2, ["--out", ".foo", ".png"]),
        (["--out", str(tmp_path / "x.png"), "--tokens-out", str(tmp_path / "nodir" / "t.npy")], 1,
         ["--tokens-out", "nodir"]),
        (["--out", str(tmp_path / "x.png"), "--tokens-out", str(tmp_path)], 1, ["--tokens-out", "is a folder"]),
    ]
    for extra, status, needles in cases:
        r = run("generate", "--model", missing_model, "--prompt", "x", "--quiet", *extra)
        assert_one_line_error(r, status, *needles)
        assert "model folder not found" not in r.stderr
    r = run("demo", "--model", missing_model, "--out", str(tmp_path / "demo.bad"))
    assert_one_line_error(r, 2, "--out", ".bad")
    assert list(tmp_path.iterdir()) == []


def test_bad_out_with_a_real_model_writes_nothing(tmp_path):
    r = run("generate", "--model", str(TINY), "--prompt", "x", "--quiet", "--num-images", "3",
            "--out", str(tmp_path / "nodir" / "x.png"), "--tokens-out", str(tmp_path / "t.npy"))
    assert_one_line_error(r, 1, "--out")
    assert list(tmp_path.iterdir()) == [] and r.stdout == "" and "seed" not in r.stderr


def test_user_errors_never_print_a_traceback(tmp_path):
    img = str(REFERENCE / "input.png")
    cases = [
        (["generate", "--model", str(TINY), "--prompt", "x", "--out", "x.foo"], 2, ["x.foo"]),
        (["understand", "--model", str(TINY), "--image", str(tmp_path), "--question", "q"], 1,
         ["--image", "is a folder"]),
        (["understand", "--model", str(TINY), "--image", str(tmp_path / "no.png"), "--question", "q"], 1,
         ["--image", "no.png"]),
        (["understand", "--model", str(tmp_path / "missing"), "--image", img, "--question", "q"], 1,
         ["missing"]),
        (["info", "--model", str(tmp_path / "missing")], 1, ["missing"]),
        (["generate", "--model", str(TINY), "--prompt", "x", "--num-images", "65", "--quiet"], 2,
         ["--num-images", "64"]),
        (["generate", "--model", str(TINY), "--prompt", "x", "--vae", str(VAE)], 2, ["--vae", "JanusFlow"]),
        (["generate", "--model", str(TINY), "--prompt", "x", "--num-steps", "3"], 2, ["--num-steps"]),
    ]
    for args, status, needles in cases:
        assert_one_line_error(run(*args), status, *needles)


def test_errors_name_the_flags_not_the_python_parameters(tmp_path):
    r = run("generate", "--model", str(TINY), "--prompt", "x", "--quiet", "--cfg-weight", "nan",
            "--out", str(tmp_path / "x.png"))
    assert_one_line_error(r, 1, "--cfg-weight")
    assert "cfg_weight" not in r.stderr
    r = run("understand", "--model", str(TINY), "--question", "q", "--sample", "--top-p", "7")
    assert_one_line_error(r, 1, "--top-p")
    assert "top_p" not in r.stderr


def test_flag_names_translation():
    from janus_rs.cli import flag_names

    assert flag_names("num_images 100 exceeds the limit") == "--num-images 100 exceeds the limit"
    assert flag_names("seed must be an integer >= 0") == "--seed must be an integer >= 0"
    assert flag_names("max_new_tokens must be >= 1; top_k too") == "--max-new-tokens must be >= 1; --top-k too"
    # plain words and paths are left alone
    assert flag_names("unsupported dtype BF16 for op matmul") == "unsupported dtype BF16 for op matmul"
    assert flag_names("/data/num_images/x.png: a fresh seed") == "/data/num_images/x.png: a fresh seed"


def test_out_folder_writes_into_it(tmp_path):
    r = run("generate", "--model", str(TINY), "--prompt", "x", "--out", str(tmp_path), "--num-images", "2",
            "--seed", "3", "--quiet")
    assert r.returncode == 0, r.stderr
    paths = [tmp_path / "janus_0.png", tmp_path / "janus_1.png"]
    assert r.stdout.split() == [str(p) for p in paths] and all(p.is_file() for p in paths)
    assert not (tmp_path.parent / (tmp_path.name + ".png")).exists()
    r = run("generate", "--model", str(TINY), "--prompt", "x", "--out", str(tmp_path / "one.jpg"), "--quiet")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "one.jpg").format == "JPEG"
    d = tmp_path / "demo"
    d.mkdir()
    r = run("demo", "--model", str(TINY), "--out", str(d), "--quiet", "--max-new-tokens", "2")
    assert r.returncode == 0, r.stderr
    assert (d / "janus-demo.png").is_file()


def test_janusflow_understand_and_generate(tmp_path):
    r = run("understand", "--model", str(FLOW), "--image", str(FLOW / "input.png"), "--question", "What is this?",
            "--max-new-tokens", "4", "--no-stream")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() != ""
    out = tmp_path / "flow.png"
    r = run("generate", "--model", str(FLOW), "--vae", str(VAE), "--prompt", "a red cat", "--out", str(out),
            "--num-images", "2", "--num-steps", "2", "--seed", "4", "--quiet", "--tokens-out", str(tmp_path / "z"))
    assert r.returncode == 0, r.stderr
    paths = [tmp_path / "flow_0.png", tmp_path / "flow_1.png", tmp_path / "z.npy"]
    assert r.stdout.split() == [str(p) for p in paths]
    size = Image.open(paths[0]).size
    import numpy as np

    latents = np.load(paths[2])
    assert latents.shape == (2, 4, size[1] // 8, size[0] // 8) and latents.dtype == np.float32
    info = json.loads(run("info", "--model", str(FLOW), "--vae", str(VAE)).stdout)
    assert info["model_class"] == "JanusFlow" and info["vae_path"]


def test_janusflow_without_vae_or_with_janus_pro_options_points_to_the_fix(tmp_path):
    r = run("generate", "--model", str(FLOW), "--prompt", "x", "--out", str(tmp_path / "x.png"))
    assert_one_line_error(r, 2, "JanusFlow checkpoint", "--vae")
    r = run("demo", "--model", str(FLOW), "--out", str(tmp_path / "x.png"))
    assert_one_line_error(r, 2, "JanusFlow checkpoint", "--vae")
    r = run("generate", "--model", str(FLOW), "--vae", str(VAE), "--prompt", "x", "--top-k", "5",
            "--out", str(tmp_path / "x.png"))
    assert_one_line_error(r, 2, "JanusFlow", "--top-k")
    assert list(tmp_path.iterdir()) == []


def test_roles():
    info = json.loads(run("info", "--model", str(TINY)).stdout)
    assert info["roles"] == ["<|User|>", "<|Assistant|>"]
    r = run("info", "--model", str(TINY), "--roles", "User", "Assistant")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["roles"] == ["User", "Assistant"]
    r = run("understand", "--model", str(TINY), "--roles", "User", "Assistant", "--question", "hi",
            "--max-new-tokens", "3", "--no-stream")
    assert r.returncode == 0, r.stderr
    assert run("info", "--model", str(TINY), "--roles", "User").returncode == 2


def test_bad_numbers_are_usage_errors():
    for args in (["--num-images", "0"], ["--seed", "-1"], ["--seed", str(2**70)], ["--num-steps", "0"]):
        r = run("generate", "--model", str(TINY), "--prompt", "x", *args)
        assert r.returncode == 2 and args[0] in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
