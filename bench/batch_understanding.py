"""Batched understanding vs one call per (image, question) pair, same model, same run.

    python bench/batch_understanding.py tests/fixtures/tiny-janus-pro --pairs 16 --max-new-tokens 64
    python bench/batch_understanding.py /path/to/Janus-Pro-1B --pairs 16 --max-new-tokens 128

Each pair is a different random image with a question; the loop calls ``understand`` per pair,
the batch one ``understand_many`` over all. Random weights never emit the end-of-sentence
token, so every answer runs to --max-new-tokens (real answers stop earlier; decode is where
batching wins, prefill and SigLIP cost the same either way). Checks the answers are equal and
prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import cpu_description  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--pairs", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--dtype", default=None)
    args = p.parse_args()

    from janus_rs import JanusPro

    model = JanusPro.from_pretrained(args.model, dtype=args.dtype)
    rng = np.random.default_rng(0)
    pairs = [(rng.integers(0, 256, (300 + 7 * i, 400 - 5 * i, 3), dtype=np.uint8), f"Question {i}: what is in it?")
             for i in range(args.pairs)]
    n = args.max_new_tokens
    model.understand(pairs[0][0], "warm-up", max_new_tokens=2)

    start = time.perf_counter()
    loop = [model.understand(im, q, max_new_tokens=n) for im, q in pairs]
    t_loop = time.perf_counter() - start
    start = time.perf_counter()
    batch = model.understand_many(pairs, max_new_tokens=n)
    t_batch = time.perf_counter() - start
    same = sum(a == b for a, b in zip(loop, batch))

    print(f"CPU: {cpu_description()}; model {model.name} ({model.dtype}); {args.pairs} pairs; max_new_tokens {n}; "
          f"answers equal: {same}/{args.pairs}")
    print()
    print("| | wall | pairs/s | speed-up |")
    print("|---|---:|---:|---:|")
    print(f"| one `understand` per pair | {t_loop:.1f} s | {args.pairs / t_loop:.3f} | 1.00× |")
    print(f"| `understand_many` | {t_batch:.1f} s | {args.pairs / t_batch:.3f} | {t_loop / t_batch:.2f}× |")
    return 0 if same == args.pairs else 1


if __name__ == "__main__":
    sys.exit(main())
