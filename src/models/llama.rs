//! The LLaMA-architecture LLM of the Janus family (`language_model.*`, HF `LlamaForCausalLM`
//! layout): RMSNorm, rotate-half RoPE, SiLU-gated MLP, untied `lm_head`, and a pre-allocated
//! KV cache. It takes input embeddings, so image features can be spliced in, and returns the
//! final-norm hidden states; `lm_head` (text) and `gen_head` (image tokens) are applied by
//! the caller.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{rms_norm, Embedding, RmsNorm, VarBuilder};

use crate::kernels::activation::silu_mul;
use crate::kernels::attention::{attention, causal_mask, Mask};
use crate::kernels::linear::{linear_stored, Linear, WeightStorage};
pub use crate::kernels::masks::{causal_mask_hiding_keys, static_decode_mask};
use crate::kernels::masks::{pad_keys_mask, padded_causal_mask};

use super::kv_cache::KvCache;
use crate::loading::quant_cache::QuantizedWeights;
use crate::loading::LlamaConfig;

/// A first prefill of more tokens than this over several rows runs in groups of rows of about
/// this many tokens each.
const PREFILL_GROUP_TOKENS: usize = 5000;

/// What every layer's attention of one forward hides.
#[derive(Clone, Copy)]
enum LayerMask<'a> {
    /// Plain causal attention over the cache.
    Causal,
    /// Causal, each row's left padding hidden (the fused CPU attention skips it).
    Padded(&'a [usize]),
    /// An additive mask built by the caller.
    Tensor(&'a Tensor),
}

/// RoPE tables for every position, computed once.
struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    fn new(cfg: &LlamaConfig, dtype: DType, dev: &Device) -> Result<Self> {
        let dim = cfg.head_dim();
        // As transformers computes them: inv_freq = 1 / theta^(2i/dim) and angles in f32.
        let inv_freq: Vec<f32> = (0..dim / 2)
            .map(|i| 1.0 / (cfg.rope_theta as f32).powf((2 * i) as f32 / dim as f32))
            .collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, dim / 2), dev)?;
        let positions = Tensor::arange(0u32, cfg.max_position_embeddings as u32, dev)?
            .to_dtype(DType::F32)?
            .reshape((cfg.max_position_embeddings, 1))?;
        let freqs = positions.matmul(&inv_freq)?;
        Ok(Self {
            cos: freqs.cos()?.to_dtype(dtype)?,
            sin: freqs.sin()?.to_dtype(dtype)?,
        })
    }
}

/// The query/key/value projections. On GPUs, with multi-head attention (every Janus model), one
/// fused `q|k|v` product whose output one copy rearranges into three contiguous (b, heads, t,
/// head_dim) tensors: one GEMM and one copy instead of three GEMMs (and three copies when t > 1).
/// On CPU the three products: fusing measured the same per step there (full-size 1B, f32) and
/// costs a copy of the weights at load.
enum QkvProj {
    Fused(Linear),
    Separate { q: Linear, k: Linear, v: Linear },
}

