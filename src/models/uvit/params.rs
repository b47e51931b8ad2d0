//! `vision_gen_enc_config` / `vision_gen_dec_config` params, with the official defaults.

use super::*;

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
