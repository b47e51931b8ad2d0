"""`quantize=` on one device: load time, memory, CFG image-token step, text step and greedy-token
agreement per format, each format in its own process (clean memory). Used by scripts/gpu_check.sh
(phase `quantize`); by hand:

    python bench/gpu_quantize.py MODEL_DIR OUT.jsonl [--device cuda] [--formats none q8_0 q4_k]

Memory: on CUDA the device memory in use after loading (torch.cuda.mem_get_info, which counts
every process's allocations on the GPU), else the peak RSS. One JSON line per format in OUT.jsonl,
written as each finishes; a format that fails writes {"format", "error"} and the others still run.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

STEPS = 16


def child(model: str, device: str, fmt: str) -> dict:
    import numpy as np

    free0 = total = None
    try:
        import torch

        if device.startswith("cuda") and torch.cuda.is_available():
            free0, total = torch.cuda.mem_get_info()
    except ImportError:
        torch = None
    import janus_rs

    quantize = None if fmt == "none" else fmt
    t = time.perf_counter()
    m = janus_rs.JanusPro.from_pretrained(model, device=device, quantize=quantize, progress=False)
    out: dict = {"format": fmt, "load_s": round(time.perf_counter() - t, 2),
                 "weight_formats": m.info["llm_weight_formats"], "dtype": m.dtype}

    def steps(run) -> list[float]:
        stamps: list[float] = []

        class Stop(Exception):
            pass

        def hook(*_):
            stamps.append(time.perf_counter())
            if len(stamps) > STEPS:
                raise Stop

        try:
            run(hook)
        except Stop:
            pass
        return [b - a for a, b in zip(stamps, stamps[1:])]

    prompt = "a photo of a tangerine on a wooden table"
    steps(lambda h: m.generate_tokens(prompt, progress=lambda d, n: h()))  # warm-up
    cfg = steps(lambda h: m.generate_tokens(prompt, progress=lambda d, n: h()))
    out["cfg_step_ms"] = round(1000 * statistics.median(cfg), 2)
    text = steps(lambda h: m.understand(None, "Describe a cat.", max_new_tokens=STEPS + 1, on_token=h))
    out["text_step_ms"] = round(1000 * statistics.median(text), 2) if text else None
    tokens = m.generate_tokens(prompt, temperature=0.0, progress=False)
    out["greedy_tokens"] = np.asarray(tokens)[0, :64].tolist()
    if free0 is not None and torch is not None:
        free1, _ = torch.cuda.mem_get_info()
        out["gpu_memory_gib"] = round((total - free1) / 2**30, 2)
        out["gpu_memory_model_gib"] = round((free0 - free1) / 2**30, 2)
    out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--formats", nargs="+", default=["none", "q8_0", "q6_k", "q4_k"])
    ap.add_argument("--deadline", type=float, default=600.0, help="seconds for all formats")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.model, args.device, args.child)))
        return 0
    end = time.monotonic() + args.deadline
    base = None
    for fmt in args.formats:
        left = end - time.monotonic()
        if left < 10:
            rec = {"format": fmt, "skipped": f"deadline ({left:.0f} s left)"}
        else:
            cmd = [sys.executable, __file__, args.model, args.out, "--device", args.device, "--child", fmt]
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=left)
                if p.returncode == 0:
                    rec = json.loads(p.stdout.strip().splitlines()[-1])
                else:
                    rec = {"format": fmt, "error": (p.stderr or p.stdout).strip()[-800:]}
            except subprocess.TimeoutExpired:
                rec = {"format": fmt, "error": f"timed out after {left:.0f} s"}
        if "greedy_tokens" in rec:
            if base is None and fmt == "none":
                base = rec["greedy_tokens"]
            elif base is not None:
                same = sum(a == b for a, b in zip(rec["greedy_tokens"], base))
                rec["greedy_agree_first64"] = same
                first = next((i for i, (a, b) in enumerate(zip(rec["greedy_tokens"], base)) if a != b), len(base))
                rec["greedy_first_divergence"] = first
            del rec["greedy_tokens"]
        print(json.dumps(rec), file=sys.stderr, flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
