//! Architectures only, each read like a candle-transformers model file: the LLaMA LLM and its
//! KV cache, SigLIP, the projectors, the image-token head, the VQ tokenizer/decoder, the U-ViT
//! encoder/decoder of JanusFlow and the SDXL VAE decoder.
pub mod gen_head;
pub mod kv_cache;
pub mod llama;
pub mod projector;
pub mod sdxl_vae;
pub mod siglip;
pub mod uvit;
pub mod vq;

pub use kv_cache::KvCache;
