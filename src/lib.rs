//! janus-rs: DeepSeek's Janus family in Rust with candle.
//!
//! The folders follow the pipeline, and imports only point down it (checked by
//! `scripts/check_layers.py`):
//!
//! - [`loading`]: configs (both checkpoint layouts, JanusFlow, the SDXL VAE), weight files, hub;
//! - [`kernels`]: CPU compute (GEMM, convolutions, GroupNorm, attention, `Linear`);
//! - [`models`]: architectures only (LLaMA + KV cache, SigLIP, projectors, VQ, U-ViT, VAE);
//! - [`preprocess`]: images, the chat template, the tokenizer;
//! - [`generation`]: the sampler and the loops (text, CFG image tokens, rectified flow);
//! - [`pipelines`]: the assembled [`JanusPro`] and [`JanusFlow`];
//! - `python`: the pyo3 bindings (behind the `python` feature).
//!
//! [`error`], [`profile`], [`device`], [`threads`] and [`memory`] (the allocator) sit under all
//! of them.

pub mod device;
pub mod error;
pub mod fuzzing;
pub mod generation;
pub mod kernels;
pub mod loading;
pub mod memory;
pub mod models;
pub mod pipelines;
pub mod preprocess;
pub mod profile;
pub mod threads;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Result};

#[global_allocator]
static ALLOCATOR: memory::ReusingAllocator = memory::ReusingAllocator;
pub use pipelines::{FlowLoadOptions, JanusFlow, JanusPro, LoadOptions};
