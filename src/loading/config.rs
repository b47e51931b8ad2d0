//! `config.json` in the official deepseek-ai `multi_modality` format, plus the image and
//! processor configs that sit beside it.
//!
//! Sub-configs are `{cls, model_type, params}` objects. Official checkpoints name fixed
//! presets in `params` (`siglip_large_patch16_384`, `VQ-16`); explicit sizes in the same
//! `params` object override the preset, so tiny test checkpoints take the same code path.

// `!(x > 0.0)` is used on purpose: unlike `x <= 0.0` it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::layout::WeightLayout;
use crate::error::{Error, Result};

mod processor;
mod transformers;

pub use processor::{CheckpointFiles, ImageProcessorConfig, ProcessorConfig};

/// Read and parse a JSON file into `T`, with errors that name the file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_config_text(path, "config file")?;
    serde_json::from_str(&text).map_err(|e| Error::config(path, e.to_string()))
}

/// The text of a config file; a missing one is `NotFound` as `what`.
pub fn read_config_text(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::not_found(what, path),
        _ => Error::config(path, format!("cannot read: {e}")),
    })
}

fn default_hidden_size() -> usize {
    4096
}
fn default_intermediate_size() -> usize {
    11008
}
fn default_num_attention_heads() -> usize {
    32
}
fn default_num_hidden_layers() -> usize {
    32
}
fn default_max_position_embeddings() -> usize {
    2048
}
fn default_vocab_size() -> usize {
    32000
}
fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10000.0
}
fn default_hidden_act() -> String {
    "silu".into()
}

/// The LLM's `LlamaConfig`. Absent fields take the transformers `LlamaConfig` defaults,
/// which the real Janus-Pro-7B config relies on (it sets only layers, context and vocab).
#[derive(Debug, Clone, Deserialize)]
pub struct LlamaConfig {
    #[serde(default = "default_hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "default_intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "default_num_attention_heads")]
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default = "default_num_hidden_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default)]
    pub tie_word_embeddings: bool,
}

impl LlamaConfig {
    pub fn num_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    pub(crate) fn validate(&self, file: &Path) -> Result<()> {
        let bad = |msg: String| Err(Error::config(file, format!("language_config: {msg}")));
        for (name, v) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_attention_heads", self.num_attention_heads),
            ("num_hidden_layers", self.num_hidden_layers),
            ("max_position_embeddings", self.max_position_embeddings),
            ("vocab_size", self.vocab_size),
            ("num_key_value_heads", self.num_kv_heads()),
        ] {
            if v == 0 {
                return bad(format!("{name} must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad(format!(
                "head dimension {} must be even for RoPE",
                self.head_dim()
            ));
        }
        if !self.num_attention_heads.is_multiple_of(self.num_kv_heads()) {
            return bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.num_kv_heads()
            ));
        }
        if self.hidden_act != "silu" {
            return bad(format!(
                "hidden_act {:?} is not supported (Janus uses \"silu\")",
                self.hidden_act
            ));
        }
        if matches!(&self.rope_scaling, Some(v) if !v.is_null()) {
            return bad("rope_scaling is not supported (Janus checkpoints use none)".into());
        }
        if self.attention_bias || self.mlp_bias {
            return bad("attention_bias/mlp_bias are not supported (Janus uses no biases)".into());
        }
        if !(self.rms_norm_eps > 0.0) || !(self.rope_theta > 0.0) {
            return bad("rms_norm_eps and rope_theta must be positive".into());
        }
        Ok(())
    }
}

/// A `{cls, model_type, params}` sub-config.
#[derive(Debug, Clone, Deserialize)]
pub struct SubConfig<P> {
    pub cls: String,
    #[serde(default)]
    pub model_type: Option<String>,
    pub params: P,
}

