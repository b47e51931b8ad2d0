//! transformers' `JanusConfig` layout (`model_type: "janus"`: `text_config`, `vision_config`,
//! `vq_config`), translated into the official [`JanusConfig`].

use super::processor::{default_image_size, default_true};
use super::*;

impl JanusConfig {
    /// transformers' `JanusConfig` (`model_type: "janus"`: `text_config`, `vision_config`,
    /// `vq_config`), as `deepseek-community/Janus-Pro-1B` ships it.
    pub(super) fn from_transformers(value: serde_json::Value, file: &Path) -> Result<Self> {
        let raw: RawTransformersConfig = serde_json::from_value(value).map_err(|e| {
            Error::config(
                file,
                format!("transformers-layout config (model_type \"janus\"): {e}"),
            )
        })?;
        let mut language = raw.text_config.llama;
        if let Some(rope) = raw.text_config.rope_parameters {
            // transformers ≥ 5 keeps rope_theta inside rope_parameters.
            if rope.rope_type.as_deref().is_some_and(|t| t != "default") {
                return Err(Error::config(
                    file,
                    format!(
                        "text_config: rope_type {:?} is not supported",
                        rope.rope_type
                    ),
                ));
            }
            if let Some(theta) = rope.rope_theta {
                language.rope_theta = theta;
            }
        }
        // The untied lm_head of the official model; the loader ties it only if the weights
        // have no lm_head.weight.
        language.tie_word_embeddings = false;
        let v = &raw.vision_config;
        let bad = |msg: String| Err(Error::config(file, format!("vision_config: {msg}")));
        if v.hidden_act != "gelu" {
            return bad(format!(
                "hidden_act {:?} is not supported (Janus uses \"gelu\")",
                v.hidden_act
            ));
        }
        if v.use_qk_norm || !v.attention_bias || v.num_channels != 3 {
            return bad(
                "use_qk_norm, attention_bias=false and num_channels != 3 are not supported".into(),
            );
        }
        let params = VisionParams {
            image_size: v.image_size,
            model_name: "transformers".into(),
            select_layer: None,
            select_feature: None,
            width: Some(v.hidden_size),
            layers: Some(v.num_hidden_layers),
            heads: Some(v.num_attention_heads),
            mlp_ratio: Some(v.mlp_ratio),
            patch_size: Some(v.patch_size),
        };
        let mut vision = SiglipConfig::from_params(&params, file)?;
        if !(v.layer_norm_eps > 0.0) {
            return bad("layer_norm_eps must be positive".into());
        }
        vision.layer_norm_eps = v.layer_norm_eps;
        let q = &raw.vq_config;
        let gen_vision = VqConfig {
            codebook_size: q.num_embeddings,
            codebook_embed_dim: q.embed_dim,
            ch: q.base_channels,
            ch_mult: q.channel_multiplier.clone(),
            z_channels: q.latent_channels,
            num_res_blocks: q.num_res_blocks,
        }
        .validated(file)?;
        if q.double_latent || q.in_channels != 3 || q.out_channels != 3 {
            return Err(Error::config(
                file,
                "vq_config: double_latent and channels other than 3 are not supported",
            ));
        }
        let mlp = |depth, input_dim, n_embed| ProjectorParams {
            depth,
            input_dim,
            n_embed,
            projector_type: "mlp_gelu".into(),
        };
        Self {
            language,
            vision,
            aligner: mlp(v.depth, v.hidden_size, v.projection_dim),
            gen_vision,
            gen_aligner: mlp(q.num_hidden_layers, q.embed_dim, q.projection_dim),
            gen_head: GenHeadParams {
                image_token_embed: q.image_token_embed_dim,
                image_token_size: q.num_embeddings,
                n_embed: q.projection_dim,
            },
            layout: WeightLayout::Transformers,
        }
        .validated(file)
    }
}

fn default_three() -> usize {
    3
}
fn default_gelu() -> String {
    "gelu".into()
}
fn default_eps() -> f64 {
    1e-6
}

/// transformers' `JanusVisionConfig` (defaults: the SigLIP-L/16-384 of the real models).
#[derive(Debug, Clone, Deserialize)]
struct TransformersVision {
    #[serde(default = "default_vit_width")]
    hidden_size: usize,
    #[serde(default = "default_vit_layers")]
    num_hidden_layers: usize,
    #[serde(default = "default_vit_heads")]
    num_attention_heads: usize,
    #[serde(default = "default_three")]
    num_channels: usize,
    #[serde(default = "default_image_size")]
    image_size: usize,
    #[serde(default = "default_patch")]
    patch_size: usize,
    #[serde(default = "default_gelu")]
    hidden_act: String,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_mlp_ratio")]
    mlp_ratio: f64,
    #[serde(default = "default_true")]
    attention_bias: bool,
    #[serde(default = "default_projection_dim")]
    projection_dim: usize,
    #[serde(default)]
    use_qk_norm: bool,
    #[serde(default = "default_two")]
    depth: usize,
}

/// transformers' `JanusVQVAEConfig` (defaults: VQ-16 with 16384 codes).
#[derive(Debug, Clone, Deserialize)]
struct TransformersVq {
    #[serde(default = "default_codebook_dim")]
    embed_dim: usize,
    #[serde(default = "default_codebook_size")]
    num_embeddings: usize,
    #[serde(default)]
    double_latent: bool,
    #[serde(default = "default_z_channels")]
    latent_channels: usize,
    #[serde(default = "default_three")]
    in_channels: usize,
    #[serde(default = "default_three")]
    out_channels: usize,
    #[serde(default = "default_vq_ch")]
    base_channels: usize,
    #[serde(default = "default_ch_mult")]
    channel_multiplier: Vec<usize>,
    #[serde(default = "default_two")]
    num_res_blocks: usize,
    #[serde(default = "default_projection_dim")]
    projection_dim: usize,
    #[serde(default = "default_two")]
    num_hidden_layers: usize,
    #[serde(default = "default_projection_dim")]
    image_token_embed_dim: usize,
}

#[derive(Debug, Clone, Deserialize)]
struct RopeParameters {
    #[serde(default)]
    rope_type: Option<String>,
    #[serde(default)]
    rope_theta: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
struct TransformersText {
    #[serde(flatten)]
    llama: LlamaConfig,
    #[serde(default)]
    rope_parameters: Option<RopeParameters>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawTransformersConfig {
    text_config: TransformersText,
    vision_config: TransformersVision,
    vq_config: TransformersVq,
}

fn default_vit_width() -> usize {
    1024
}
fn default_vit_layers() -> usize {
    24
}
fn default_vit_heads() -> usize {
    16
}
fn default_patch() -> usize {
    16
}
fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_projection_dim() -> usize {
    2048
}
fn default_two() -> usize {
    2
}
fn default_codebook_dim() -> usize {
    8
}
fn default_codebook_size() -> usize {
    16384
}
fn default_z_channels() -> usize {
    256
}
fn default_vq_ch() -> usize {
    128
}
fn default_ch_mult() -> Vec<usize> {
    vec![1, 1, 2, 2, 4]
}
