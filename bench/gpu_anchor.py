"""Same-GPU calibrations for the GPU check (design note gpu-path, Appendix A): torch only.

    python bench/gpu_anchor.py OUTFILE [--device cuda|cpu] [--budget SECONDS]

Measures, each in its own try block and written to OUTFILE after every item (a kill keeps what
finished):
  copy_TBps            device-to-device copy of 1 GiB (read + write bytes / time)
  gemm_TFLOPs          bf16 8192³ matmul on random data
  gemv_{M}x{K}x{N}_GBps  x(M×K) @ W(N×K)ᵀ at Janus-Pro-1B's shapes, M = 2 (one image's CFG rows)
                       and 32 (16 images); weights rotated across copies so L2 can't hold them
  torch_{eager,graph}_step_ms_rows{2,32}
                       an unfused 1B decode step (24 layers, 16 heads × 128, FFN 5632, static KV
                       of 320 positions, device-resident position) eager vs one CUDA graph replay
On an H200 the whole run takes about 15–25 s (most of it torch start-up and random weights).
``--device cpu`` runs the same code at toy sizes (a smoke test of this script, no graphs).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outfile")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget", type=float, default=40.0, help="stop starting new items after this many seconds")
    args = ap.parse_args()
    t0 = time.perf_counter()
    dev = args.device
    cuda = dev.startswith("cuda")
    bf = torch.bfloat16
    small = not cuda                      # toy sizes on CPU
    out: dict = {"device": dev, "errors": {}}
    if cuda:
        out["gpu"] = torch.cuda.get_device_name(0)
    out["torch"] = torch.__version__

    def save() -> None:
        out["seconds"] = round(time.perf_counter() - t0, 2)
        with open(args.outfile, "w") as f:
            json.dump(out, f, indent=1)

    def bench(fn, reps: int = 50, warm: int = 5) -> float:
        """Median milliseconds of one call (CUDA events on the GPU, wall clock on CPU)."""
        for _ in range(warm):
            fn()
        ts = []
        if cuda:
            torch.cuda.synchronize()
            for _ in range(reps):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                ts.append(a.elapsed_time(b))
        else:
            for _ in range(reps):
                t = time.perf_counter()
                fn()
                ts.append((time.perf_counter() - t) * 1e3)
        ts.sort()
        return ts[len(ts) // 2]

    def item(name: str, fn) -> None:
        if time.perf_counter() - t0 > args.budget:
            out["errors"][name] = "skipped: anchor budget spent"
            save()
            return
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - one failed anchor must not lose the others
            traceback.print_exc()
            out["errors"][name] = f"{type(e).__name__}: {e}"[:300]
        if cuda:
            torch.cuda.empty_cache()
        save()
        print(f"[anchor] {name} done at {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)

    # ---------------------------------------------------------------- bandwidth and compute ceilings
    def copy() -> None:
        n = (2**30 if not small else 2**24) // 2             # 1 GiB of bf16 (16 MiB on CPU)
        x = torch.randn(n, device=dev, dtype=bf)
        y = torch.empty_like(x)
        out["copy_TBps"] = 2 * n * 2 / bench(lambda: y.copy_(x), reps=50 if cuda else 5) / 1e9

    def gemm() -> None:
        s = 8192 if not small else 256
        a = torch.randn(s, s, device=dev, dtype=bf)
        b = torch.randn_like(a)
        out["gemm_TFLOPs"] = 2 * s**3 / bench(lambda: a @ b, reps=10 if cuda else 3, warm=3) / 1e9

    item("copy", copy)
    item("gemm", gemm)

    # ---------------------------------------------------------------- GEMV at Janus-Pro-1B's shapes
    shapes = [(2048, 2048), (6144, 2048), (5632, 2048), (11264, 2048), (2048, 5632), (16384, 2048),
              (102400, 2048)]                                  # ..., gen_head, lm_head (understanding)
    if small:
        shapes = [(n // 16, k // 16) for n, k in shapes[:3]]

    def gemv(n: int, k: int) -> None:
        size = n * k * 2
        copies = max(2, min(8, math.ceil(480e6 / size)))     # ≥ 8× the H200's 60 MB L2 in flight
        ws = [torch.randn(n, k, device=dev, dtype=bf) for _ in range(copies)]
        for m in (2, 32):
            xs = torch.randn(m, k, device=dev, dtype=bf)

            def f(xs=xs, i=[0]):  # noqa: B006 - the rotation counter lives across calls on purpose
                i[0] = (i[0] + 1) % copies
                return xs @ ws[i[0]].T

            out[f"gemv_{m}x{k}x{n}_GBps"] = size / bench(f, reps=50 if cuda else 5) / 1e6

    for n, k in shapes:
        item(f"gemv {n}x{k}", lambda n=n, k=k: gemv(n, k))

    # ---------------------------------------------------------------- unfused 1B decode step
    def step_model(rows: int, L: int = 320, cap: int = 640, layers: int = 24, h: int = 2048, ff: int = 5632,
                   heads: int = 16, hd: int = 128, vocab: int = 16384):
        if small:
            L, cap, layers, h, ff, heads, vocab = 32, 64, 2, 256, 704, 2, 512
        g = lambda *s: torch.randn(*s, device=dev, dtype=bf)  # noqa: E731
        W = [dict(qkv=g(3 * h, h) / 45, o=g(h, h) / 45, gu=g(2 * ff, h) / 45, d=g(h, ff) / 75,
                  n1=torch.ones(h, device=dev, dtype=bf), n2=torch.ones(h, device=dev, dtype=bf))
             for _ in range(layers)]
        K = [g(rows, heads, cap, hd) for _ in range(layers)]
        V = [g(rows, heads, cap, hd) for _ in range(layers)]
        head = (g(h, h) / 45, g(vocab, h) / 45)
        pos = torch.tensor([L - 1], device=dev)
        cos = g(1, 1, 1, hd)
        sin = cos.clone()
        xin = g(rows, 1, h)
        xout = torch.empty(rows, vocab, device=dev, dtype=bf)

        def rms(t, w):
            tf = t.float()
            return (tf * torch.rsqrt(tf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(bf) * w

        def rot(t):
            return torch.cat((-t[..., hd // 2:], t[..., : hd // 2]), -1)

        def step():
            x = xin
            for layer in range(layers):
                w = W[layer]
                q, k, v = (rms(x, w["n1"]) @ w["qkv"].T).view(rows, 1, 3, heads, hd).unbind(2)
                q, k, v = (t.transpose(1, 2) for t in (q, k, v))
                q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
                K[layer].index_copy_(2, pos, k)                # write at a device-resident position
                V[layer].index_copy_(2, pos, v)
                att = torch.nn.functional.scaled_dot_product_attention(q, K[layer][:, :, :L], V[layer][:, :, :L])
                x = x + att.transpose(1, 2).reshape(rows, 1, h) @ w["o"].T
                gg, u = (rms(x, w["n2"]) @ w["gu"].T).chunk(2, -1)
                x = x + (torch.nn.functional.silu(gg) * u) @ w["d"].T
            xout.copy_(torch.nn.functional.gelu(x[:, 0] @ head[0].T) @ head[1].T)

        return step

    def decode_step(rows: int) -> None:
        step = step_model(rows)
        with torch.no_grad():
            out[f"torch_eager_step_ms_rows{rows}"] = bench(step, reps=20 if cuda else 3, warm=3 if cuda else 1)
            if not cuda:
                return
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    step()                                 # warm-up on the side stream
            torch.cuda.current_stream().wait_stream(s)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                step()
            out[f"torch_graph_step_ms_rows{rows}"] = bench(graph.replay, reps=50)
            del graph

    for rows in (2, 32):
        item(f"decode step rows {rows}", lambda rows=rows: decode_step(rows))

    if not out["errors"]:
        del out["errors"]
    save()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
