//! janus-rs: DeepSeek's Janus family in Rust with candle.
//!
//! The crate follows the pipeline: [`loading`] (configs, weights) → [`preprocess`] (images,
//! chat template, tokenizer) → [`models`] (SigLIP, projectors, LLM) → [`generation`]
//! (sampler, decoding loops) → `python` (the pyo3 bindings, behind the `python` feature).

pub mod device;
pub mod error;
pub mod fuzzing;
pub mod generation;
pub mod loading;
pub mod models;
pub mod preprocess;
pub mod profile;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Result};
pub use models::{JanusPro, LoadOptions};
