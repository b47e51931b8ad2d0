"""CPU weight formats side by side: janus-rs stage timings per format, one process per format, one run.

    python scripts/make_random_checkpoint.py --model Janus-Pro-1B --out bench/data/Janus-Pro-1B  # once
    python bench/cpu_formats.py bench/data/Janus-Pro-1B [--formats float32 bfloat16 q8_0 q6_k q4_k]
        [--reference-python /path/to/torch-venv/bin/python [--reference-formats fp32 bf16 int8-dynamic]]

Each format runs bench/cpu_stages.py in its own process (its own peak RSS): "float32" and
"bfloat16" are the dtype (bf16 = bf16-stored weights, f32 compute); a quantized format quantizes
the LLM's projections and lm_head and keeps everything else in bf16. Prints one markdown table
(stages as rows, formats as columns) with the CPU model and flags; paste it into bench/RESULTS.md.
With --reference-python, the PyTorch reference (bench/reference_stages.py) runs the same stages in
each of --reference-formats, one process each, in the same run: extra columns.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cpu import warm_page_cache  # noqa: E402
from timing import cpu_description  # noqa: E402


def run(model: str, fmt: str, steps: int) -> dict:
    warm_page_cache(model)
    args = ["--dtype", fmt] if fmt in ("float32", "bfloat16") else ["--dtype", "bfloat16", "--quantize", fmt]
    cmd = [sys.executable, str(HERE / "cpu_stages.py"), model, "--steps", str(steps), "--json", *args]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_reference(python: str, model: str, fmt: str, steps: int) -> dict:
    warm_page_cache(model)
    cmd = [python, str(HERE / "reference_stages.py"), model, "--steps", str(steps), "--json", "--format", fmt]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:  # a reference column that fails is reported, not fatal
        print(f"PyTorch {fmt} failed (exit {done.returncode}): its column is empty", file=sys.stderr)
        return {"rows": []}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--formats", nargs="+", default=["float32", "bfloat16", "q8_0", "q6_k", "q4_k"])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--reference-python", help="python with torch + transformers: PyTorch columns too")
    ap.add_argument("--reference-formats", nargs="+", default=["fp32", "bf16", "int8-dynamic"])
    args = ap.parse_args()
    results = {fmt: run(args.model, fmt, args.steps) for fmt in args.formats}
    if args.reference_python:
        for fmt in args.reference_formats:
            results[f"PyTorch {fmt}"] = run_reference(args.reference_python, args.model, fmt, args.steps)
    columns = list(results)
    stages = [name for name, _ in next(iter(results.values()))["rows"]]
    print(f"CPU: {cpu_description()}; {len(__import__('os').sched_getaffinity(0))} cores available")
    print(f"| stage (seconds unless noted) | {' | '.join(columns)} |")
    print(f"|---|{'---:|' * len(columns)}")
    for stage in stages:
        cells = [f"{dict(results[f]['rows']).get(stage, float('nan')):.3f}" for f in columns]
        print(f"| {stage} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
