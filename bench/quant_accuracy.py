"""Teacher-forced accuracy of the quantized formats on a full-size checkpoint (CPU): image tokens and text.

    python bench/quant_accuracy.py bench/data/Janus-Pro-1B [--formats q8_0 q6_k q4_k] [--prompts ...]

For each prompt, the exact model (bf16-stored weights, f32 compute: the official checkpoints' own
values) samples 576 image tokens freely (temperature 1, CFG 5, a fixed seed). Then every model —
the exact one again, as a check that the method reads 0, and each quantized format — is run
teacher-forced over the same prompt and tokens (one forward pass over the whole sequence, the
conditional and the unconditional row), and at every step the CFG'd temperature-1 distribution
p = softmax(u + 5·(c − u)) is compared with the exact model's: KL(p_exact ‖ p_format) in nats,
top-1 agreement, top-5 overlap. The same for text: the exact model samples answers to two
questions (temperature 1), and each format's next-token distribution is compared over them.
Prints one markdown table per part (mean / p99 / max KL, top-1 %, top-5 %).

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
QUESTIONS = ["Describe a cat sitting on a wooden table.", "Write a short poem about the sea."]


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


def text_logprobs(model: JanusPro, question: str, answer: list[int]) -> np.ndarray:
    """(steps, vocab) log-probabilities of the next text token at every answer step."""
    user = model.info["roles"][0]
    ids = model.prompt_ids(model.format_prompt([(user, question)]))
    embeds = model.inputs_embeds(np.concatenate([ids, np.asarray(answer[:-1], dtype=np.int64)]))
    _, logits = model.forward(embeds)
    start = len(ids) - 1
    return log_softmax(logits[start:start + len(answer)].astype(np.float64))


def answer_tokens(model: JanusPro, question: str, n: int, **sampling) -> list[int]:
    tokens: list[int] = []
    model.understand(None, question, max_new_tokens=n, on_token=tokens.append, **sampling)
    return tokens


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
    ap.add_argument("--text-tokens", type=int, default=64, help="answer tokens per question (0: no text part)")
    ap.add_argument("--skip-images", action="store_true", help="only the text part")
    args = ap.parse_args()
    if args.skip_images:
        args.prompts = []

    t = time.perf_counter()
    exact = JanusPro.from_pretrained(args.model, dtype="bfloat16")
    tokens = [exact.generate_tokens(p, seed=args.seed + i, progress=False)[0] for i, p in enumerate(args.prompts)]
    answers = [answer_tokens(exact, q, args.text_tokens, do_sample=True, temperature=1.0, seed=args.seed + i)
               for i, q in enumerate(QUESTIONS)] if args.text_tokens else []
    print(f"free-running reference: {len(tokens)} images, {len(answers)} answers in {time.perf_counter() - t:.0f} s",
          flush=True)
    reference = [cfg_logprobs(exact, p, tk) for p, tk in zip(args.prompts, tokens)]
    text_reference = [text_logprobs(exact, q, a) for q, a in zip(QUESTIONS, answers)]
    # Alignment checks of the teacher-forced passes: on a greedy sequence the argmax must be the
    # sequence itself (up to rounding between the cached decode and the one-pass forward).
    if args.prompts:
        greedy = exact.generate_tokens(args.prompts[0], temperature=0.0, progress=False)[0]
        agree = (cfg_logprobs(exact, args.prompts[0], greedy).argmax(-1) == greedy).mean()
        print(f"image tokens: teacher-forced argmax = greedy decode on {100 * agree:.1f}% of {len(greedy)} steps")
    if answers:
        greedy_text = answer_tokens(exact, QUESTIONS[0], args.text_tokens)
        agree = (text_logprobs(exact, QUESTIONS[0], greedy_text).argmax(-1) == greedy_text).mean()
        print(f"text: teacher-forced argmax = greedy decode on {100 * agree:.1f}% of {len(greedy_text)} steps")

    def measure(m: JanusPro) -> tuple[list, list]:
        return ([compare(r, cfg_logprobs(m, p, tk)) for r, p, tk in zip(reference, args.prompts, tokens)],
                [compare(r, text_logprobs(m, q, a)) for r, q, a in zip(text_reference, QUESTIONS, answers)])

    rows = {"exact (bf16 weights), again": measure(exact)}
    del exact
    gc.collect()
    for fmt in args.formats:
        m = JanusPro.from_pretrained(args.model, dtype="bfloat16", quantize=fmt)
        rows[fmt] = measure(m)
        print(f"{fmt}: done", flush=True)
        del m
        gc.collect()

    if args.prompts:
        print(f"\n{args.model}: image tokens, {len(args.prompts)} prompts × {len(tokens[0])} steps, CFG {CFG}, "
              "temperature 1")
        table({name: r[0] for name, r in rows.items()})
    if answers:
        print(f"\n{args.model}: text, {len(answers)} sampled answers × {len(answers[0])} tokens, temperature 1")
        table({name: r[1] for name, r in rows.items()})


def table(rows: dict[str, list[dict[str, float]]]) -> None:
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
