"""Image-token decode modes side by side (JANUS_RS_DECODE=eager|static|graph): seconds per call,
ms per step, driver/cuBLAS calls per step, and whether the modes agree on the tokens.

    LD_PRELOAD=/tmp/cuda_call_counter.so python bench/gpu_decode_modes.py MODEL_DIR OUT.jsonl \
        [--device cuda] [--sizes 1 16] [--modes eager static graph] [--repeats 2] [--deadline S]

One process, one model: for each size and mode a warm-up call, then `--repeats` timed calls of
`generate_tokens` (prompt -> image tokens, no VQ decode; seed fixed, temperature 1, CFG 5). With
bench/cuda_call_counter.c preloaded, the calls made by the first timed call are counted and
divided by its steps (grid² − 1; the prefill's own calls are included, < 1 per step). One JSON
line per measurement is appended to OUT.jsonl as it is taken.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import sys
import time

import numpy as np


def counter():
    """The preloaded call counter, or None."""
    try:
        lib = ctypes.CDLL(None)
        lib.janus_cuda_count_names.restype = ctypes.c_char_p
        keys = lib.janus_cuda_count_names().decode().split(",")
    except (AttributeError, OSError):
        return None
    buf = (ctypes.c_uint64 * len(keys))()

    def read() -> dict[str, int]:
        lib.janus_cuda_counts(buf, len(keys))
        return dict(zip(keys, map(int, buf)))

    return read


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--modes", nargs="+", default=["eager", "static", "graph"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--deadline", type=float, default=1e9, help="seconds from start")
    a = ap.parse_args()
    t0 = time.perf_counter()
    left = lambda: a.deadline - (time.perf_counter() - t0)  # noqa: E731

    def emit(rec: dict) -> None:
        rec = {"bench": "decode_modes", "device": a.device, **rec}
        with open(a.out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)

    from janus_rs import JanusPro

    t = time.perf_counter()
    model = JanusPro.from_pretrained(a.model_dir, device=a.device, dtype=a.dtype, progress=False)
    emit({"event": "load", "seconds": round(time.perf_counter() - t, 3), "model": repr(model)})
    steps = model.image_token_grid**2 - 1
    read = counter()
    emit({"event": "counter", "available": read is not None})
    prompt = "a photo of a tangerine on a wooden table, soft morning light"
    for n in a.sizes:
        tokens_by_mode: dict[str, np.ndarray] = {}
        for mode in a.modes:
            if left() < 5:
                emit({"event": "skipped", "images": n, "mode": mode, "reason": "deadline"})
                continue
            os.environ["JANUS_RS_DECODE"] = mode
            kw = dict(num_images=n, seed=1234, temperature=1.0, cfg_weight=5.0, progress=False)
            try:
                t = time.perf_counter()
                model.generate_tokens(prompt, **kw)
                warm = time.perf_counter() - t
                times, calls = [], None
                for r in range(a.repeats):
                    if r and left() < warm * 1.5:
                        break
                    before = read() if read else None
                    t = time.perf_counter()
                    toks = model.generate_tokens(prompt, **kw)
                    times.append(time.perf_counter() - t)
                    if before is not None and calls is None:
                        after = read()
                        calls = {k: round((after[k] - before[k]) / steps, 2) for k in after if after[k] != before[k]}
                tokens_by_mode[mode] = toks
                med = statistics.median(times)
                emit({"event": "timing", "images": n, "mode": mode, "warmup_s": round(warm, 4),
                      "times_s": [round(x, 4) for x in times], "median_s": round(med, 4),
                      "s_per_image": round(med / n, 4), "ms_per_step": round(med / steps * 1e3, 4),
                      "calls_per_step": calls})
            except Exception as e:  # noqa: BLE001
                emit({"event": "error", "images": n, "mode": mode, "error": f"{type(e).__name__}: {e}"[:600]})
        base = tokens_by_mode.get("eager")
        for mode, toks in tokens_by_mode.items():
            ref = tokens_by_mode.get("static") if mode == "graph" else base
            if ref is None or mode == "eager" or (mode == "graph" and ref is base):
                continue
            emit({"event": "agreement", "images": n, "mode": mode,
                  "vs": "static" if mode == "graph" else "eager",
                  "identical": bool(np.array_equal(toks, ref)),
                  "fraction_equal": round(float((toks == ref).mean()), 4),
                  "first_difference_step": int(np.argmax((toks != ref).any(0))) if (toks != ref).any() else None})
    os.environ.pop("JANUS_RS_DECODE", None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
