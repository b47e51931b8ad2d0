//! Checkpoint loading: configs and weights.
pub mod config;
pub mod weights;

pub use config::{
    CheckpointFiles, ImageProcessorConfig, JanusConfig, LlamaConfig, ProcessorConfig, SiglipConfig,
    VqConfig,
};
pub use weights::Checkpoint;
