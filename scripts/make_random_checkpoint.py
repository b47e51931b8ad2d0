"""Write a full-size Janus-Pro checkpoint with random weights in the official layout, for
benchmarks (never for tests: it is 4 GB for 1B and 15 GB for 7B in bf16).

    python scripts/make_random_checkpoint.py --model Janus-Pro-1B --out bench/data/Janus-Pro-1B

Needs only numpy; ``--backend torch [--torch-device cuda]`` draws the numbers with torch instead
(seconds on a GPU, where numpy takes about a minute for 1B). Every key and shape comes from
scripts/keys/janus-keys-<model>.json (the real checkpoints' lists); the config files are the real
ones; the tokenizer is the tiny look-alike of
tests/fixtures/tiny-janus-pro (same special tokens, far smaller BPE vocabulary), which is all a
speed benchmark needs. Weights: normal(0, 1/sqrt(fan_in)) for matrices and convs, 1 + 0.1·N for
norm weights, 0.02·N for biases, stored as bf16 in model.safetensors.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import struct
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "fixtures" / "tiny-janus-pro"

LANGUAGE = {
    "Janus-Pro-1B": {"hidden_size": 2048, "intermediate_size": 5632, "max_position_embeddings": 16384,
                      "model_type": "llama", "num_attention_heads": 16, "num_hidden_layers": 24,
                      "num_key_value_heads": 16, "torch_dtype": "bfloat16", "vocab_size": 102400},
    # The real 7B file sets only these; the rest are LlamaConfig defaults.
    "Janus-Pro-7B": {"max_position_embeddings": 16384, "model_type": "llama", "num_hidden_layers": 30,
                      "torch_dtype": "bfloat16", "vocab_size": 102400},
}


def config(model: str) -> dict:
    h = 2048 if model == "Janus-Pro-1B" else 4096
    mlp = lambda t, i: {"cls": "MlpProjector", "model_type": t,
                        "params": {"depth": 2, "input_dim": i, "n_embed": h, "projector_type": "mlp_gelu"}}
    return {
        "architectures": ["MultiModalityCausalLM"], "model_type": "multi_modality", "torch_dtype": "bfloat16",
        "aligner_config": mlp("aligner", 1024),
        "gen_aligner_config": mlp("gen_aligner", 8),
        "gen_head_config": {"cls": "vision_head", "model_type": "gen_head",
                            "params": {"image_token_embed": h, "image_token_size": 16384, "n_embed": h}},
        "gen_vision_config": {"cls": "VQ-16", "model_type": "gen_vision",
                              "params": {"image_token_size": 16384, "n_embed": 8}},
        "language_config": LANGUAGE[model],
        "vision_config": {"cls": "CLIPVisionTower", "model_type": "vision",
                          "params": {"image_size": 384, "model_name": "siglip_large_patch16_384",
                                     "select_feature": "same", "select_layer": -1}},
    }


def random_bf16(name: str, shape: list[int], rng: np.random.Generator) -> bytes:
    n = math.prod(shape)
    leaf = name.rsplit(".", 1)[-1]
    if len(shape) >= 2:
        fan_in = math.prod(shape[1:]) if "embed" not in name else 1
        std = 1.0 if ("embed" in name or "embedding" in name) else 1.0 / math.sqrt(fan_in)
        x = rng.standard_normal(n, dtype=np.float32) * np.float32(std)
    elif leaf == "weight":
        x = 1 + 0.1 * rng.standard_normal(n, dtype=np.float32)
    else:
        x = 0.02 * rng.standard_normal(n, dtype=np.float32)
    return (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()


def torch_bf16_writer(device: str, seed: int):
    """The torch twin of :func:`random_bf16` (same distributions, rounded instead of truncated
    to bf16; not the same numbers as numpy's)."""
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(seed)

    def draw(name: str, shape: list[int]) -> bytes:
        n = math.prod(shape)
        leaf = name.rsplit(".", 1)[-1]
        x = torch.randn(n, generator=gen, device=device, dtype=torch.float32)
        if len(shape) >= 2:
            fan_in = math.prod(shape[1:]) if "embed" not in name else 1
            x *= 1.0 if ("embed" in name or "embedding" in name) else 1.0 / math.sqrt(fan_in)
        elif leaf == "weight":
            x = 1 + 0.1 * x
        else:
            x *= 0.02
        return x.to(torch.bfloat16).view(torch.int16).cpu().numpy().tobytes()

    return draw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(LANGUAGE), default="Janus-Pro-1B")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", choices=["numpy", "torch"], default="numpy",
                    help="random number source (torch: much faster, on --torch-device)")
    ap.add_argument("--torch-device", default="cuda", help="device torch draws on (default cuda)")
    args = ap.parse_args()
    keys = json.loads((ROOT / "scripts" / "keys" / f"janus-keys-{args.model}.json").read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "config.json").write_text(json.dumps(config(args.model), indent=2))
    for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
        shutil.copy(TINY / f, args.out / f)
    pre = json.loads((TINY / "preprocessor_config.json").read_text())
    pre["image_size"] = 384
    (args.out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    proc = json.loads((TINY / "processor_config.json").read_text())
    proc["num_image_tokens"] = 576
    (args.out / "processor_config.json").write_text(json.dumps(proc, indent=2))

    header, offset = {}, 0
    for name, shape in keys.items():
        nbytes = 2 * math.prod(shape)
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    if args.backend == "torch":
        draw = torch_bf16_writer(args.torch_device, args.seed)
    else:
        rng = np.random.default_rng(args.seed)
        draw = lambda name, shape: random_bf16(name, shape, rng)  # noqa: E731
    partial = args.out / "model.safetensors.partial"  # renamed when complete: a killed run leaves no
    with open(partial, "wb") as f:                      # truncated model.safetensors behind
        f.write(struct.pack("<Q", len(raw)) + raw)
        for name, shape in keys.items():
            f.write(draw(name, shape))
    partial.replace(args.out / "model.safetensors")
    print(f"wrote {args.out} ({len(keys)} tensors, {offset / 1e9:.2f} GB)")


if __name__ == "__main__":
    main()
