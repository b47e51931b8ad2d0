//! Generation loops and the shared sampler.
#[cfg(feature = "cuda")]
mod cuda_graph;
pub mod flow;
pub mod image;
mod image_static;
pub mod limits;
pub mod postprocess;
pub mod sampler;
pub mod text;

pub use image::{generate_image_tokens, ImageGenerationParams, PromptImages};
pub use sampler::{Sampler, SamplingConfig};
pub use text::{generate_text, TextGenerationParams};
