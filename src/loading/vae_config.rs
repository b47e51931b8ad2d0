//! The diffusers `config.json` of the SDXL VAE (`AutoencoderKL`) that decodes JanusFlow's
//! latents: diffusers' defaults for missing fields, and the checks that make an unsupported
//! file fail at load with the field's name.

use std::path::Path;

use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};

const CLASS_NAME: &str = "AutoencoderKL";
const UP_BLOCK: &str = "UpDecoderBlock2D";

/// The diffusers `config.json` of an `AutoencoderKL`. Missing fields take diffusers' defaults;
/// fields that only the encoder uses are read but not needed for decoding.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VaeConfig {
    #[serde(rename = "_class_name", default)]
    pub class_name: Option<String>,
    #[serde(default = "three")]
    pub in_channels: usize,
    #[serde(default = "three")]
    pub out_channels: usize,
    #[serde(default = "four")]
    pub latent_channels: usize,
    #[serde(default = "default_block_out_channels")]
    pub block_out_channels: Vec<usize>,
    #[serde(default = "one")]
    pub layers_per_block: usize,
    #[serde(default = "thirty_two")]
    pub norm_num_groups: usize,
    #[serde(default = "default_scaling_factor")]
    pub scaling_factor: f64,
    /// `null` or absent → 0 (pipelines compute `z / scaling_factor + shift_factor`).
    #[serde(default, deserialize_with = "null_as_zero")]
    pub shift_factor: f64,
    #[serde(default = "silu")]
    pub act_fn: String,
    #[serde(default = "default_up_block_types")]
    pub up_block_types: Vec<String>,
    #[serde(default = "yes", deserialize_with = "null_as_true")]
    pub mid_block_add_attention: bool,
    /// diffusers pipelines run the VAE in f32 when the rest is f16; here f16 is refused.
    #[serde(default = "yes", deserialize_with = "null_as_true")]
    pub force_upcast: bool,
    #[serde(default = "yes", deserialize_with = "null_as_true")]
    pub use_quant_conv: bool,
    #[serde(default = "yes", deserialize_with = "null_as_true")]
    pub use_post_quant_conv: bool,
}

fn one() -> usize {
    1
}
fn three() -> usize {
    3
}
fn four() -> usize {
    4
}
fn thirty_two() -> usize {
    32
}
fn yes() -> bool {
    true
}
fn default_block_out_channels() -> Vec<usize> {
    vec![64]
}
fn default_scaling_factor() -> f64 {
    0.18215
}
fn silu() -> String {
    "silu".to_string()
}
fn default_up_block_types() -> Vec<String> {
    vec![UP_BLOCK.to_string()]
}
fn null_as_zero<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(0.0))
}
fn null_as_true<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(true))
}

impl VaeConfig {
    /// Read and validate a diffusers VAE `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let cfg: Self = super::config::read_json(path)?;
        cfg.validated(path)
    }

    /// Parse and validate `text`; `file` is only used in error messages.
    pub fn from_json(text: &str, file: &Path) -> Result<Self> {
        let cfg: Self =
            serde_json::from_str(text).map_err(|e| Error::config(file, e.to_string()))?;
        cfg.validated(file)
    }

    fn validated(self, file: &Path) -> Result<Self> {
        let err = |field: &str, msg: String| Err(Error::config(file, format!("{field}: {msg}")));
        if let Some(name) = &self.class_name {
            if name != CLASS_NAME {
                return err(
                    "_class_name",
                    format!("{name:?} is not supported (expected {CLASS_NAME:?}, the SDXL VAE)"),
                );
            }
        }
        // diffusers maps both names to nn.SiLU.
        if self.act_fn != "silu" && self.act_fn != "swish" {
            return err(
                "act_fn",
                format!("{:?} is not supported (expected \"silu\")", self.act_fn),
            );
        }
        if self.block_out_channels.is_empty() || self.block_out_channels.contains(&0) {
            return err(
                "block_out_channels",
                format!(
                    "{:?} must be a non-empty list of positive channel counts",
                    self.block_out_channels
                ),
            );
        }
        if self.up_block_types.len() != self.block_out_channels.len() {
            return err(
                "up_block_types",
                format!(
                    "{} entries, but block_out_channels has {}",
                    self.up_block_types.len(),
                    self.block_out_channels.len()
                ),
            );
        }
        if let Some(other) = self.up_block_types.iter().find(|t| *t != UP_BLOCK) {
            return err(
                "up_block_types",
                format!("{other:?} is not supported (expected {UP_BLOCK:?})"),
            );
        }
        if self.norm_num_groups == 0 {
            return err("norm_num_groups", "must be positive".into());
        }
        if let Some(c) = self
            .block_out_channels
            .iter()
            .find(|&&c| c % self.norm_num_groups != 0)
        {
            return err(
                "norm_num_groups",
                format!(
                    "{} does not divide block_out_channels entry {c}",
                    self.norm_num_groups
                ),
            );
        }
        if self.latent_channels == 0 {
            return err("latent_channels", "must be positive".into());
        }
        if self.out_channels == 0 {
            return err("out_channels", "must be positive".into());
        }
        if !self.scaling_factor.is_finite() || self.scaling_factor == 0.0 {
            return err(
                "scaling_factor",
                format!("{} must be finite and non-zero", self.scaling_factor),
            );
        }
        if !self.shift_factor.is_finite() {
            return err(
                "shift_factor",
                format!("{} must be finite", self.shift_factor),
            );
        }
        Ok(self)
    }
}
