//! Generation loops and the shared sampler.
pub mod sampler;
pub mod text;

pub use sampler::{Sampler, SamplingConfig};
pub use text::{generate_text, TextGenerationParams};
