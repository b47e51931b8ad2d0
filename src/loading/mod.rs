//! Checkpoint loading: configs and weights.
pub mod config;
pub mod pickle_guard;
pub mod weights;

pub use config::{
    CheckpointFiles, ImageProcessorConfig, JanusConfig, LlamaConfig, ProcessorConfig, SiglipConfig,
    VqConfig,
};
pub use weights::Checkpoint;
