"""Per-stage CPU timings of janus-rs on a full-size random checkpoint.

    python scripts/make_random_checkpoint.py --out bench/data/Janus-Pro-1B   # once, ~4 GB
    python bench/cpu_stages.py bench/data/Janus-Pro-1B [--dtype float32]

Stages (as in the PyTorch reference figures): SigLIP + aligner on one image, a 604-token prefill,
a text decode step, a CFG image-token step (batch 2), the VQ decode of one image; plus load time
and peak RSS. Prints one table. Whole-stage timings are the best of 3 (SigLIP, VQ decode) or 2
(prefill) runs after a warm-up, decode steps the median of --steps; bench/reference_stages.py
times the reference the same way (this machine's timings vary by ±20% from run to run).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np

import janus_rs
from janus_rs import JanusPro
from timing import best_of


class _Stop(Exception):
    pass


def step_times(run, steps: int) -> list[float]:
    """Times between successive per-step callbacks (the first one includes the prefill)."""
    stamps: list[float] = []

    def hook(*_):
        stamps.append(time.perf_counter())
        if len(stamps) > steps:
            raise _Stop

    try:
        run(hook)
    except _Stop:
        pass
    return [b - a for a, b in zip(stamps, stamps[1:])]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--quantize", default=None, choices=["q8_0", "q6_k", "q4_k"])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--json", action="store_true", help="print the rows as JSON (for bench/cpu.py)")
    args = ap.parse_args()

    rows = []
    t = time.perf_counter()
    m = JanusPro.from_pretrained(args.model, dtype=args.dtype, quantize=args.quantize)
    rows.append(("load", time.perf_counter() - t))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (384, 384, 3), dtype=np.uint8)
    px = m.preprocess(image)
    m.vision_features(px)  # warm-up
    rows.append(("SigLIP + aligner, 1 image", best_of(lambda: m.align_image_features(m.vision_features(px)), 3)))
    hidden = m.info["hidden_size"]
    embeds = rng.standard_normal((604, hidden), dtype=np.float32)
    rows.append(("prefill, 604 tokens", best_of(lambda: m.forward(embeds), 2)))
    text = step_times(lambda hook: m.understand(image, "Describe this image.", max_new_tokens=args.steps + 1,
                                                on_token=hook), args.steps)
    rows.append((f"text decode step (median of {len(text)})", statistics.median(text)))
    gen = step_times(lambda hook: m.generate_tokens("a photo of a tangerine on a wooden table",
                                                    progress=lambda d, t: hook()), args.steps)
    rows.append((f"CFG image-token step, batch 2 (median of {len(gen)})", statistics.median(gen)))
    tokens = rng.integers(0, 16384, (1, m.image_token_grid ** 2))
    m.decode_tokens(tokens)
    rows.append(("VQ decode, 1 image 384x384", best_of(lambda: m.decode_tokens(tokens), 3)))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    if args.json:
        import json

        label = m.dtype + (f", {m.quantize}" if m.quantize else "")
        print(json.dumps({"name": f"janus-rs {janus_rs.__version__} ({label})", "rows": rows + [("peak RSS (GB)", rss)]}))
        return

    print(f"janus-rs, {args.model}, dtype {m.dtype}, quantize {m.quantize}, "
          f"{m.num_parameters / 1e9:.2f} G parameters")
    print(f"| {'stage':<48} | {'seconds':>8} |")
    print(f"|{'-' * 50}|{'-' * 10}|")
    for name, sec in rows:
        print(f"| {name:<48} | {sec:8.3f} |")
    print(f"| {'peak RSS (GB)':<48} | {rss:8.2f} |")


if __name__ == "__main__":
    main()
