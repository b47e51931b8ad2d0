"""The official deepseek-ai Janus(-Pro) state-dict layout mapped to the transformers port's
(`transformers.models.janus`), from the table in ../shared/reference/oracle.md (itself read from
transformers' convert_janus_weights_to_hf.py). Used by the fixture makers, the reference
benchmarks and tests/fixture_variants.py; works on torch tensors and numpy arrays alike (the fused
SigLIP qkv is split into q, k, v by slicing, which is what torch.split does), so it needs neither.
"""

from __future__ import annotations

import re


def official_to_hf(sd):
    hf = {}
    for k, t in sd.items():
        if ".attn_pool." in k or k.endswith("quantize.codebook_used"):
            continue                                             # unused in inference, dropped by the port
        if k == "vision_model.vision_tower.pos_embed":
            hf["model.vision_model.embeddings.position_embedding.weight"] = t.squeeze(0)
            continue
        m = re.fullmatch(r"vision_model\.vision_tower\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)", k)
        if m:
            assert t.shape[0] % 3 == 0, (k, t.shape)
            n3 = t.shape[0] // 3
            q, kk, v = t[:n3], t[n3:2 * n3], t[2 * n3:]
            base = f"model.vision_model.encoder.layers.{m.group(1)}.self_attn."
            hf[base + "q_proj." + m.group(2)] = q
            hf[base + "k_proj." + m.group(2)] = kk
            hf[base + "v_proj." + m.group(2)] = v
            continue
        n = k
        n = n.replace("vision_model.vision_tower.patch_embed.proj.", "model.vision_model.embeddings.patch_embedding.")
        n = re.sub(r"^vision_model\.vision_tower\.blocks\.(\d+)\.norm1\.", r"model.vision_model.encoder.layers.\1.layer_norm1.", n)
        n = re.sub(r"^vision_model\.vision_tower\.blocks\.(\d+)\.norm2\.", r"model.vision_model.encoder.layers.\1.layer_norm2.", n)
        n = re.sub(r"^vision_model\.vision_tower\.blocks\.(\d+)\.attn\.proj\.", r"model.vision_model.encoder.layers.\1.self_attn.projection_layer.", n)
        n = re.sub(r"^vision_model\.vision_tower\.blocks\.(\d+)\.mlp\.", r"model.vision_model.encoder.layers.\1.mlp.", n)
        n = n.replace("vision_model.vision_tower.norm.", "model.vision_model.post_layernorm.")
        n = re.sub(r"^aligner\.layers\.0\.", "model.aligner.fc1.", n)
        n = re.sub(r"^aligner\.layers\.2\.", "model.aligner.hidden_layers.0.", n)
        n = re.sub(r"^gen_aligner\.layers\.0\.", "model.generation_aligner.fc1.", n)
        n = re.sub(r"^gen_aligner\.layers\.2\.", "model.generation_aligner.hidden_layers.0.", n)
        n = n.replace("gen_head.output_mlp_projector.", "model.generation_head.proj_out.")
        n = n.replace("gen_head.vision_head.", "model.generation_head.vision_head.")
        n = n.replace("gen_embed.weight", "model.generation_embeddings.weight")
        if n.startswith("gen_vision_model."):
            n = "model.vqmodel." + n[len("gen_vision_model."):]
            n = n.replace("encoder.conv_blocks.", "encoder.down.").replace("decoder.conv_blocks.", "decoder.up.")
            n = n.replace(".res.", ".block.")
            n = n.replace(".mid.0.", ".mid.block_1.").replace(".mid.1.", ".mid.attn_1.").replace(".mid.2.", ".mid.block_2.")
        n = n.replace("language_model.model.", "model.language_model.")
        n = n.replace("language_model.lm_head.weight", "lm_head.weight")
        assert n not in hf, n
        hf[n] = t
    return hf
