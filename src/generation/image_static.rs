//! Image-token decoding with fixed shapes: the graph-ready form of the CFG decode loop.
//!
//! After the prefill, every step runs the same launches on the same buffers: the last tokens,
//! the position and the step counter live in device tensors, RoPE rows are gathered by
//! `index_select`, keys and values are written into the cache at the position by `scatter_set`,
//! and attention covers the cache's whole capacity under a mask whose entry for the position is
//! opened at the start of the step. Nothing about a step is decided on the host, so on CUDA one
//! step can be captured as a graph and replayed for all the others (`JANUS_RS_DECODE=graph`).
//! With the host sampler (CPU, top-k/top-p) the step stops at the guided logits, the host draws,
//! and the tokens go back into the state.

use candle_core::{DType, Tensor};

use super::image::{guided_logits, sample_rows_with_noise, DecodeMode, Draw, OnStep};
use super::ImageGenerationParams;
use crate::error::Result;
use crate::models::gen_head::ImageTokenHead;
use crate::models::llama::{static_decode_mask, Llama, StaticStep};
use crate::models::KvCache;

pub(super) struct StaticImageDecode<'a> {
    llm: &'a Llama,
    head: &'a ImageTokenHead,
    n_images: usize,
    cfg_weight: f64,
    temperature: f64,
    /// (images,) u32: the tokens drawn by the last step, the input of the next.
    tokens: Tensor,
    /// (1,) u32: the cache position the next step writes.
    pos: Tensor,
    /// (1,) u32: the index of the next step's tokens in the tokens buffer.
    step: Tensor,
    one: Tensor,
    /// (rows,) u32: each row's left padding (its RoPE positions start after it).
    pads: Tensor,
    /// (rows,) u32: the image each CFG row belongs to (0, 0, 1, 1, …).
    row_image: Tensor,
    /// (rows, 1, 1, capacity) additive mask and the zeros written into it at the position.
    mask: Tensor,
    mask_open: Tensor,
    /// (images, vocab) f32 Gumbel noise of the next on-device draw, refilled before each step.
    noise: Option<Tensor>,
}

