"""The GPU check (scripts/gpu_check.sh) runs end to end without a GPU: ``--device cpu`` goes through
every phase with the tiny checkpoint and this interpreter's janus_rs, and leaves the files the GPU
machine would send back. Also: bench/gpu_summary.py turns GPU-shaped results into the summary table.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PHASES = ["env", "install", "pytest", "ours_1b", "decode_modes", "quantize", "anchors", "reference_1b", "ours_7b",
          "summary"]
RETURNED = {"results.jsonl", "summary.md", "env.txt", "pytest.txt", "anchors.json", "profile.txt", "bench.json",
            "log.txt"}
HAVE_TORCH = importlib.util.find_spec("torch") is not None

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils timeout")


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-out")
    env = {**os.environ, "PYTHON": sys.executable, "DEADLINE": "50", "PYTHONUNBUFFERED": "1"}
    env.pop("GPU_CHECK_DEVICE", None)
    env.pop("PHASES", None)
    with open(out / "log.txt", "w") as log:      # what the caller's tee writes on the GPU machine
        proc = subprocess.run(["bash", str(ROOT / "scripts/gpu_check.sh"), "--device", "cpu", str(out)],
                              stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, timeout=120)
    log_text = (out / "log.txt").read_text(errors="replace")
    return out, proc.returncode, log_text


def phases(out: Path) -> dict[str, dict]:
    lines = [ln for ln in (out / "results.jsonl").read_text().splitlines() if ln.strip()]
    records = [json.loads(ln) for ln in lines]            # every line is valid JSON
    names = [r["phase"] for r in records]
    assert names == PHASES, names                         # one line per phase, in order
    for r in records:
        assert isinstance(r["ok"], bool) and isinstance(r["seconds"], (int, float))
        assert r["status"] in ("ok", "failed", "skipped", "timeout")
    return {r["phase"]: r for r in records}


def test_every_phase_leaves_one_json_line(cpu_run):
    out, rc, log = cpu_run
    assert rc == 0, log[-3000:]
    p = phases(out)
    for name in ("env", "install", "pytest", "ours_1b", "decode_modes", "quantize", "summary"):
        assert p[name]["status"] == "ok", (name, p[name], log[-3000:])
    modes = p["decode_modes"]["decode_modes"]
    timed = {(r["images"], r["mode"]) for r in modes if r["event"] == "timing"}
    assert timed == {(n, m) for n in (1, 2) for m in ("eager", "static", "graph")}, modes
    agree = [r for r in modes if r["event"] == "agreement"]
    assert len(agree) == 4 and all(r["identical"] for r in agree), agree
    quant = {r["format"]: r for r in p["quantize"]["quantize"]}
    assert set(quant) == {"none", "q8_0"}, quant
    # The default dtype: bf16 storage on CPU for the bf16-stored fixture, bf16 on GPUs.
    assert quant["q8_0"]["weight_formats"] == {"q8_0": 13, "bfloat16": 2}
    assert quant["q8_0"]["cfg_step_ms"] > 0 and 0 <= quant["q8_0"]["greedy_agree_first64"] <= 16
    if not HAVE_TORCH:  # the torch phases are skipped, saying why
        for name in ("anchors", "reference_1b"):
            assert p[name]["status"] == "skipped" and not p[name]["ok"], p[name]
            assert "torch" in p[name]["reason"]
    assert p["ours_7b"]["status"] == "skipped" and p["ours_7b"]["reason"] == "cpu mode"
    assert p["env"]["mode"] == "cpu" and p["env"]["deadline"] == 50


def test_benchmark_numbers_and_profile(cpu_run):
    out, _, _ = cpu_run
    bench = phases(out)["ours_1b"]["bench"]
    assert set(bench) == {"ours-tiny", "ours-tiny-per-thread", "ours-tiny-profile"}
    main = bench["ours-tiny"]
    for n in ("1", "2"):                                   # a warm-up and two timed runs per size
        assert len(main["sizes"][n]["runs"]) == 2 and main["sizes"][n]["median_s"] > 0
        assert main["sizes"][n]["ms_per_step"] > 0
    assert main["tok_s"] > 0 and main["und_tokens"] >= 2
    assert main["step0_dump"]["tokens"] > 2
    assert bench["ours-tiny-per-thread"]["env"] == {"JANUS_RS_CUDA_STREAM": "per-thread"}
    assert "[janus-rs profile] image tokens" in (out / "profile.txt").read_text()
    jit = phases(out)["install"]["jit"]
    assert jit["cold"]["ok"] and jit["warm"]["ok"]


def test_returned_files_fit_the_limit(cpu_run):
    out, _, _ = cpu_run
    files = {f.name for f in out.iterdir()}
    assert len(files) <= 8 and files <= RETURNED, files
    assert all(f.is_file() for f in out.iterdir())
    summary = (out / "summary.md").read_text()
    assert "## Phases" in summary and "| ours_1b | ok |" in summary and "## tiny" in summary


def test_summary_of_gpu_shaped_results(tmp_path):
    """The GPU-side table: bandwidth floor from the measured copy rate, speed-up vs the reference."""
    def rec(**kw) -> str:
        return json.dumps(kw) + "\n"

    def ev(label: str, side: str, event: str, **kw) -> str:
        return rec(label=label, side=side, model="Janus-Pro-1B", event=event, **kw)

    (tmp_path / "results.jsonl").write_text(
        rec(phase="env", ok=True, status="ok", seconds=4.0, mode="cuda", deadline=330, nproc=16,
            gpu={"name": "NVIDIA H200", "driver": "580.159"}, mempools_supported=True)
        + rec(phase="pytest", ok=True, status="ok", seconds=40.0, passed=36, failed=0, skipped=0)
        + '{"phase": "ours_1b", "ok": tr')                 # a line cut by a kill is ignored
    lines = [ev("ours-1b", "ours", "start", name="janus-rs 0.1.0", env={}),
             ev("ours-1b", "ours", "generate", n=1, warmup=True, seconds=3.0, steps=576)]
    lines += [ev("ours-1b", "ours", "generate", n=1, warmup=False, seconds=s, steps=576) for s in (2.0, 2.2, 2.1)]
    lines += [ev("ours-1b", "ours", "generate", n=16, warmup=False, seconds=s, steps=576) for s in (3.2, 3.0)]
    lines += [ev("ours-1b", "ours", "understand", tokens=256, tok_s=200.0),
              ev("reference-1b", "reference", "generate", n=1, warmup=False, seconds=16.0, steps=576),
              ev("reference-1b", "reference", "understand", tokens=128, tok_s=40.0),
              ev("ours-1b-profile", "ours", "start", name="janus-rs", env={"JANUS_RS_PROFILE": "1"})]
    (tmp_path / "bench.json").write_text("".join(lines))
    (tmp_path / "anchors.json").write_text(json.dumps({"copy_TBps": 4.0, "gemv_2x2048x2048_GBps": 2000.0,
                                                        "torch_graph_step_ms_rows2": 1.5}))
    subprocess.run([sys.executable, str(ROOT / "bench/gpu_summary.py"), "render", str(tmp_path), "--quiet"],
                   check=True, timeout=60)
    md = (tmp_path / "summary.md").read_text()

    def row(name: str) -> str:
        return next(ln for ln in md.splitlines() if ln.startswith(f"| {name}"))

    assert row("1 image: s total (median)") == "| 1 image: s total (median) | 2.100 | 16.0 | 7.6× |"
    assert row("16 images: s/image").startswith("| 16 images: s/image | 0.194 |")
    # floor at 1 image: 576 steps x (2.55 GB + KV of 2 rows at ~318 positions) / 4.0 TB/s = 0.385 s
    assert "| 1 image: % of bandwidth floor (0.39 s) | 18.3 |" in md
    assert row("understanding decode tok/s") == "| understanding decode tok/s | 200 | 40.0 | 5.0× |"
    assert "ours-1b-profile" in md and "| pytest | ok | 40.0 | passed 36, failed 0, skipped 0 |" in md
    assert "| ours_1b | not reached |" in md and "NVIDIA H200" in md
