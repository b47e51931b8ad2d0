"""CPU benchmark: janus-rs vs the PyTorch reference, stage by stage, same weights, same machine.

    python scripts/make_random_checkpoint.py --model Janus-Pro-1B --out bench/data/Janus-Pro-1B  # once, 4.2 GB
    python bench/cpu.py bench/data/Janus-Pro-1B --reference-python /path/to/torch-venv/bin/python

Each side runs in its own process (so each has its own peak RSS), one after the other:
bench/cpu_stages.py with this interpreter (janus-rs installed) and bench/reference_stages.py with
the interpreter given by --reference-python (torch + transformers installed by hand; omit it to
time janus-rs alone). Prints one markdown table; paste it into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def warm_page_cache(model: str) -> None:
    """Read the weight files once so neither side pays for the first read from disk."""
    for f in sorted(Path(model).glob("*.safetensors")) + sorted(Path(model).glob("*.bin")):
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass


def run(python: str, script: str, model: str, steps: int) -> dict:
    warm_page_cache(model)
    cmd = [python, str(HERE / script), model, "--steps", str(steps), "--json"]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="full-size checkpoint folder (scripts/make_random_checkpoint.py)")
    ap.add_argument("--reference-python", help="python with torch + transformers, for the reference column")
    ap.add_argument("--steps", type=int, default=4, help="decode steps timed (median)")
    args = ap.parse_args()

    ours = run(sys.executable, "cpu_stages.py", args.model, args.steps)
    ref = run(args.reference_python, "reference_stages.py", args.model, args.steps) if args.reference_python else None

    print(f"\n{time.strftime('%Y-%m-%d')}, {cpu_name()}, {os.cpu_count()} cores, "
          f"model {Path(args.model).name} (random weights, float32)")
    print(f"janus-rs: {ours['name']}" + (f"; reference: {ref['name']}, {ref['threads']} threads" if ref else ""))
    print()
    ref_rows = dict(ref["rows"]) if ref else {}
    print("| stage | janus-rs | reference | janus-rs / reference |")
    print("|---|---:|---:|---:|")
    for name, value in ours["rows"]:
        unit = "" if "GB" in name else " s"
        r = ref_rows.get(name)
        ratio = f"{value / r:.2f}" if r else "–"
        ref_cell = f"{r:.3f}{unit}" if r is not None else "–"
        print(f"| {name} | {value:.3f}{unit} | {ref_cell} | {ratio} |")


if __name__ == "__main__":
    main()
