"""The same CPU stages as bench/cpu_stages.py, run by the PyTorch reference (the transformers
port, `transformers.models.janus`, which matches the official deepseek-ai code bit for bit) on the
same checkpoint. Needs torch + transformers (installed by hand, never in CI):

    /path/to/torch-venv/bin/python bench/reference_stages.py bench/data/Janus-Pro-1B [--json]
        [--format fp32|bf16|int8-dynamic]

--format picks what a CPU user of PyTorch would run: fp32 (the default), bf16 weights and
activations, or fp32 with every nn.Linear dynamically quantized to int8
(`torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)`, the whole model).

Weights are read from the official-layout model.safetensors (bf16) and copied, one tensor at a
time, into an uninitialised float32 model (official -> transformers key mapping from
scripts/janus_layout.py), so peak memory is the model plus one tensor, as in a normal load.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch
from transformers.cache_utils import DynamicCache

from hf_reference import build_reference_model
from timing import best_of, median_of


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--json", action="store_true", help="print the rows as JSON (for bench/cpu.py)")
    ap.add_argument("--format", default="fp32", choices=["fp32", "bf16", "int8-dynamic"])
    args = ap.parse_args()
    rows = []
    dtype = torch.bfloat16 if args.format == "bf16" else torch.float32
    t = time.perf_counter()
    model = build_reference_model(args.model, dtype, "cpu")
    if args.format == "int8-dynamic":
        from torch.ao.quantization import quantize_dynamic

        model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    rows.append(("load", time.perf_counter() - t))
    lm, hidden = model.model.language_model, model.config.text_config.hidden_size
    g = torch.Generator().manual_seed(0)

    px = (torch.rand(1, 3, 384, 384, generator=g) * 2 - 1).to(dtype)
    model.model.get_image_features(px)  # warm-up
    rows.append(("SigLIP + aligner, 1 image", best_of(lambda: model.model.get_image_features(px).pooler_output, 3)))

    embeds = torch.randn(1, 604, hidden, generator=g).to(dtype)
    rows.append(("prefill, 604 tokens", best_of(lambda: model.lm_head(lm(inputs_embeds=embeds).last_hidden_state), 2)))

    cache = DynamicCache(config=model.config.text_config)
    out = lm(inputs_embeds=embeds, cache=cache, use_cache=True)
    last = [out.last_hidden_state[:, -1:]]

    def text_step():
        token = model.lm_head(last[0]).argmax(-1)
        h = lm(inputs_embeds=lm.embed_tokens(token), cache=cache, use_cache=True).last_hidden_state
        last[0] = h

    rows.append((f"text decode step (median of {args.steps})", median_of(text_step, args.steps)))

    cfg_cache = DynamicCache(config=model.config.text_config)
    prompt = torch.randn(2, 16, hidden, generator=g).to(dtype)
    state = [lm(inputs_embeds=prompt, cache=cfg_cache, use_cache=True).last_hidden_state[:, -1]]

    def cfg_step(w: float = 5.0):
        logits = model.model.generation_head(state[0])
        cond, uncond = logits[0::2], logits[1::2]
        probs = torch.softmax((uncond + w * (cond - uncond)).float(), dim=-1)
        token = torch.multinomial(probs, 1, generator=g)
        emb = model.prepare_embeddings_for_image_generation(torch.cat([token, token], 1).view(-1))
        state[0] = lm(inputs_embeds=emb.unsqueeze(1), cache=cfg_cache, use_cache=True).last_hidden_state[:, -1]

    rows.append((f"CFG image-token step, batch 2 (median of {args.steps})", median_of(cfg_step, args.steps)))

    tokens = torch.randint(0, 16384, (1, 576), generator=g)
    model.decode_image_tokens(tokens)  # warm-up
    rows.append(("VQ decode, 1 image 384x384", best_of(lambda: model.decode_image_tokens(tokens), 3)))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    rows.append(("peak RSS (GB)", rss))

    if args.json:
        print(json.dumps({"name": f"PyTorch {args.format} (transformers {__import__('transformers').__version__} / "
                                  f"torch {torch.__version__})",
                          "threads": torch.get_num_threads(), "rows": rows}))
    else:
        for name, sec in rows:
            print(f"| {name:<48} | {sec:8.3f} |")


if __name__ == "__main__":
    main()
