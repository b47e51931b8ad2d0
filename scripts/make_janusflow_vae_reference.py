#!/usr/bin/env python3
"""Second oracle for the JanusFlow SDXL VAE decoder: diffusers' AutoencoderKL (run by hand, never in CI).

    /work/oracle-venv/bin/pip install diffusers
    /work/oracle-venv/bin/python scripts/make_janusflow_vae_reference.py

Needs: torch, diffusers (tested with 0.42.1), safetensors, numpy.

Loads the tiny SDXL-shaped VAE of tests/fixtures/tiny-janusflow/vae with
`diffusers.AutoencoderKL.from_pretrained(..., torch_dtype=float32)` and decodes fixed latents the way JanusFlow does
(`vae.decode(z / vae.config.scaling_factor).sample`):

  * a batch of 3 square latents (3, 4, 8, 8) drawn from numpy's default_rng(20240607) standard normal;
  * one non-square latent (1, 4, 6, 10) from the same generator (drawn after the batch).

Writes tests/fixtures/tiny-janusflow/vae_reference.safetensors (inputs, outputs and two intermediates, float32) and
tests/fixtures/tiny-janusflow/VAE_REFERENCE.md (how it was made, versions, tensor table and the checks below).

Checks (printed and written to the markdown file):
  1. diffusers reproduces the fixture's `gen_decoded` from `gen_final_latent` (reference.safetensors, made with the
     official JanusFlow code and diffusers 0.32.2) within 1e-5 relative.
  2. the same weights saved under the legacy diffusers attention names (query/key/value/proj_attn) load through
     from_pretrained and decode bit-identically (diffusers renames them on load).
  3. the classic attention processor (`AttnProcessor`, explicit fp32-upcast softmax) agrees with the default SDPA
     processor to float32 rounding.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import diffusers
from diffusers import AutoencoderKL
from diffusers.models.attention_processor import AttnProcessor
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "tiny-janusflow"
VAE_DIR = FIXTURE / "vae"
OUT = FIXTURE / "vae_reference.safetensors"
DOC = FIXTURE / "VAE_REFERENCE.md"
SEED = 20240607

torch.manual_seed(0)
torch.set_num_threads(max(1, torch.get_num_threads()))
torch.use_deterministic_algorithms(True)


def rel(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(max |a - b|, max |a - b| / max |b|)."""
    d = (a.double() - b.double()).abs().max().item()
    return d, d / b.double().abs().max().item()


def load_vae(path: Path) -> AutoencoderKL:
    vae = AutoencoderKL.from_pretrained(path, torch_dtype=torch.float32, low_cpu_mem_usage=False)
    vae.eval()
    return vae


@torch.no_grad()
def decode_scaled(vae: AutoencoderKL, z: torch.Tensor) -> torch.Tensor:
    # JanusFlow (README generate() and app_janusflow.py): vae.decode(z / vae.config.scaling_factor).sample
    return vae.decode(z / vae.config.scaling_factor).sample