/// `vision_config.params` (SigLIP). Sizes come from `model_name` unless given explicitly.
#[derive(Debug, Clone, Deserialize)]
pub struct VisionParams {
    pub image_size: usize,
    pub model_name: String,
    #[serde(default)]
    pub select_layer: Option<i64>,
    #[serde(default)]
    pub select_feature: Option<String>,
    pub width: Option<usize>,
    pub layers: Option<usize>,
    pub heads: Option<usize>,
    pub mlp_ratio: Option<f64>,
    pub patch_size: Option<usize>,
}

/// Resolved SigLIP ViT sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct SiglipConfig {
    pub image_size: usize,
    pub patch_size: usize,
    pub width: usize,
    /// Number of transformer blocks actually built (after `select_layer`).
    pub layers: usize,
    pub heads: usize,
    pub mlp_dim: usize,
    pub layer_norm_eps: f64,
}

impl SiglipConfig {
    pub fn num_patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }

    pub(crate) fn from_params(p: &VisionParams, file: &Path) -> Result<Self> {
        // (width, layers, heads, mlp_ratio, patch) of the official `siglip_vit.py` table.
        let preset = match p.model_name.as_str() {
            "siglip_large_patch16_384" | "siglip_large_patch16_256" => {
                Some((1024, 24, 16, 4.0, 16))
            }
            "siglip_so400m_patch14_384" | "siglip_so400m_patch14_224" => {
                Some((1152, 27, 16, 3.7362, 14))
            }
            _ => None,
        };
        let explicit = (p.width, p.layers, p.heads, p.mlp_ratio, p.patch_size);
        let (width, layers, heads, mlp_ratio, patch) = match (preset, explicit) {
            (_, (Some(w), Some(l), Some(h), Some(m), Some(ps))) => (w, l, h, m, ps),
            (Some((w, l, h, m, ps)), _) => (
                p.width.unwrap_or(w),
                p.layers.unwrap_or(l),
                p.heads.unwrap_or(h),
                p.mlp_ratio.unwrap_or(m),
                p.patch_size.unwrap_or(ps),
            ),
            (None, _) => {
                return Err(Error::config(
                    file,
                    format!(
                        "vision_config: unknown SigLIP model_name {:?} (known: siglip_large_patch16_384, \
                         siglip_large_patch16_256, siglip_so400m_patch14_384); give width, layers, heads, \
                         mlp_ratio and patch_size explicitly in params",
                        p.model_name
                    ),
                ))
            }
        };
        if width == 0
            || layers == 0
            || heads == 0
            || patch == 0
            || !(mlp_ratio > 0.0)
            || width % heads != 0
        {
            return Err(Error::config(
                file,
                format!("vision_config: unusable SigLIP sizes width={width} layers={layers} heads={heads} mlp_ratio={mlp_ratio} patch_size={patch}"),
            ));
        }
        if p.image_size == 0 || !p.image_size.is_multiple_of(patch) {
            return Err(Error::config(
                file,
                format!(
                    "vision_config: image_size {} is not a positive multiple of patch_size {patch}",
                    p.image_size
                ),
            ));
        }
        if let Some(f) = &p.select_feature {
            if f != "same" && f != "patch" {
                return Err(Error::config(
                    file,
                    format!("vision_config: select_feature {f:?} is not supported"),
                ));
            }
        }
        // Official `create_siglip_vit`: the tower is truncated at construction.
        let select_layer = p.select_layer.unwrap_or(-1);
        let built = if select_layer <= 0 {
            (layers as i64 + select_layer + 1).min(layers as i64)
        } else {
            select_layer.min(layers as i64)
        };
        if built <= 0 {
            return Err(Error::config(
                file,
                format!("vision_config: select_layer {select_layer} leaves no layers"),
            ));
        }
        Ok(Self {
            image_size: p.image_size,
            patch_size: patch,
            width,
            layers: built as usize,
            heads,
            mlp_dim: (width as f64 * mlp_ratio) as usize,
            layer_norm_eps: 1e-6,
        })
    }
}

