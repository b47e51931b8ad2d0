//! Model definitions: encoders, the LLM, and the assembled Janus-Pro model.
pub mod activation;
pub mod attention;
pub mod conv;
pub mod cpu_gemm;
pub mod depthwise;
pub mod gen_head;
pub mod group_norm;
pub mod janus_flow;
pub mod janus_pro;
pub mod linear;
pub mod llama;
pub mod masks;
pub mod multimodal;
pub mod projector;
pub mod sdxl_vae;
pub mod siglip;
pub mod uvit;
pub mod vq;
pub mod winograd;

pub use janus_flow::{FlowLoadOptions, JanusFlow};
pub use janus_pro::{JanusPro, LoadOptions};
