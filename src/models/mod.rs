//! Model definitions: encoders, the LLM, and the assembled Janus-Pro model.
pub mod activation;
pub mod attention;
pub mod conv;
pub mod cpu_gemm;
pub mod gen_head;
pub mod group_norm;
pub mod janus_pro;
pub mod linear;
pub mod llama;
pub mod projector;
pub mod siglip;
pub mod vq;
pub mod winograd;

pub use janus_pro::{JanusPro, LoadOptions};
