//! The assembled models users load: Janus / Janus-Pro and JanusFlow, with the parts they share
//! around the networks (a checkpoint's processing files, splicing image rows into a prompt).
pub mod janus_flow;
pub mod janus_pro;
pub mod understanding;

pub use janus_flow::{FlowLoadOptions, JanusFlow};
pub use janus_pro::{JanusPro, LoadOptions};
