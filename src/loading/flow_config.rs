//! `config.json` of JanusFlow (`janus/janusflow`'s `MultiModalityCausalLM`): `language_config`,
//! `vision_und_enc_config` (SigLIP), `vision_gen_enc_config` (`ShallowUViTEncoder`) and
//! `vision_gen_dec_config` (`ShallowUViTDecoder`), each `{cls, model_type, params}`.
//!
//! The official `__init__` hard-codes five sizes instead of reading them:
//! `vision_und_enc_aligner = Linear(1024, 2048)`, `beg_of_und_embed (1, 2048)`,
//! `vision_gen_enc_aligner = Linear(768, 2048)`, `vision_gen_dec_aligner_norm = RMSNorm(2048)`
//! and `vision_gen_dec_aligner = Linear(2048, 768)`. Here they are derived (SigLIP width → LLM
//! hidden, ConvNeXt width ↔ LLM hidden), which gives the same sizes for JanusFlow-1.3B and lets
//! smaller checkpoints load; the weight files' shapes are checked against them on load.

use std::path::Path;

use serde::Deserialize;

use super::config::{LlamaConfig, SiglipConfig, SubConfig, VisionParams};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Deserialize)]
struct RawJanusFlowConfig {
    language_config: LlamaConfig,
    vision_und_enc_config: SubConfig<VisionParams>,
    vision_gen_enc_config: SubConfig<UViTEncoderParams>,
    vision_gen_dec_config: SubConfig<UViTDecoderParams>,
}

/// A resolved JanusFlow configuration.
#[derive(Debug, Clone)]
pub struct JanusFlowConfig {
    pub language: LlamaConfig,
    /// The understanding encoder (`vision_und_enc_model`).
    pub vision: SiglipConfig,
    pub gen_enc: UViTEncoderParams,
    pub gen_dec: UViTDecoderParams,
}

