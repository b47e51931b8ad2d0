"""Teacher-forced accuracy of the quantized formats on a full-size checkpoint (CPU).

    python bench/quant_accuracy.py bench/data/Janus-Pro-1B [--formats q8_0 q6_k q4_k] [--prompts ...]

For each prompt, the exact model (bf16-stored weights, f32 compute: the official checkpoints' own
values) samples 576 image tokens freely (temperature 1, CFG 5, a fixed seed). Then every model —
the exact one again, as a check that the method reads 0, and each quantized format — is run
teacher-forced over the same prompt and tokens (one forward pass over the whole sequence, the
conditional and the unconditional row), and at every step the CFG'd temperature-1 distribution
p = softmax(u + 5·(c − u)) is compared with the exact model's: KL(p_exact ‖ p_format) in nats,
top-1 agreement, top-5 overlap. Prints one markdown table (mean / p99 / max KL, top-1 %, top-5 %).

On random weights the distributions are nearly flat: this measures the formats' error and tests
the plumbing; it says nothing about real images (that needs real weights and a scorer).
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np

from janus_rs import JanusPro

CFG = 5.0
PROMPTS = ["a photo of a tangerine on a wooden table", "an astronaut riding a horse, oil painting"]


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def cfg_logprobs(model: JanusPro, prompt: str, tokens: np.ndarray) -> np.ndarray:
    """(steps, vocab) log-probabilities of the CFG'd distribution at every image-token step."""
    ids = model.generation_prompt_ids(prompt)
    uncond = ids.copy()
    uncond[1:-1] = model.token_id("<｜▁pad▁｜>")
    images = model.image_token_embeddings(tokens[:-1].tolist())
    rows = [np.concatenate([model.inputs_embeds(r), images]) for r in (ids, uncond)]
    hidden, _ = model.forward(np.stack(rows))
    start = len(ids) - 1  # the hidden state after <begin_of_image> predicts the first token
    logits = model.image_token_logits(hidden[:, start:start + len(tokens)])
    cond, unc = logits[0].astype(np.float64), logits[1].astype(np.float64)
    return log_softmax(unc + CFG * (cond - unc))


def compare(ref: np.ndarray, other: np.ndarray) -> dict[str, float]:
    kl = (np.exp(ref) * (ref - other)).sum(axis=-1)
    top1 = (ref.argmax(-1) == other.argmax(-1)).mean()
    r5 = np.argsort(-ref, axis=-1)[:, :5]
    o5 = np.argsort(-other, axis=-1)[:, :5]
    top5 = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(r5, o5)])
    return {"kl_mean": float(kl.mean()), "kl_p99": float(np.percentile(kl, 99)), "kl_max": float(kl.max()),
            "top1": float(100 * top1), "top5": float(100 * top5), "steps": int(len(kl))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--formats", nargs="+", default=["q8_0", "q6_k", "q4_k"])
    ap.add_argument("--prompts", nargs="+", default=PROMPTS)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t = time.perf_counter()
    exact = JanusPro.from_pretrained(args.model, dtype="bfloat16")
    tokens = [exact.generate_tokens(p, seed=args.seed + i, progress=False)[0] for i, p in enumerate(args.prompts)]
    print(f"free-running reference: {len(tokens)} × {len(tokens[0])} tokens in {time.perf_counter() - t:.0f} s",
          flush=True)
    reference = [cfg_logprobs(exact, p, tk) for p, tk in zip(args.prompts, tokens)]
    # Alignment check of the teacher-forced pass: on a greedy sequence its argmax must be the
    # sequence itself (up to rounding between the cached decode and the one-pass forward).
    greedy = exact.generate_tokens(args.prompts[0], temperature=0.0, progress=False)[0]
    agree = (cfg_logprobs(exact, args.prompts[0], greedy).argmax(-1) == greedy).mean()
    print(f"teacher-forced argmax = greedy decode on {100 * agree:.1f}% of {len(greedy)} steps", flush=True)
    rows = {"exact (bf16 weights), again": [compare(r, cfg_logprobs(exact, p, tk))
                                            for r, p, tk in zip(reference, args.prompts, tokens)]}
    del exact
    gc.collect()
    for fmt in args.formats:
        m = JanusPro.from_pretrained(args.model, dtype="bfloat16", quantize=fmt)
        rows[fmt] = [compare(r, cfg_logprobs(m, p, tk)) for r, p, tk in zip(reference, args.prompts, tokens)]
        print(f"{fmt}: done", flush=True)
        del m
        gc.collect()

    print(f"\n{args.model}: {len(args.prompts)} prompts × {len(tokens[0])} steps, CFG {CFG}, temperature 1")
    print("| weights | mean KL (nats) | p99 KL | max KL | top-1 agreement % | top-5 overlap % |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, per_prompt in rows.items():
        kl_mean = np.mean([r["kl_mean"] for r in per_prompt])
        kl_p99 = max(r["kl_p99"] for r in per_prompt)
        kl_max = max(r["kl_max"] for r in per_prompt)
        top1 = np.mean([r["top1"] for r in per_prompt])
        top5 = np.mean([r["top5"] for r in per_prompt])
        print(f"| {name} | {kl_mean:.4g} | {kl_p99:.4g} | {kl_max:.4g} | {top1:.1f} | {top5:.1f} |")


if __name__ == "__main__":
    main()
