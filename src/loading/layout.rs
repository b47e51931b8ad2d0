//! The two ways Janus checkpoints name their tensors.
//!
//! The models ask for tensors by their names in the official deepseek-ai layout
//! (`vision_model.vision_tower.blocks.0.attn.qkv.weight`, `gen_vision_model.decoder...`). A
//! checkpoint converted for transformers (`deepseek-community/Janus-Pro-1B`) stores the same
//! values under other names, with SigLIP's fused qkv split in three and the position embedding
//! without its batch axis; [`transformers_source`] says where each official tensor is found there.
//! The table is `convert_janus_weights_to_hf.py`'s, inverted.

/// How a checkpoint names its tensors (decided from `config.json`'s `model_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightLayout {
    /// deepseek-ai's `multi_modality` checkpoints.
    #[default]
    Official,
    /// transformers' `janus` checkpoints.
    Transformers,
}

/// Where an official-layout tensor lives in a transformers-layout checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// One tensor, renamed.
    Renamed(String),
    /// Several tensors concatenated along dim 0 (q, k, v → qkv).
    Concat(Vec<String>),
    /// One tensor with a leading axis of size 1 added (`pos_embed`).
    Unsqueezed(String),
}

/// The transformers-layout source of the official tensor `name`.
pub fn transformers_source(name: &str) -> Source {
    const VIT: &str = "model.vision_model.";
    if name == "vision_model.vision_tower.pos_embed" {
        return Source::Unsqueezed(format!("{VIT}embeddings.position_embedding.weight"));
    }
    if let Some(rest) = name.strip_prefix("vision_model.vision_tower.blocks.") {
        if let Some((layer, tail)) = rest.split_once('.') {
            let base = format!("{VIT}encoder.layers.{layer}.");
            if let Some(param) = tail.strip_prefix("attn.qkv.") {
                return Source::Concat(
                    ["q", "k", "v"]
                        .iter()
                        .map(|p| format!("{base}self_attn.{p}_proj.{param}"))
                        .collect(),
                );
            }
            for (official, hf) in [
                ("norm1.", "layer_norm1."),
                ("norm2.", "layer_norm2."),
                ("attn.proj.", "self_attn.projection_layer."),
                ("mlp.", "mlp."),
            ] {
                if let Some(param) = tail.strip_prefix(official) {
                    return Source::Renamed(format!("{base}{hf}{param}"));
                }
            }
        }
    }
    let renamed = if let Some(p) = name.strip_prefix("vision_model.vision_tower.patch_embed.proj.")
    {
        format!("{VIT}embeddings.patch_embedding.{p}")
    } else if let Some(p) = name.strip_prefix("vision_model.vision_tower.norm.") {
        format!("{VIT}post_layernorm.{p}")
    } else if let Some(p) = name.strip_prefix("aligner.layers.") {
        format!("model.aligner.{}", projector_layer(p))
    } else if let Some(p) = name.strip_prefix("gen_aligner.layers.") {
        format!("model.generation_aligner.{}", projector_layer(p))
    } else if let Some(p) = name.strip_prefix("gen_head.output_mlp_projector.") {
        format!("model.generation_head.proj_out.{p}")
    } else if let Some(p) = name.strip_prefix("gen_head.vision_head.") {
        format!("model.generation_head.vision_head.{p}")
    } else if name == "gen_embed.weight" {
        "model.generation_embeddings.weight".into()
    } else if let Some(p) = name.strip_prefix("gen_vision_model.") {
        let p = p
            .replacen("encoder.conv_blocks.", "encoder.down.", 1)
            .replacen("decoder.conv_blocks.", "decoder.up.", 1)
            .replace(".res.", ".block.")
            .replacen("mid.0.", "mid.block_1.", 1)
            .replacen("mid.1.", "mid.attn_1.", 1)
            .replacen("mid.2.", "mid.block_2.", 1);
        format!("model.vqmodel.{p}")
    } else if let Some(p) = name.strip_prefix("language_model.model.") {
        format!("model.language_model.{p}")
    } else if name == "language_model.lm_head.weight" {
        "lm_head.weight".into()
    } else {
        // Nothing else is read by the models (the port drops attn_pool and codebook_used).
        name.to_string()
    };
    Source::Renamed(renamed)
}