struct Attention {
    qkv: QkvProj,
    o_proj: Linear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(cfg: &LlamaConfig, vb: VarBuilder, opts: LoadOpts) -> Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim());
        let (heads, kv_heads) = (cfg.num_attention_heads, cfg.num_kv_heads());
        let linear = |i, o, name| projection(i, o, vb.pp(name), opts);
        let q = linear(h, heads * hd, "q_proj")?;
        let k = linear(h, kv_heads * hd, "k_proj")?;
        let v = linear(h, kv_heads * hd, "v_proj")?;
        let qkv = if opts.fuse && heads == kv_heads {
            QkvProj::Fused(Linear::concat_outputs(&[q, k, v])?)
        } else {
            QkvProj::Separate { q, k, v }
        };
        Ok(Self {
            qkv,
            o_proj: linear(heads * hd, h, "o_proj")?,
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim: hd,
        })
    }

    /// q (b, heads, t, head_dim) and k, v (b, kv_heads, t, head_dim), contiguous, before RoPE.
    fn project(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (b, t, _) = x.dims3()?;
        match &self.qkv {
            QkvProj::Fused(qkv) => {
                let y = qkv
                    .forward(x)?
                    .reshape((b, t, 3, self.num_heads, self.head_dim))?
                    .permute((2, 0, 3, 1, 4))?
                    .contiguous()?;
                Ok((y.get(0)?, y.get(1)?, y.get(2)?))
            }
            QkvProj::Separate { q, k, v } => {
                let split = |y: Tensor, heads: usize| {
                    y.reshape((b, t, heads, self.head_dim))?
                        .transpose(1, 2)?
                        .contiguous()
                };
                Ok((
                    split(q.forward(x)?, self.num_heads)?,
                    split(k.forward(x)?, self.num_kv_heads)?,
                    split(v.forward(x)?, self.num_kv_heads)?,
                ))
            }
        }
    }

    fn forward(
        &self,
        x: &Tensor,
        rotary: (&Tensor, &Tensor),
        cache: &mut candle_nn::kv_cache::KvCache,
        mask: LayerMask,
    ) -> Result<Tensor> {
        let (q, k, v) = self.project(x)?;
        let (cos, sin) = rotary;
        let q = candle_nn::rotary_emb::rope(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&k, cos, sin)?;
        let past = cache.current_seq_len();
        let (k, v) = cache.append(&k, &v)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let mask = match mask {
            LayerMask::Causal => Mask::Causal { past },
            LayerMask::Padded(pads) => Mask::PaddedCausal { past, pads },
            LayerMask::Tensor(m) => Mask::Additive(m),
        };
        let out = attention(&q, &k, &v, scale, mask)?;
        self.o_proj.forward(&out)
    }
}

impl Attention {
    /// One decode step of fixed shapes for [`Llama::forward_static_step`]: RoPE rows and the
    /// cache position come from device tensors, keys and values are written into the cache's
    /// full buffers with `scatter_set`, and attention runs over the whole capacity under `mask`.
    fn forward_static(
        &self,
        x: &Tensor,
        step: &StaticStep,
        cache: &candle_nn::kv_cache::KvCache,
    ) -> Result<Tensor> {
        let (q, k, v) = self.project(x)?;
        let q = candle_nn::rotary_emb::rope(&q, &step.cos, &step.sin)?;
        let k = candle_nn::rotary_emb::rope(&k, &step.cos, &step.sin)?;
        let (Some(k_all), Some(v_all)) = (cache.k_cache().all_data(), cache.v_cache().all_data())
        else {
            candle_core::bail!("a static decode step needs a cache filled by a prefill")
        };
        k_all.scatter_set(&step.write_index, &k, 2)?;
        v_all.scatter_set(&step.write_index, &v, 2)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let out = attention(&q, k_all, v_all, scale, Mask::Additive(&step.mask))?;
        self.o_proj.forward(&out)
    }
}

/// The device-side inputs of one fixed-shape decode step ([`Llama::forward_static_step`]).
pub struct StaticStep {
    /// RoPE tables at each row's position, (rows, 1, head_dim / 2).
    pub cos: Tensor,
    pub sin: Tensor,
    /// (rows, kv_heads, 1, head_dim) u32, every entry the cache position being written.
    pub write_index: Tensor,
    /// Additive mask over the cache's whole capacity, (rows, 1, 1, capacity).
    pub mask: Tensor,
}

/// SiLU-gated MLP. On GPUs `gate|up` is one fused product (one GEMM instead of two; the halves
/// are read as strided views of its output); on CPU two products (see [`QkvProj`]).
enum GateUp {
    Fused {
        gate_up: Linear,
        intermediate: usize,
    },
    Separate {
        gate: Linear,
        up: Linear,
    },
}

struct Mlp {
    gate_up: GateUp,
    down_proj: Linear,
}