impl<'a> StaticImageDecode<'a> {
    /// The state after the prefill of `prompt_len` positions and the first draw (`first`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        llm: &'a Llama,
        head: &'a ImageTokenHead,
        cache: &KvCache,
        pads: &[usize],
        prompt_len: usize,
        first: &Tensor,
        params: &ImageGenerationParams,
        draw: &Draw,
    ) -> Result<Self> {
        let device = first.device();
        let n_rows = pads.len();
        let n_images = n_rows / 2;
        let dtype = llm.dtype();
        let u32s = |v: Vec<u32>| {
            let n = v.len();
            Tensor::from_vec(v, n, device)
        };
        let noise = if draw.on_device() && draw.temperature() != 0.0 {
            Some(Tensor::zeros(
                (n_images, head.vocab_size),
                DType::F32,
                device,
            )?)
        } else {
            None
        };
        Ok(Self {
            llm,
            head,
            n_images,
            cfg_weight: params.cfg_weight,
            temperature: params.temperature,
            tokens: first.copy()?,
            pos: u32s(vec![prompt_len as u32])?,
            step: u32s(vec![1])?,
            one: u32s(vec![1])?,
            pads: u32s(pads.iter().map(|&p| p as u32).collect())?,
            row_image: u32s((0..n_rows as u32).map(|r| r / 2).collect())?,
            mask: static_decode_mask(pads, prompt_len, cache.capacity(), dtype, device)?,
            mask_open: Tensor::zeros((n_rows, 1, 1, 1), dtype, device)?,
            noise,
        })
    }

    /// Decode steps 1..num_tokens (step 0 was drawn from the prefill).
    pub(super) fn run(
        &self,
        mode: DecodeMode,
        cache: &KvCache,
        draw: &mut Draw,
        num_tokens: usize,
        on_step: &mut OnStep,
    ) -> Result<()> {
        let device = self.tokens.device().clone();
        if !draw.on_device() {
            for step in 1..num_tokens {
                let guided = self.advance(cache)?;
                let tokens = draw.tokens(&guided, step)?;
                self.commit(&tokens, None)?;
                on_step(step + 1, num_tokens)?;
            }
            return Ok(());
        }
        let buffer = draw.device_buffer().expect("on-device draw").clone();
        if mode == DecodeMode::Graph && device.is_cuda() {
            return self.run_graph(cache, draw, &buffer, num_tokens, on_step);
        }
        for step in 1..num_tokens {
            self.refill_noise(draw)?;
            self.device_step(cache, &buffer)?;
            on_step(step + 1, num_tokens)?;
        }
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn run_graph(
        &self,
        cache: &KvCache,
        draw: &mut Draw,
        buffer: &Tensor,
        num_tokens: usize,
        on_step: &mut OnStep,
    ) -> Result<()> {
        let graph = super::cuda_graph::StepGraph::new(self.tokens.device())?;
        for step in 1..num_tokens {
            self.refill_noise(draw)?;
            graph.run(|| self.device_step(cache, buffer))?;
            on_step(step + 1, num_tokens)?;
        }
        Ok(())
    }

    #[cfg(not(feature = "cuda"))]
    fn run_graph(
        &self,
        _cache: &KvCache,
        _draw: &mut Draw,
        _buffer: &Tensor,
        _num_tokens: usize,
        _on_step: &mut OnStep,
    ) -> Result<()> {
        unreachable!("a CUDA device without the cuda feature")
    }

    fn refill_noise(&self, draw: &mut Draw) -> Result<()> {
        if let Some(noise) = &self.noise {
            let next = draw.next_noise(noise.dims2()?)?;
            noise.slice_set(&next, 0, 0)?;
        }
        Ok(())
    }

    /// One whole step on the device, from the last tokens to the next ones: what a graph holds.
    fn device_step(&self, cache: &KvCache, buffer: &Tensor) -> Result<()> {
        let guided = self.advance(cache)?;
        let tokens = match &self.noise {
            None => guided.argmax(candle_core::D::Minus1)?,
            Some(noise) => sample_rows_with_noise(&guided, self.temperature, noise)?,
        };
        self.commit(&tokens, Some(buffer))
    }

    /// Embed the last tokens, run the LLM one position at `pos` and return the guided logits
    /// (images, vocab) f32; `pos` moves on by one.
    fn advance(&self, cache: &KvCache) -> Result<Tensor> {
        let n_rows = self.pads.dim(0)?;
        let both = self
            .tokens
            .index_select(&self.row_image, 0)?
            .reshape((n_rows, 1))?;
        let x = self.head.embed(&both)?;
        let positions = self.pos.broadcast_as(n_rows)?.sub(&self.pads)?;
        let (cos, sin) = self.llm.rope_rows(&positions)?;
        let (kv_heads, head_dim) = (self.llm.num_kv_heads(), self.llm.config().head_dim());
        let at_pos = |shape: (usize, usize, usize, usize)| {
            self.pos
                .reshape((1, 1, 1, 1))?
                .broadcast_as(shape)?
                .contiguous()
        };
        self.mask
            .scatter_set(&at_pos((n_rows, 1, 1, 1))?, &self.mask_open, 3)?;
        let step = StaticStep {
            cos,
            sin,
            write_index: at_pos((n_rows, kv_heads, 1, head_dim))?,
            mask: self.mask.clone(),
        };
        let hidden = self.llm.forward_static_step(&x, cache, &step)?;
        self.pos.slice_set(&self.pos.add(&self.one)?, 0, 0)?;
        let logits = self.head.logits(&hidden.squeeze(1)?)?;
        guided_logits(&logits, self.n_images, self.cfg_weight)
    }

    /// Make `tokens` (images,) u32 the input of the next step and, on the device, store them in
    /// the tokens buffer at `step`.
    fn commit(&self, tokens: &Tensor, buffer: Option<&Tensor>) -> Result<()> {
        self.tokens.slice_set(tokens, 0, 0)?;
        if let Some(buffer) = buffer {
            let at_step = self
                .step
                .reshape((1, 1))?
                .broadcast_as((self.n_images, 1))?
                .contiguous()?;
            buffer.scatter_set(&at_step, &tokens.unsqueeze(1)?.contiguous()?, 1)?;
        }
        self.step.slice_set(&self.step.add(&self.one)?, 0, 0)?;
        Ok(())
    }
}