/// `aligner_config.params` / `gen_aligner_config.params` (`MlpProjector`).
#[derive(Debug, Clone, Deserialize)]
pub struct ProjectorParams {
    #[serde(default = "default_depth")]
    pub depth: usize,
    pub input_dim: usize,
    pub n_embed: usize,
    pub projector_type: String,
}
fn default_depth() -> usize {
    1
}

impl ProjectorParams {
    fn validate(&self, which: &str, file: &Path) -> Result<()> {
        if self.projector_type != "mlp_gelu" {
            return Err(Error::config(
                file,
                format!(
                    "{which}: projector_type {:?} is not supported (Janus uses \"mlp_gelu\")",
                    self.projector_type
                ),
            ));
        }
        if self.depth == 0 || self.input_dim == 0 || self.n_embed == 0 {
            return Err(Error::config(
                file,
                format!("{which}: depth, input_dim and n_embed must be positive"),
            ));
        }
        Ok(())
    }
}

/// `gen_vision_config.params`; sizes beyond the token table come from the `VQ-16` preset.
#[derive(Debug, Clone, Deserialize)]
pub struct GenVisionParams {
    pub image_token_size: usize,
    pub n_embed: usize,
    pub ch: Option<usize>,
    pub ch_mult: Option<Vec<usize>>,
    pub z_channels: Option<usize>,
    pub num_res_blocks: Option<usize>,
    pub codebook_size: Option<usize>,
}

/// Resolved LlamaGen VQ model sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct VqConfig {
    pub codebook_size: usize,
    pub codebook_embed_dim: usize,
    pub ch: usize,
    pub ch_mult: Vec<usize>,
    pub z_channels: usize,
    pub num_res_blocks: usize,
}

impl VqConfig {
    fn from_sub(sub: &SubConfig<GenVisionParams>, file: &Path) -> Result<Self> {
        if sub.cls != "VQ-16" {
            return Err(Error::config(
                file,
                format!(
                    "gen_vision_config: cls {:?} is not supported (Janus uses \"VQ-16\")",
                    sub.cls
                ),
            ));
        }
        let p = &sub.params;
        Self {
            codebook_size: p.codebook_size.unwrap_or(p.image_token_size),
            codebook_embed_dim: p.n_embed,
            ch: p.ch.unwrap_or(128),
            ch_mult: p.ch_mult.clone().unwrap_or_else(|| vec![1, 1, 2, 2, 4]),
            z_channels: p.z_channels.unwrap_or(256),
            num_res_blocks: p.num_res_blocks.unwrap_or(2),
        }
        .validated(file)
    }

    fn validated(self, file: &Path) -> Result<Self> {
        let cfg = self;
        if cfg.codebook_size == 0
            || cfg.codebook_embed_dim == 0
            || cfg.ch == 0
            || cfg.ch_mult.is_empty()
            || cfg.ch_mult.contains(&0)
            || cfg.z_channels == 0
            || cfg.num_res_blocks == 0
        {
            return Err(Error::config(
                file,
                format!("gen_vision_config: unusable VQ sizes {cfg:?}"),
            ));
        }
        Ok(cfg)
    }

    /// Spatial down-sampling factor of the encoder (16 for VQ-16).
    pub fn downsample(&self) -> usize {
        1 << (self.ch_mult.len() - 1)
    }
}

/// `gen_head_config.params` (`vision_head`).
#[derive(Debug, Clone, Deserialize)]
pub struct GenHeadParams {
    pub image_token_embed: usize,
    pub image_token_size: usize,
    pub n_embed: usize,
}

#[derive(Debug, Clone, Deserialize)]
struct RawJanusConfig {
    #[serde(default)]
    model_type: Option<String>,
    language_config: LlamaConfig,
    vision_config: SubConfig<VisionParams>,
    aligner_config: SubConfig<ProjectorParams>,
    gen_vision_config: SubConfig<GenVisionParams>,
    gen_aligner_config: SubConfig<ProjectorParams>,
    gen_head_config: SubConfig<GenHeadParams>,
}

