//! The image-processor and processor configs beside `config.json`, and the files a
//! checkpoint folder must hold.

use super::*;

pub(super) fn default_image_size() -> usize {
    384
}
fn default_min_size() -> usize {
    14
}
fn default_half() -> Vec<f64> {
    vec![0.5, 0.5, 0.5]
}
fn default_rescale() -> f64 {
    1.0 / 255.0
}
pub(super) fn default_true() -> bool {
    true
}

/// `preprocessor_config.json` (`VLMImageProcessor`).
#[derive(Debug, Clone, Deserialize)]
pub struct ImageProcessorConfig {
    #[serde(default = "default_image_size")]
    pub image_size: usize,
    #[serde(default = "default_min_size")]
    pub min_size: usize,
    #[serde(default = "default_half")]
    pub image_mean: Vec<f64>,
    #[serde(default = "default_half")]
    pub image_std: Vec<f64>,
    #[serde(default = "default_rescale")]
    pub rescale_factor: f64,
    #[serde(default = "default_true")]
    pub do_normalize: bool,
    /// Defaults to `int(mean * 255)` per channel, as the official processor computes it.
    #[serde(default)]
    pub background_color: Option<Vec<i64>>,
    /// transformers' `JanusImageProcessor` gives the side as `size: {height, width}`.
    #[serde(default)]
    size: Option<HeightWidth>,
}

#[derive(Debug, Clone, Deserialize)]
struct HeightWidth {
    height: usize,
    width: usize,
}

impl ImageProcessorConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::validated(read_json(path)?, path)
    }

    /// Parse `preprocessor_config.json` text; `file` names it in errors.
    pub fn from_json(text: &str, file: &Path) -> Result<Self> {
        let cfg = serde_json::from_str(text).map_err(|e| Error::config(file, e.to_string()))?;
        Self::validated(cfg, file)
    }

    /// The image-processor settings transformers ≥ 5 nests in `processor_config.json`
    /// (`{"image_processor": {...}}`) instead of writing `preprocessor_config.json`.
    pub fn nested_in(processor_config: &Path) -> Result<Option<Self>> {
        if !processor_config.is_file() {
            return Ok(None);
        }
        let value: serde_json::Value = read_json(processor_config)?;
        match value.get("image_processor") {
            Some(v) => {
                let cfg = serde_json::from_value(v.clone()).map_err(|e| {
                    Error::config(processor_config, format!("image_processor: {e}"))
                })?;
                Self::validated(cfg, processor_config).map(Some)
            }
            None => Ok(None),
        }
    }

    fn validated(mut cfg: Self, path: &Path) -> Result<Self> {
        let bad = |msg: &str| Err(Error::config(path, msg.to_string()));
        if let Some(size) = &cfg.size {
            if size.height != size.width {
                return bad("size: height and width must be equal (Janus pads images to squares)");
            }
            cfg.image_size = size.height;
        }
        if cfg.image_mean.len() != 3 || cfg.image_std.len() != 3 {
            return bad("image_mean and image_std must have 3 values");
        }
        if cfg
            .image_std
            .iter()
            .any(|s| !(s.abs() > 0.0) || !s.is_finite())
            || cfg.image_mean.iter().any(|m| !m.is_finite())
        {
            return bad("image_std must be non-zero and finite, image_mean finite");
        }
        if cfg.image_size == 0 || !(cfg.rescale_factor.is_finite()) {
            return bad("image_size must be positive and rescale_factor finite");
        }
        if let Some(bg) = &cfg.background_color {
            if bg.len() != 3 || bg.iter().any(|c| !(0..=255).contains(c)) {
                return bad("background_color must be 3 values in 0..=255");
            }
        }
        Ok(cfg)
    }

    pub fn background(&self) -> [u8; 3] {
        match &self.background_color {
            Some(bg) => [bg[0] as u8, bg[1] as u8, bg[2] as u8],
            None => {
                let c = |m: f64| (m * 255.0).clamp(0.0, 255.0) as u8;
                [
                    c(self.image_mean[0]),
                    c(self.image_mean[1]),
                    c(self.image_mean[2]),
                ]
            }
        }
    }
}

fn default_image_tag() -> String {
    "<image_placeholder>".into()
}
fn default_image_start_tag() -> String {
    "<begin_of_image>".into()
}
fn default_image_end_tag() -> String {
    "<end_of_image>".into()
}
fn default_pad_tag() -> String {
    "<｜▁pad▁｜>".into()
}
fn default_image_gen_tag() -> String {
    "<｜begin▁of▁generation｜>".into()
}
fn default_sft_format() -> String {
    "deepseek".into()
}

/// `processor_config.json` (`VLChatProcessor`).
#[derive(Debug, Clone, Deserialize)]
pub struct ProcessorConfig {
    #[serde(default = "default_image_tag")]
    pub image_tag: String,
    #[serde(default = "default_image_start_tag")]
    pub image_start_tag: String,
    #[serde(default = "default_image_end_tag")]
    pub image_end_tag: String,
    #[serde(default = "default_pad_tag")]
    pub pad_tag: String,
    /// JanusFlow's generation tag (its processor adds the token when the tokenizer lacks it).
    #[serde(default = "default_image_gen_tag")]
    pub image_gen_tag: String,
    #[serde(default)]
    pub num_image_tokens: Option<usize>,
    #[serde(default = "default_sft_format")]
    pub sft_format: String,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("all fields have defaults")
    }
}

impl ProcessorConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::validated(read_json(path)?, path)
    }

    /// Parse `processor_config.json` text; `file` names it in errors.
    pub fn from_json(text: &str, file: &Path) -> Result<Self> {
        let cfg = serde_json::from_str(text).map_err(|e| Error::config(file, e.to_string()))?;
        Self::validated(cfg, file)
    }

    fn validated(cfg: Self, path: &Path) -> Result<Self> {
        if cfg.sft_format != "deepseek" {
            return Err(Error::config(
                path,
                format!(
                    "sft_format {:?} is not supported (only \"deepseek\")",
                    cfg.sft_format
                ),
            ));
        }
        Ok(cfg)
    }
}

/// The files of a checkpoint folder that are read besides the weights.
#[derive(Debug, Clone)]
pub struct CheckpointFiles {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub preprocessor_config: PathBuf,
    pub processor_config: PathBuf,
    pub tokenizer: PathBuf,
}

impl CheckpointFiles {
    pub fn in_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::not_found("model folder", dir));
        }
        let files = Self {
            dir: dir.to_path_buf(),
            config: dir.join("config.json"),
            preprocessor_config: dir.join("preprocessor_config.json"),
            processor_config: dir.join("processor_config.json"),
            tokenizer: dir.join("tokenizer.json"),
        };
        for (what, p) in [
            ("config.json", &files.config),
            ("tokenizer.json", &files.tokenizer),
        ] {
            if !p.is_file() {
                return Err(Error::not_found(format!("{what} of the checkpoint"), p));
            }
        }
        Ok(files)
    }
}