def main() -> int:
    vae = load_vae(VAE_DIR)
    sf = vae.config.scaling_factor
    assert vae.config.shift_factor is None, "JanusFlow ignores shift_factor; this fixture has none"

    rng = np.random.default_rng(SEED)
    z_sq = torch.from_numpy(rng.standard_normal((3, 4, 8, 8)).astype(np.float32))
    z_ns = torch.from_numpy(rng.standard_normal((1, 4, 6, 10)).astype(np.float32))

    # Intermediates for the square batch (hooks on the decoder's submodules).
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        vae.post_quant_conv.register_forward_hook(lambda m, i, o: captured.setdefault("post_quant_conv_out", o)),
        vae.decoder.mid_block.register_forward_hook(lambda m, i, o: captured.setdefault("mid_block_out", o)),
    ]
    out_sq = decode_scaled(vae, z_sq)
    for h in hooks:
        h.remove()
    out_ns = decode_scaled(vae, z_ns)
    assert out_sq.shape == (3, 3, 64, 64) and out_ns.shape == (1, 3, 48, 80)

    # Batch independence: decoding one latent alone gives the same image as in the batch.
    alone = decode_scaled(vae, z_sq[1:2])
    batch_vs_alone = rel(alone, out_sq[1:2])

    # Check 1: the fixture's gen_decoded.
    ref = load_file(str(FIXTURE / "reference.safetensors"))
    gen = decode_scaled(vae, ref["gen_final_latent"])
    check1 = rel(gen, ref["gen_decoded"])

    # Check 2: legacy attention names.
    state = load_file(str(VAE_DIR / "diffusion_pytorch_model.safetensors"))
    legacy = {}
    renames = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    n_renamed = 0
    for k, v in state.items():
        new = k
        for a, b in renames.items():
            tag = f".attentions.0.{a}."
            if tag in k:
                new = k.replace(tag, f".attentions.0.{b}.")
                n_renamed += 1
        legacy[new] = v
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text((VAE_DIR / "config.json").read_text())
        save_file(legacy, str(Path(tmp) / "diffusion_pytorch_model.safetensors"))
        vae_legacy = load_vae(Path(tmp))
        out_legacy = decode_scaled(vae_legacy, z_sq)
    check2 = rel(out_legacy, out_sq)

    # Check 3: classic processor (explicit baddbmm + fp32 softmax) vs SDPA.
    vae_classic = load_vae(VAE_DIR)
    vae_classic.set_attn_processor(AttnProcessor())
    check3 = rel(decode_scaled(vae_classic, z_sq), out_sq)

    tensors = {
        "latents_scaled": z_sq,
        "latents": (z_sq / sf).contiguous(),
        "post_quant_conv_out": captured["post_quant_conv_out"].contiguous(),
        "mid_block_out": captured["mid_block_out"].contiguous(),
        "decoded": out_sq.contiguous(),
        "latents_scaled_nonsquare": z_ns,
        "latents_nonsquare": (z_ns / sf).contiguous(),
        "decoded_nonsquare": out_ns.contiguous(),
    }
    save_file(tensors, str(OUT), metadata={"diffusers": diffusers.__version__, "torch": torch.__version__})

    lines = [
        "# Second oracle for the VAE decoder (`vae_reference.safetensors`)",
        "",
        "Made by `scripts/make_janusflow_vae_reference.py` (run by hand) with diffusers "
        f"{diffusers.__version__} and torch {torch.__version__} on CPU, float32, default attention processor "
        "(SDPA). The tiny VAE in `vae/` is loaded with `AutoencoderKL.from_pretrained(vae, torch_dtype=float32)` "
        "and every latent is decoded the way JanusFlow decodes: `vae.decode(z / vae.config.scaling_factor).sample` "
        f"(scaling_factor {sf}, no shift_factor). Latents: numpy `default_rng({SEED}).standard_normal`, first the "
        "(3, 4, 8, 8) batch, then the (1, 4, 6, 10) latent, cast to float32.",
        "",
        "| name | shape | meaning |",
        "|---|---|---|",
        "| `latents_scaled` | (3, 4, 8, 8) | z as JanusFlow holds it (input of a `decode_scaled`) |",
        "| `latents` | (3, 4, 8, 8) | `z / scaling_factor` in float32 (input of diffusers `decode`) |",
        "| `post_quant_conv_out` | (3, 4, 8, 8) | `post_quant_conv(latents)` |",
        "| `mid_block_out` | (3, 64, 8, 8) | decoder `conv_in` → `mid_block` (resnet, attention, resnet) |",
        "| `decoded` | (3, 3, 64, 64) | `vae.decode(latents).sample`, unclipped |",
        "| `latents_scaled_nonsquare` | (1, 4, 6, 10) | non-square z |",
        "| `latents_nonsquare` | (1, 4, 6, 10) | `z / scaling_factor` |",
        "| `decoded_nonsquare` | (1, 3, 48, 80) | `vae.decode(latents_nonsquare).sample` |",
        "",
        "Used by the Rust tests `sdxl_vae_matches_diffusers` (and, for the legacy names, "
        "`sdxl_vae_legacy_attention_names`) in `src/models/sdxl_vae.rs`.",
        "",
        "Checks (max |diff|, and max |diff| / max |reference|):",
        "",
        f"1. diffusers {diffusers.__version__} reproduces the fixture's `gen_decoded` (official JanusFlow code, "
        f"diffusers 0.32.2) from `gen_final_latent`: {check1[0]:.3g} ({check1[1]:.3g} relative).",
        f"2. the same weights under the legacy attention names (`query`/`key`/`value`/`proj_attn`, {n_renamed} "
        f"tensors renamed) load through `from_pretrained` and decode exactly like the current names (max diff "
        f"{check2[0]:.3g}; diffusers renames them on load).",
        f"3. the classic `AttnProcessor` (fp32-upcast softmax) vs the default SDPA processor: {check3[0]:.3g} "
        f"({check3[1]:.3g} relative).",
        f"4. decoding `latents_scaled[1]` alone vs inside the batch: {batch_vs_alone[0]:.3g}.",
        "",
    ]
    DOC.write_text("\n".join(lines))
    print("\n".join(lines))
    ok = check1[1] < 1e-5 and check2[0] == 0.0 and check3[1] < 1e-5
    print("OK" if ok else "CHECK FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