impl Mlp {
    fn new(cfg: &LlamaConfig, vb: VarBuilder, opts: LoadOpts) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let linear = |i, o, name| projection(i, o, vb.pp(name), opts);
        let gate = linear(h, i, "gate_proj")?;
        let up = linear(h, i, "up_proj")?;
        let gate_up = if opts.fuse {
            GateUp::Fused {
                gate_up: Linear::concat_outputs(&[gate, up])?,
                intermediate: i,
            }
        } else {
            GateUp::Separate { gate, up }
        };
        Ok(Self {
            gate_up,
            down_proj: linear(i, h, "down_proj")?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gated = match &self.gate_up {
            GateUp::Fused {
                gate_up,
                intermediate,
            } => {
                let y = gate_up.forward(x)?;
                let last = y.rank() - 1;
                let gate = y.narrow(last, 0, *intermediate)?;
                silu_mul(&gate, &y.narrow(last, *intermediate, *intermediate)?)?
            }
            GateUp::Separate { gate, up } => silu_mul(&gate.forward(x)?, &up.forward(x)?)?,
        };
        self.down_proj.forward(&gated)
    }
}

struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl DecoderLayer {
    fn new(cfg: &LlamaConfig, vb: VarBuilder, opts: LoadOpts) -> Result<Self> {
        Ok(Self {
            input_layernorm: rms_norm(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("input_layernorm"))?,
            self_attn: Attention::new(cfg, vb.pp("self_attn"), opts)?,
            post_attention_layernorm: rms_norm(
                cfg.hidden_size,
                cfg.rms_norm_eps,
                vb.pp("post_attention_layernorm"),
            )?,
            mlp: Mlp::new(cfg, vb.pp("mlp"), opts)?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        rotary: (&Tensor, &Tensor),
        cache: &mut candle_nn::kv_cache::KvCache,
        mask: LayerMask,
    ) -> Result<Tensor> {
        let attn =
            self.self_attn
                .forward(&self.input_layernorm.forward(x)?, rotary, cache, mask)?;
        self.add_mlp(x, &attn)
    }

    /// The residual around attention, then the MLP block with its residual.
    fn add_mlp(&self, x: &Tensor, attn: &Tensor) -> Result<Tensor> {
        let h = (x + attn)?;
        &h + self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&h)?)?
    }
}

impl DecoderLayer {
    fn forward_static(
        &self,
        x: &Tensor,
        step: &StaticStep,
        cache: &candle_nn::kv_cache::KvCache,
    ) -> Result<Tensor> {
        let attn = self
            .self_attn
            .forward_static(&self.input_layernorm.forward(x)?, step, cache)?;
        self.add_mlp(x, &attn)
    }
}

pub struct Llama {
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rotary: Rotary,
    cfg: LlamaConfig,
    /// The activations' dtype (the `VarBuilder`'s; weights may be stored narrower).
    dtype: DType,
}

impl Llama {
    /// `vb` points at `language_model` (so keys are `model.layers.N...` and `lm_head.weight`).
    /// Projections are fused on GPUs (see [`QkvProj`]); `storage` says how the weight matrices
    /// (projections, `lm_head`) are kept, and its float form how the token embeddings are.
    pub fn new(cfg: &LlamaConfig, vb: VarBuilder, storage: WeightStorage) -> Result<Self> {
        Self::new_with_cache(cfg, vb, storage, None)
    }

    /// As [`Llama::new`], taking quantized matrices from `cache` where it has them.
    pub fn new_with_cache(
        cfg: &LlamaConfig,
        vb: VarBuilder,
        storage: WeightStorage,
        cache: Option<&QuantizedWeights>,
    ) -> Result<Self> {
        // Quantized matrices can't be stacked (and gain nothing from it on CPU).
        let fuse = !vb.device().is_cpu() && !matches!(storage, WeightStorage::Quantized { .. });
        Self::load(
            cfg,
            vb,
            LoadOpts {
                fuse,
                storage,
                cache,
            },
        )
    }

    fn load(cfg: &LlamaConfig, vb: VarBuilder, opts: LoadOpts) -> Result<Self> {
        let m = vb.pp("model");
        let embeddings = m.get_with_hints_dtype(
            (cfg.vocab_size, cfg.hidden_size),
            "embed_tokens.weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
            opts.storage.float().dtype(&vb),
        )?;
        let embed_tokens = Embedding::new(embeddings, cfg.hidden_size);
        let layer = |i: usize| DecoderLayer::new(cfg, m.pp(format!("layers.{i}")), opts);
        let layers = if matches!(opts.storage, WeightStorage::Quantized { .. }) {
            // Quantizing is single-threaded per matrix: spread the layers over the cores.
            use rayon::prelude::*;
            (0..cfg.num_hidden_layers)
                .into_par_iter()
                .map(layer)
                .collect::<Result<Vec<_>>>()?
        } else {
            (0..cfg.num_hidden_layers)
                .map(layer)
                .collect::<Result<Vec<_>>>()?
        };
        let norm = rms_norm(cfg.hidden_size, cfg.rms_norm_eps, m.pp("norm"))?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear::from_weights(embed_tokens.embeddings().clone(), None)
        } else {
            projection(cfg.hidden_size, cfg.vocab_size, vb.pp("lm_head"), opts)?
        };
        let rotary = Rotary::new(cfg, vb.dtype(), vb.device())?;
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary,
            cfg: cfg.clone(),
            dtype: vb.dtype(),
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The dtype of the weights and activations (and of the KV cache).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache::new(self.layers.len(), capacity)
    }