/// `mlp_gelu` projector layers: official `layers.{0,2,4,..}` (Linear, GELU, Linear, ...) are
/// the port's `fc1`, `hidden_layers.0`, `hidden_layers.1`, ...
fn projector_layer(rest: &str) -> String {
    match rest.split_once('.') {
        Some(("0", param)) => format!("fc1.{param}"),
        Some((i, param)) => match i.parse::<usize>() {
            Ok(i) if i % 2 == 0 => format!("hidden_layers.{}.{param}", i / 2 - 1),
            _ => format!("layers.{rest}"),
        },
        None => format!("layers.{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renamed(name: &str) -> String {
        match transformers_source(name) {
            Source::Renamed(s) => s,
            other => panic!("{name}: {other:?}"),
        }
    }

    /// Rows of the table in ../shared/reference/oracle.md (official → transformers).
    #[test]
    fn the_conversion_table() {
        for (official, hf) in [
            (
                "vision_model.vision_tower.patch_embed.proj.weight",
                "model.vision_model.embeddings.patch_embedding.weight",
            ),
            (
                "vision_model.vision_tower.blocks.3.norm1.bias",
                "model.vision_model.encoder.layers.3.layer_norm1.bias",
            ),
            (
                "vision_model.vision_tower.blocks.23.attn.proj.weight",
                "model.vision_model.encoder.layers.23.self_attn.projection_layer.weight",
            ),
            (
                "vision_model.vision_tower.blocks.0.mlp.fc2.weight",
                "model.vision_model.encoder.layers.0.mlp.fc2.weight",
            ),
            (
                "vision_model.vision_tower.norm.weight",
                "model.vision_model.post_layernorm.weight",
            ),
            ("aligner.layers.0.weight", "model.aligner.fc1.weight"),
            (
                "aligner.layers.2.bias",
                "model.aligner.hidden_layers.0.bias",
            ),
            (
                "gen_aligner.layers.2.weight",
                "model.generation_aligner.hidden_layers.0.weight",
            ),
            (
                "gen_head.output_mlp_projector.bias",
                "model.generation_head.proj_out.bias",
            ),
            (
                "gen_head.vision_head.weight",
                "model.generation_head.vision_head.weight",
            ),
            ("gen_embed.weight", "model.generation_embeddings.weight"),
            (
                "gen_vision_model.encoder.conv_blocks.1.res.0.norm1.weight",
                "model.vqmodel.encoder.down.1.block.0.norm1.weight",
            ),
            (
                "gen_vision_model.decoder.conv_blocks.4.attn.2.proj_out.bias",
                "model.vqmodel.decoder.up.4.attn.2.proj_out.bias",
            ),
            (
                "gen_vision_model.decoder.mid.1.q.weight",
                "model.vqmodel.decoder.mid.attn_1.q.weight",
            ),
            (
                "gen_vision_model.encoder.mid.2.conv1.weight",
                "model.vqmodel.encoder.mid.block_2.conv1.weight",
            ),
            (
                "gen_vision_model.quantize.embedding.weight",
                "model.vqmodel.quantize.embedding.weight",
            ),
            (
                "gen_vision_model.post_quant_conv.weight",
                "model.vqmodel.post_quant_conv.weight",
            ),
            (
                "language_model.model.layers.7.self_attn.q_proj.weight",
                "model.language_model.layers.7.self_attn.q_proj.weight",
            ),
            ("language_model.lm_head.weight", "lm_head.weight"),
        ] {
            assert_eq!(renamed(official), hf, "{official}");
        }
        assert_eq!(
            transformers_source("vision_model.vision_tower.blocks.5.attn.qkv.bias"),
            Source::Concat(vec![
                "model.vision_model.encoder.layers.5.self_attn.q_proj.bias".into(),
                "model.vision_model.encoder.layers.5.self_attn.k_proj.bias".into(),
                "model.vision_model.encoder.layers.5.self_attn.v_proj.bias".into(),
            ])
        );
        assert_eq!(
            transformers_source("vision_model.vision_tower.pos_embed"),
            Source::Unsqueezed("model.vision_model.embeddings.position_embedding.weight".into())
        );
    }
}
