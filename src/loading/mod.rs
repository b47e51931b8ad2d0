//! Checkpoint loading: configs (both layouts, JanusFlow, the SDXL VAE), weight files, the hub
//! cache and the pickle guard. Imports nothing above `error`.
pub mod config;
pub mod flow_config;
pub mod hub;
pub mod layout;
pub mod pickle_guard;
pub mod quant_cache;
pub mod vae_config;
pub mod weights;

pub use config::{
    CheckpointFiles, ImageProcessorConfig, JanusConfig, LlamaConfig, ProcessorConfig, SiglipConfig,
    VqConfig,
};
pub use flow_config::JanusFlowConfig;
pub use layout::WeightLayout;
pub use vae_config::VaeConfig;
pub use weights::Checkpoint;
