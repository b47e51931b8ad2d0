//! The image-token path of Janus-Pro: `gen_embed` → `gen_aligner` feeds sampled image tokens
//! back into the LLM, and `gen_head` turns final-norm hidden states into image-token logits.

use crate::kernels::activation::gelu_erf;
use candle_core::{Module, Result, Tensor};
use candle_nn::{embedding, Embedding, VarBuilder};

use crate::kernels::linear::{linear_stored, Linear, WeightStorage};

use super::projector::MlpProjector;
use crate::loading::JanusConfig;

pub struct ImageTokenHead {
    gen_embed: Embedding,
    gen_aligner: MlpProjector,
    output_mlp_projector: Linear,
    vision_head: Linear,
    pub vocab_size: usize,
}

impl ImageTokenHead {
    /// `vb` is the checkpoint root (keys `gen_embed.*`, `gen_aligner.*`, `gen_head.*`);
    /// `storage` says how the weight matrices of `gen_aligner` and `gen_head` are kept.
    pub fn new(cfg: &JanusConfig, vb: &VarBuilder, storage: WeightStorage) -> Result<Self> {
        let q = &cfg.gen_vision;
        let a = &cfg.gen_aligner;
        let h = &cfg.gen_head;
        // `gen_embed` is its own learned table (not the VQ codebook, and not normalised).
        let rows = cfg.gen_head.image_token_size;
        Ok(Self {
            gen_embed: embedding(rows, q.codebook_embed_dim, vb.pp("gen_embed"))?,
            gen_aligner: MlpProjector::new(
                a.input_dim,
                a.n_embed,
                a.depth,
                vb.pp("gen_aligner"),
                storage,
            )?,
            output_mlp_projector: linear_stored(
                h.n_embed,
                h.image_token_embed,
                true,
                vb.pp("gen_head.output_mlp_projector"),
                storage,
            )?,
            vision_head: linear_stored(
                h.image_token_embed,
                h.image_token_size,
                true,
                vb.pp("gen_head.vision_head"),
                storage,
            )?,
            vocab_size: rows,
        })
    }

    /// LLM input embeddings (…, hidden) of image-token ids.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        self.gen_aligner.forward(&self.gen_embed.forward(ids)?)
    }

    /// Image-token logits (…, image_token_size) of final-norm hidden states (…, hidden).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.vision_head
            .forward(&gelu_erf(&self.output_mlp_projector.forward(hidden)?)?)
    }
}