impl JanusFlowConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_json(&super::config::read_config_text(path, "config.json")?, path)
    }

    pub fn from_json(text: &str, file: &Path) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::config(file, format!("not valid JSON: {e}")))?;
        match value.get("model_type").and_then(|v| v.as_str()) {
            None | Some("multi_modality") => {}
            Some(mt) => {
                return Err(Error::config(
                    file,
                    format!(
                    "model_type {mt:?} is not a JanusFlow checkpoint (expected \"multi_modality\")"
                ),
                ))
            }
        }
        if value.get("vision_und_enc_config").is_none() && value.get("vision_config").is_some() {
            return Err(Error::config(
                file,
                "this is a Janus / Janus-Pro config (it has vision_config, not vision_und_enc_config); \
                 load it with JanusPro",
            ));
        }
        let raw: RawJanusFlowConfig =
            serde_json::from_value(value).map_err(|e| Error::config(file, e.to_string()))?;
        for (which, cls, want) in [
            (
                "vision_und_enc_config",
                &raw.vision_und_enc_config.cls,
                "CLIPVisionTower",
            ),
            (
                "vision_gen_enc_config",
                &raw.vision_gen_enc_config.cls,
                "ShallowUViTEncoder",
            ),
            (
                "vision_gen_dec_config",
                &raw.vision_gen_dec_config.cls,
                "ShallowUViTDecoder",
            ),
        ] {
            if cls != want {
                return Err(Error::config(
                    file,
                    format!("{which}: cls {cls:?} is not supported (JanusFlow uses {want:?})"),
                ));
            }
        }
        let vision = SiglipConfig::from_params(&raw.vision_und_enc_config.params, file)?;
        Self {
            language: raw.language_config,
            vision,
            gen_enc: raw.vision_gen_enc_config.params,
            gen_dec: raw.vision_gen_dec_config.params,
        }
        .validated(file)
    }

    /// The LLM width, which every aligner maps to or from.
    pub fn hidden_size(&self) -> usize {
        self.language.hidden_size
    }

    /// Width C of the generation encoder's ConvNeXt blocks (768): the input of
    /// `vision_gen_enc_aligner` and the channels of the skip connection.
    pub fn gen_width(&self) -> usize {
        self.gen_enc.block_out_channels[0]
    }

    /// Channels of the latent the sampler integrates (4, the SDXL VAE's).
    pub fn latent_channels(&self) -> usize {
        self.gen_enc.input_channels
    }

    /// Latent pixels per LLM token along each axis (2: `in_conv` k2 s2, Unpatchify ×2).
    pub fn latent_patch(&self) -> usize {
        self.gen_enc.stride
    }

    fn validated(self, file: &Path) -> Result<Self> {
        self.language.validate(file)?;
        let h = self.language.hidden_size;
        let (enc, dec) = (&self.gen_enc, &self.gen_dec);
        let check = |ok: bool, msg: String| {
            if ok {
                Ok(())
            } else {
                Err(Error::config(file, msg))
            }
        };
        check(
            enc.block_out_channels.len() == 1 && dec.block_out_channels.len() == 1,
            format!(
                "vision_gen_enc/dec_config: block_out_channels {:?} / {:?}: only one level is \
                 supported (JanusFlow uses [768])",
                enc.block_out_channels, dec.block_out_channels
            ),
        )?;
        let c = enc.block_out_channels[0];
        check(
            c > 0 && dec.block_out_channels[0] == c,
            format!(
                "vision_gen_dec_config: block_out_channels {:?} must match the encoder's {:?} \
                 (the encoder output is the decoder's skip input)",
                dec.block_out_channels, enc.block_out_channels
            ),
        )?;
        check(
            enc.hidden_size == h && dec.hidden_size == h,
            format!(
                "vision_gen_enc/dec_config: hidden_size {} / {} must equal the LLM hidden size {h} \
                 (the time embedding is an LLM input)",
                enc.hidden_size, dec.hidden_size
            ),
        )?;
        check(
            dec.in_channels > 0,
            "vision_gen_dec_config: in_channels must be positive".into(),
        )?;
        let padding = enc
            .padding
            .unwrap_or(enc.kernel_size.saturating_sub(enc.stride));
        check(
            enc.kernel_size == 2 && enc.stride == 2 && padding == 0 && dec.upsamples == 1,
            format!(
                "vision_gen_enc/dec_config: kernel_size {}, stride {}, padding {padding}, upsamples {} \
                 are not supported (JanusFlow patchifies the latent 2×2: kernel_size 2, stride 2, \
                 padding 0, upsamples 1)",
                enc.kernel_size, enc.stride, dec.upsamples
            ),
        )?;
        check(
            enc.input_channels > 0 && dec.out_channels == enc.input_channels,
            format!(
                "vision_gen_enc_config input_channels {} and vision_gen_dec_config out_channels {} \
                 must be the (same) latent channel count",
                enc.input_channels, dec.out_channels
            ),
        )?;
        check(
            enc.norm_eps > 0.0 && dec.norm_eps > 0.0,
            "vision_gen_enc/dec_config: norm_eps must be positive".into(),
        )?;
        Ok(self)
    }
}

/// `vision_gen_enc_config.params` (defaults: the official constructor's). Unknown keys, such
/// as the real file's `elementwize_affine` typo and `num_extra_tensors`, are ignored, as they
/// are by the official code.
#[derive(Debug, Clone, Deserialize)]
pub struct UViTEncoderParams {
    #[serde(default = "default_enc_input_channels")]
    pub input_channels: usize,
    #[serde(default = "default_enc_stride")]
    pub stride: usize,
    #[serde(default = "default_enc_kernel_size")]
    pub kernel_size: usize,
    /// `None` means `kernel_size - stride` (the official `ceil(kernel_size - stride)`).
    #[serde(default)]
    pub padding: Option<usize>,
    #[serde(default = "default_block_out_channels")]
    pub block_out_channels: Vec<usize>,
    #[serde(default = "default_layers_in_middle")]
    pub layers_in_middle: usize,
    #[serde(default = "default_hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "default_true")]
    pub use_bias: bool,
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    #[serde(default = "default_true")]
    pub use_mid_block: bool,
}

/// `vision_gen_dec_config.params` (defaults: the official constructor's).
#[derive(Debug, Clone, Deserialize)]
pub struct UViTDecoderParams {
    #[serde(default = "default_dec_in_channels")]
    pub in_channels: usize,
    #[serde(default = "default_dec_out_channels")]
    pub out_channels: usize,
    #[serde(default = "default_block_out_channels")]
    pub block_out_channels: Vec<usize>,
    #[serde(default = "default_dec_upsamples")]
    pub upsamples: usize,
    #[serde(default = "default_layers_in_middle")]
    pub layers_in_middle: usize,
    #[serde(default = "default_hidden_size")]
    pub hidden_size: usize,
    #[serde(default = "default_true")]
    pub use_bias: bool,
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    #[serde(default = "default_true")]
    pub use_mid_block: bool,
}