    /// Token embeddings of `ids` (any shape of u32 ids, all `< vocab_size`).
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        self.embed_tokens.forward(ids)?.to_dtype(self.dtype)
    }

    /// Run `x` (b, t, hidden) at positions `cache.seq_len()..+t`, appending to the cache, and
    /// return the final-norm hidden states (b, t, hidden).
    ///
    /// `left_pad[r]`, if given, is the number of padding positions at the start of row r (rows
    /// of different lengths, left-aligned to a common length): those keys are masked for the
    /// row's real tokens and the row's positions start at 0 after them, so each row computes what
    /// it would alone.
    pub fn forward_embeds(
        &self,
        x: &Tensor,
        cache: &mut KvCache,
        left_pad: Option<&[usize]>,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let past = cache.seq_len();
        self.check_positions(past + t)?;
        if let Some(pads) = left_pad.filter(|p| p.len() != b) {
            candle_core::bail!("left_pad has {} entries for a batch of {b}", pads.len());
        }
        let groups = (b * t).div_ceil(PREFILL_GROUP_TOKENS).min(b);
        if past == 0 && groups > 1 && x.device().is_cpu() {
            // Rows of a first prefill are independent. A group at a time keeps a layer's
            // activations within what the allocator keeps for reuse (`crate::memory`, 2 GiB);
            // 16 rows of 600 tokens make more, and the rest is page-faulted and zeroed again at
            // every use. 1B, 16 rows of 604 tokens: 169 s at once, 150 s as two groups of 8.
            let group = b.div_ceil(groups);
            let mut groups = Vec::with_capacity(b.div_ceil(group));
            let mut hidden = Vec::with_capacity(groups.capacity());
            for r0 in (0..b).step_by(group) {
                let rows = group.min(b - r0);
                let mut sub = self.new_cache(t);
                let pads = left_pad.map(|p| &p[r0..r0 + rows]);
                hidden.push(self.forward_embeds(&x.narrow(0, r0, rows)?, &mut sub, pads)?);
                groups.push(sub);
            }
            cache.append_row_groups(&mut groups)?;
            return Tensor::cat(&hidden, 0);
        }
        let pads = left_pad.filter(|p| p.iter().any(|&n| n > 0));
        let (cos, sin, mask) = match pads {
            None => {
                // CPU: the fused attention applies the causal limit itself. Elsewhere one
                // additive mask per forward (not per layer); a single new token needs none.
                let mask = if t > 1 && !x.device().is_cpu() {
                    Some(causal_mask(t, past, x.dtype(), x.device())?)
                } else {
                    None
                };
                (
                    self.rotary.cos.narrow(0, past, t)?,
                    self.rotary.sin.narrow(0, past, t)?,
                    mask,
                )
            }
            Some(pads) => {
                // f32 on the CPU: the fused attention skips each row's padding keys itself.
                let fused = x.device().is_cpu() && x.dtype() == DType::F32;
                let positions: Vec<u32> = pads
                    .iter()
                    .flat_map(|&p| (past..past + t).map(move |i| i.saturating_sub(p) as u32))
                    .collect();
                let idx = Tensor::from_vec(positions, b * t, x.device())?;
                let half = self.cfg.head_dim() / 2;
                let cos = self
                    .rotary
                    .cos
                    .index_select(&idx, 0)?
                    .reshape((b, t, half))?;
                let sin = self
                    .rotary
                    .sin
                    .index_select(&idx, 0)?
                    .reshape((b, t, half))?;
                let mask = if fused {
                    None
                } else if t == 1 && past < cache.capacity {
                    // A decode step: its row of the causal mask is the row's padding alone.
                    let pad_mask = match &cache.pad_mask {
                        Some((p, m)) if p == pads && m.dtype() == x.dtype() => m.clone(),
                        _ => {
                            let m = pad_keys_mask(pads, cache.capacity, x.dtype(), x.device())?;
                            cache.pad_mask = Some((pads.to_vec(), m.clone()));
                            m
                        }
                    };
                    Some(pad_mask.narrow(3, 0, past + 1)?)
                } else {
                    Some(padded_causal_mask(pads, t, past, x.dtype(), x.device())?)
                };
                (cos, sin, mask)
            }
        };
        let mask = match (&mask, pads) {
            (Some(m), _) => LayerMask::Tensor(m),
            (None, Some(pads)) => LayerMask::Padded(pads),
            (None, None) => LayerMask::Causal,
        };
        self.run_layers(x, (&cos, &sin), cache, mask)
    }

    /// Run `x` (b, t, hidden) at positions `cache.seq_len()..+t` (the same for every row)
    /// under an additive attention mask (b or 1, 1, t, past + t) built by the caller, causal
    /// limit included (see [`causal_mask_hiding_keys`]); appends to the cache and returns the
    /// final-norm hidden states. Positions do not follow the mask: JanusFlow's sampler hides
    /// the unconditional rows' prompt but keeps positions 0.., as the official code does.
    pub fn forward_embeds_masked(
        &self,
        x: &Tensor,
        cache: &mut KvCache,
        mask: &Tensor,
    ) -> Result<Tensor> {
        let (_, t, _) = x.dims3()?;
        let past = cache.seq_len();
        self.check_positions(past + t)?;
        let cos = self.rotary.cos.narrow(0, past, t)?;
        let sin = self.rotary.sin.narrow(0, past, t)?;
        let mask = mask.to_dtype(x.dtype())?;
        self.run_layers(x, (&cos, &sin), cache, LayerMask::Tensor(&mask))
    }

    /// RoPE tables at `positions` ((rows,) u32 on the device): (rows, 1, head_dim / 2) each.
    pub fn rope_rows(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        let rows = positions.dim(0)?;
        let half = self.cfg.head_dim() / 2;
        Ok((
            self.rotary
                .cos
                .index_select(positions, 0)?
                .reshape((rows, 1, half))?,
            self.rotary
                .sin
                .index_select(positions, 0)?
                .reshape((rows, 1, half))?,
        ))
    }

    /// One token per row (`x` (rows, 1, hidden)) with every shape fixed and every position read
    /// from the device (`step`), so the same launches serve every step (a CUDA graph can replay
    /// them). Writes the cache at `step.write_index` without moving `cache.seq_len()`; returns
    /// the final-norm hidden states (rows, 1, hidden).
    pub fn forward_static_step(
        &self,
        x: &Tensor,
        cache: &KvCache,
        step: &StaticStep,
    ) -> Result<Tensor> {
        let mut h = x.clone();
        for (layer, layer_cache) in self.layers.iter().zip(cache.layers.iter()) {
            h = layer.forward_static(&h, step, layer_cache)?;
        }
        self.norm.forward(&h)
    }

    pub fn num_kv_heads(&self) -> usize {
        self.cfg.num_kv_heads()
    }

    fn check_positions(&self, end: usize) -> Result<()> {
        if end > self.cfg.max_position_embeddings {
            candle_core::bail!(
                "sequence of {end} positions exceeds max_position_embeddings {}",
                self.cfg.max_position_embeddings
            );
        }
        Ok(())
    }

    fn run_layers(
        &self,
        x: &Tensor,
        rotary: (&Tensor, &Tensor),
        cache: &mut KvCache,
        mask: LayerMask,
    ) -> Result<Tensor> {
        let mut h = x.clone();
        for (layer, layer_cache) in self.layers.iter().zip(cache.layers.iter_mut()) {
            h = layer.forward(&h, rotary, layer_cache, mask)?;
        }
        self.norm.forward(&h)
    }

    /// `lm_head` logits (…, vocab) of final-norm hidden states.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(hidden)
    }

    /// Logits of the last position of each row, as f32 (b, vocab).
    pub fn last_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let t = hidden.dim(1)?;
        self.logits(&hidden.narrow(1, t - 1, 1)?.squeeze(1)?)?
            .to_dtype(DType::F32)
    }
}

#[cfg(test)]
mod tests;
mod weights;

use weights::{projection, LoadOpts};
