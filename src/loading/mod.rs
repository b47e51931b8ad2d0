//! Checkpoint loading: configs and weights.
pub mod config;
pub mod flow_config;
pub mod hub;
pub mod layout;
pub mod pickle_guard;
pub mod weights;

pub use config::{
    CheckpointFiles, ImageProcessorConfig, JanusConfig, LlamaConfig, ProcessorConfig, SiglipConfig,
    VqConfig,
};
pub use flow_config::JanusFlowConfig;
pub use layout::WeightLayout;
pub use weights::Checkpoint;