fn default_enc_input_channels() -> usize {
    3
}
fn default_enc_stride() -> usize {
    4
}
fn default_enc_kernel_size() -> usize {
    7
}
fn default_block_out_channels() -> Vec<usize> {
    vec![768]
}
fn default_layers_in_middle() -> usize {
    2
}
fn default_hidden_size() -> usize {
    2048
}
fn default_true() -> bool {
    true
}
fn default_norm_eps() -> f64 {
    1e-6
}
fn default_dec_in_channels() -> usize {
    768
}
fn default_dec_out_channels() -> usize {
    3
}
fn default_dec_upsamples() -> usize {
    2
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tiny() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-janusflow/config.json")
    }

    #[test]
    fn tiny_fixture_config_resolves() {
        let cfg = JanusFlowConfig::from_file(&tiny()).unwrap();
        assert_eq!(cfg.hidden_size(), 64);
        assert_eq!(
            (
                cfg.vision.width,
                cfg.vision.layers,
                cfg.vision.num_patches()
            ),
            (32, 2, 16)
        );
        assert_eq!(
            (
                cfg.gen_width(),
                cfg.gen_dec.in_channels,
                cfg.latent_channels()
            ),
            (48, 48, 4)
        );
    }

    #[test]
    fn janusflow_1_3b_sizes() {
        // The real config's sub-configs (language_config and params verbatim, §2.3).
        let text = r#"{"model_type": "multi_modality",
          "language_config": {"hidden_size": 2048, "intermediate_size": 5632, "max_position_embeddings": 16384,
             "model_type": "llama", "num_attention_heads": 16, "num_hidden_layers": 24,
             "num_key_value_heads": 16, "torch_dtype": "bfloat16", "vocab_size": 102400},
          "vision_und_enc_config": {"cls": "CLIPVisionTower", "model_type": "vision_und_enc",
             "params": {"image_size": 384, "model_name": "siglip_large_patch16_384", "select_feature": "same", "select_layer": -1}},
          "vision_gen_enc_config": {"cls": "ShallowUViTEncoder", "model_type": "vision_gen_enc",
             "params": {"block_out_channels": [768], "elementwize_affine": true, "hidden_size": 2048,
                "input_channels": 4, "kernel_size": 2, "layers_in_middle": 2, "norm_eps": 1e-06,
                "num_extra_tensors": 5, "padding": 0, "stride": 2, "use_bias": true, "use_mid_block": true}},
          "vision_gen_dec_config": {"cls": "ShallowUViTDecoder", "model_type": "vision_gen_dec",
             "params": {"block_out_channels": [768], "elementwise_affine": true, "hidden_size": 2048,
                "in_channels": 768, "layers_in_middle": 2, "norm_eps": 1e-06, "out_channels": 4,
                "upsamples": 1, "use_bias": true, "use_mid_block": true}}}"#;
        let cfg = JanusFlowConfig::from_json(text, Path::new("config.json")).unwrap();
        assert_eq!(
            (
                cfg.vision.width,
                cfg.vision.layers,
                cfg.vision.num_patches()
            ),
            (1024, 24, 576)
        );
        assert_eq!(
            (cfg.hidden_size(), cfg.gen_width(), cfg.gen_dec.in_channels),
            (2048, 768, 768)
        );
        // A Janus-Pro config is pointed at JanusPro.
        let err = JanusFlowConfig::from_json(
            r#"{"language_config": {}, "vision_config": {}}"#,
            Path::new("c"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("JanusPro"), "{err}");
        // Mismatched widths are config errors.
        let bad = text.replace(r#""upsamples": 1"#, r#""upsamples": 2"#);
        let err = JanusFlowConfig::from_json(&bad, Path::new("c")).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err}");
        let bad = text
            .replace(
                r#""in_channels": 768"#,
                r#""in_channels": 768, "out_channels": 3"#,
            )
            .replace(r#""out_channels": 4,"#, "");
        let err = JanusFlowConfig::from_json(&bad, Path::new("c")).unwrap_err();
        assert!(err.to_string().contains("latent channel"), "{err}");
    }
}
