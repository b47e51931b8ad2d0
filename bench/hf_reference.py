"""The PyTorch reference for the benchmarks: the transformers port of Janus
(`transformers.models.janus`, bit-exact with the official deepseek-ai code per
../shared/reference/oracle.md) built at a full-size checkpoint's sizes and filled with that
checkpoint's weights (official layout, model.safetensors), one tensor at a time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import (JanusConfig, JanusForConditionalGeneration, JanusVisionConfig, JanusVQVAEConfig,
                          LlamaConfig)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from janus_layout import official_to_hf  # noqa: E402

try:  # transformers >= 5.2x
    from transformers.initialization import no_init_weights
except ImportError:  # older 5.x / 4.x
    from transformers.modeling_utils import no_init_weights


def token_id(model_dir: Path, content: str) -> int:
    """A special token's id, looked up by string in tokenizer.json (ids differ per checkpoint)."""
    tok = json.loads((Path(model_dir) / "tokenizer.json").read_text(encoding="utf-8"))
    for t in tok.get("added_tokens", []):
        if t["content"] == content:
            return int(t["id"])
    return int(tok["model"]["vocab"][content])


def build_reference_model(model_dir: Path, dtype: torch.dtype, device: str) -> JanusForConditionalGeneration:
    """The transformers port at the checkpoint's sizes, holding its weights in `dtype` on `device`."""
    model_dir = Path(model_dir)
    cfg = json.loads((model_dir / "config.json").read_text())
    lang = cfg["language_config"]
    hidden = lang.get("hidden_size", 4096)
    text = LlamaConfig(hidden_size=hidden, intermediate_size=lang.get("intermediate_size", 11008),
                       num_attention_heads=lang.get("num_attention_heads", 32),
                       num_key_value_heads=lang.get("num_key_value_heads", lang.get("num_attention_heads", 32)),
                       num_hidden_layers=lang["num_hidden_layers"], vocab_size=lang["vocab_size"],
                       max_position_embeddings=lang["max_position_embeddings"], tie_word_embeddings=False)
    vp = cfg["vision_config"].get("params", {})   # siglip_large_patch16_384 unless overridden
    vision = JanusVisionConfig(hidden_size=vp.get("width", 1024), num_hidden_layers=vp.get("layers", 24),
                               num_attention_heads=vp.get("heads", 16), image_size=vp.get("image_size", 384),
                               patch_size=vp.get("patch_size", 16), mlp_ratio=float(vp.get("mlp_ratio", 4.0)),
                               projection_dim=hidden, depth=2,
                               num_image_tokens=(vp.get("image_size", 384) // vp.get("patch_size", 16)) ** 2,
                               hidden_act="gelu", layer_norm_eps=1e-6, attention_bias=True)
    gp = cfg["gen_vision_config"].get("params", {})  # VQ-16 unless overridden
    vq = JanusVQVAEConfig(embed_dim=gp.get("n_embed", 8), num_embeddings=gp.get("image_token_size", 16384),
                          latent_channels=gp.get("z_channels", 256), base_channels=gp.get("ch", 128),
                          channel_multiplier=list(gp.get("ch_mult", [1, 1, 2, 2, 4])), num_res_blocks=2,
                          projection_dim=hidden, image_token_embed_dim=hidden, num_hidden_layers=2,
                          hidden_act="gelu")
    config = JanusConfig(text_config=text, vision_config=vision, vq_config=vq,
                         image_token_id=token_id(model_dir, "<image_placeholder>"), tie_word_embeddings=False)
    with no_init_weights():
        model = JanusForConditionalGeneration._from_config(config, attn_implementation="sdpa", dtype=dtype)
    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))
    loaded = set()
    with safe_open(model_dir / "model.safetensors", framework="pt") as f:
        for key in f.keys():
            for name, t in official_to_hf({key: f.get_tensor(key)}).items():
                with torch.no_grad():
                    params[name].copy_(t.reshape(params[name].shape))
                loaded.add(name)
    missing = [n for n, _ in model.named_parameters() if n not in loaded]
    assert not missing, f"parameters not in the checkpoint: {missing[:5]}"
    return model.to(device).eval()