/// A resolved Janus / Janus-Pro configuration.
#[derive(Debug, Clone)]
pub struct JanusConfig {
    pub language: LlamaConfig,
    pub vision: SiglipConfig,
    pub aligner: ProjectorParams,
    pub gen_vision: VqConfig,
    pub gen_aligner: ProjectorParams,
    pub gen_head: GenHeadParams,
    /// How the checkpoint names its tensors.
    pub layout: WeightLayout,
}

impl JanusConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_json(&read_config_text(path, "config.json")?, path)
    }

    pub fn from_json(text: &str, file: &Path) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::config(file, format!("not valid JSON: {e}")))?;
        match value.get("model_type").and_then(|v| v.as_str()) {
            None | Some("multi_modality") => {}
            Some("janus") => return Self::from_transformers(value, file),
            Some(mt) => {
                return Err(Error::config(
                    file,
                    format!(
                        "model_type {mt:?} is not a Janus checkpoint (expected \"multi_modality\", \
                         the deepseek-ai layout, or \"janus\", the transformers layout)"
                    ),
                ))
            }
        }
        if value.get("vision_und_enc_config").is_some() {
            return Err(Error::config(
                file,
                "this is a JanusFlow config; JanusPro cannot load it: use \
                 `janus_rs.JanusFlow.from_pretrained(path, vae=...)` (CLI: --vae)",
            ));
        }
        let raw: RawJanusConfig =
            serde_json::from_value(value).map_err(|e| Error::config(file, e.to_string()))?;
        let _ = raw.model_type;
        if raw.vision_config.cls != "CLIPVisionTower" {
            return Err(Error::config(
                file,
                format!(
                    "vision_config: cls {:?} is not supported (Janus uses \"CLIPVisionTower\")",
                    raw.vision_config.cls
                ),
            ));
        }
        let vision = SiglipConfig::from_params(&raw.vision_config.params, file)?;
        let gen_vision = VqConfig::from_sub(&raw.gen_vision_config, file)?;
        Self {
            language: raw.language_config,
            vision,
            aligner: raw.aligner_config.params,
            gen_vision,
            gen_aligner: raw.gen_aligner_config.params,
            gen_head: raw.gen_head_config.params,
            layout: WeightLayout::Official,
        }
        .validated(file)
    }

    /// Checks that the parts fit together (the aligners map the right widths, ...).
    fn validated(self, file: &Path) -> Result<Self> {
        self.language.validate(file)?;
        self.aligner.validate("aligner_config", file)?;
        self.gen_aligner.validate("gen_aligner_config", file)?;
        let (vision, gen_vision) = (&self.vision, &self.gen_vision);
        let h = self.language.hidden_size;
        let check = |ok: bool, msg: String| {
            if ok {
                Ok(())
            } else {
                Err(Error::config(file, msg))
            }
        };
        check(
            self.aligner.input_dim == vision.width && self.aligner.n_embed == h,
            format!(
                "aligner_config maps {} -> {} but the vision width is {} and the LLM hidden size is {h}",
                self.aligner.input_dim, self.aligner.n_embed, vision.width
            ),
        )?;
        check(
            self.gen_aligner.input_dim == gen_vision.codebook_embed_dim
                && self.gen_aligner.n_embed == h,
            format!(
                "gen_aligner_config maps {} -> {} but gen_vision n_embed is {} and the LLM hidden size is {h}",
                self.gen_aligner.input_dim, self.gen_aligner.n_embed, gen_vision.codebook_embed_dim
            ),
        )?;
        let gh = &self.gen_head;
        check(
            gh.n_embed == h && gh.image_token_embed == h && gh.image_token_size > 0,
            format!("gen_head_config sizes {gh:?} do not match the LLM hidden size {h}"),
        )?;
        check(
            gh.image_token_size == gen_vision.codebook_size,
            format!(
                "gen_head_config predicts {} image tokens but the VQ codebook has {}",
                gh.image_token_size, gen_vision.codebook_size
            ),
        )?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests;
