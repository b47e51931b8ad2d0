"""`janus-rs batch generate` throughput: one prompt per model call vs B prompts per call.

    python bench/batch_generate.py tests/fixtures/tiny-janus-pro --prompts 8 --batch-size 4
    python bench/batch_generate.py /path/to/Janus-Pro-1B --prompts 4 --batch-size 4 --quantize q4_k

Runs janus_rs.batch.generate_images (what the command runs) twice into fresh folders, one
image per prompt, and checks both wrote the same bytes (per-row seeds make the batch size
irrelevant to the result). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import cpu_description  # noqa: E402


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--dtype", default=None)
    p.add_argument("--quantize", default=None)
    args = p.parse_args()

    from janus_rs import JanusPro
    from janus_rs.batch import generate_images

    model = JanusPro.from_pretrained(args.model, dtype=args.dtype, quantize=args.quantize)
    items = [{"prompt": f"a photo of object number {i} on a table"} for i in range(args.prompts)]
    model.generate("warm-up", progress=False) if "tiny" in args.model else None
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for b in (1, args.batch_size):
            out = Path(tmp) / f"b{b}"
            start = time.perf_counter()
            generate_images(model, items, out, num_images=1, seed=0, batch_size=b, progress=False)
            times[b] = time.perf_counter() - start
        same = tree(Path(tmp) / "b1") == tree(Path(tmp) / f"b{args.batch_size}")
    fmt = f"{model.dtype}" + (f" + {model.quantize}" if model.quantize else "")
    print(f"CPU: {cpu_description()}; model {model.name} ({fmt}); {args.prompts} prompts, 1 image each; "
          f"files identical: {same}")
    print()
    print("| prompts per call | wall | images/s | speed-up |")
    print("|---:|---:|---:|---:|")
    for b, t in times.items():
        print(f"| {b} | {t:.1f} s | {args.prompts / t:.4f} | {times[1] / t:.2f}× |")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
