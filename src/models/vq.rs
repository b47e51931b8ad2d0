//! The LlamaGen VQ-16 image tokenizer (`gen_vision_model.*`): encoder → `quant_conv` →
//! L2-normalised nearest-code search, and codebook lookup (L2-normalised rows) →
//! `post_quant_conv` → decoder. GroupNorm(32, eps 1e-6), swish, nearest ×2 upsampling and
//! single-head spatial attention. Decoder `conv_blocks` are stored deepest level first.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{conv2d, Conv2dConfig, VarBuilder};

use crate::kernels::conv::{same_conv2d, SameConv2d};
use crate::kernels::group_norm::{group_norm, GroupNorm};
use crate::loading::VqConfig;

const GROUPS: usize = 32;
const EPS: f64 = 1e-6;

fn conv(cin: usize, cout: usize, k: usize, vb: VarBuilder) -> Result<SameConv2d> {
    same_conv2d(cin, cout, k, vb)
}

/// GroupNorm → swish → conv3×3 → GroupNorm → swish → conv3×3, plus the input (through a 1×1
/// conv when the channel count changes). Shared with the SDXL VAE decoder (`sdxl_vae.rs`).
pub(crate) struct ResnetBlock {
    norm1: GroupNorm,
    conv1: SameConv2d,
    norm2: GroupNorm,
    conv2: SameConv2d,
    nin_shortcut: Option<SameConv2d>,
}

impl ResnetBlock {
    fn new(cin: usize, cout: usize, vb: VarBuilder) -> Result<Self> {
        Self::with_names(cin, cout, GROUPS, "nin_shortcut", vb)
    }

    /// `groups` GroupNorm groups (eps 1e-6); `shortcut` names the 1×1 conv used when
    /// `cin != cout` (`nin_shortcut` here, `conv_shortcut` in diffusers).
    pub(crate) fn with_names(
        cin: usize,
        cout: usize,
        groups: usize,
        shortcut: &str,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            norm1: group_norm(groups, cin, EPS, vb.pp("norm1"))?,
            conv1: conv(cin, cout, 3, vb.pp("conv1"))?,
            norm2: group_norm(groups, cout, EPS, vb.pp("norm2"))?,
            conv2: conv(cout, cout, 3, vb.pp("conv2"))?,
            nin_shortcut: if cin != cout {
                Some(conv(cin, cout, 1, vb.pp(shortcut))?)
            } else {
                None
            },
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward_swish(x)?)?;
        let h = self.conv2.forward(&self.norm2.forward_swish(&h)?)?;
        match &self.nin_shortcut {
            Some(s) => s.forward(x)? + h,
            None => x + h,
        }
    }
}

/// Single-head spatial self-attention with a GroupNorm in front and a residual connection:
/// `x + proj_out(softmax(qᵀk / √C) applied to v)`. Shared with the SDXL VAE decoder.
pub(crate) struct AttnBlock {
    norm: GroupNorm,
    q: SameConv2d,
    k: SameConv2d,
    v: SameConv2d,
    proj_out: SameConv2d,
    /// Compute scores, softmax and the weighted sum in f32 for 16-bit activations.
    upcast: bool,
}

impl AttnBlock {
    fn new(c: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self::from_parts(
            group_norm(GROUPS, c, EPS, vb.pp("norm"))?,
            [
                conv(c, c, 1, vb.pp("q"))?,
                conv(c, c, 1, vb.pp("k"))?,
                conv(c, c, 1, vb.pp("v"))?,
                conv(c, c, 1, vb.pp("proj_out"))?,
            ],
            false,
        ))
    }

    /// `[q, k, v, proj_out]` 1×1 convs; `upcast`: attention arithmetic in f32 when the
    /// activations are 16-bit (diffusers' `upcast_softmax=True`).
    pub(crate) fn from_parts(
        norm: GroupNorm,
        [q, k, v, proj_out]: [SameConv2d; 4],
        upcast: bool,
    ) -> Self {
        Self {
            norm,
            q,
            k,
            v,
            proj_out,
            upcast,
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let hn = self.norm.forward(x)?;
        let dtype = x.dtype();
        let work = if self.upcast && matches!(dtype, DType::BF16 | DType::F16) {
            DType::F32
        } else {
            dtype
        };
        let q = self
            .q
            .forward(&hn)?
            .reshape((b, c, h * w))?
            .transpose(1, 2)?
            .to_dtype(work)?
            .contiguous()?; // (b, hw, c)
        let k = self
            .k
            .forward(&hn)?
            .reshape((b, c, h * w))?
            .to_dtype(work)?; // (b, c, hw)
        let v = self
            .v
            .forward(&hn)?
            .reshape((b, c, h * w))?
            .to_dtype(work)?;
        let attn = candle_nn::ops::softmax_last_dim(&(q.matmul(&k)? * (c as f64).powf(-0.5))?)?; // (b, hw_q, hw_k)
        let out = v
            .matmul(&attn.transpose(1, 2)?.contiguous()?)?
            .reshape((b, c, h, w))?
            .to_dtype(dtype)?;
        x + self.proj_out.forward(&out)?
    }
}

/// One resolution level: res blocks, optional attention after each, optional resampling conv.
struct Level {
    res: Vec<ResnetBlock>,
    attn: Vec<AttnBlock>,
    /// Decoder: the conv after ×2 nearest upsampling; encoder: the stride-2 downsampling conv.
    resample: Option<Box<dyn Module + Send + Sync>>,
}

impl Level {
    fn forward_blocks(&self, mut h: Tensor) -> Result<Tensor> {
        for (i, res) in self.res.iter().enumerate() {
            h = res.forward(&h)?;
            if let Some(attn) = self.attn.get(i) {
                h = attn.forward(&h)?;
            }
        }
        Ok(h)
    }
}

struct Mid {
    res1: ResnetBlock,
    attn: AttnBlock,
    res2: ResnetBlock,
}

impl Mid {
    fn new(c: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            res1: ResnetBlock::new(c, c, vb.pp("0"))?,
            attn: AttnBlock::new(c, vb.pp("1"))?,
            res2: ResnetBlock::new(c, c, vb.pp("2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.res2
            .forward(&self.attn.forward(&self.res1.forward(x)?)?)
    }
}

pub struct Encoder {
    conv_in: SameConv2d,
    levels: Vec<Level>,
    mid: Mid,
    norm_out: GroupNorm,
    conv_out: SameConv2d,
}

impl Encoder {
    fn new(cfg: &VqConfig, vb: VarBuilder) -> Result<Self> {
        let n = cfg.ch_mult.len();
        let conv_in = conv(3, cfg.ch, 3, vb.pp("conv_in"))?;
        let mut block_in = cfg.ch;
        let mut levels = Vec::with_capacity(n);
        for (i, &mult) in cfg.ch_mult.iter().enumerate() {
            let vbl = vb.pp(format!("conv_blocks.{i}"));
            let block_out = cfg.ch * mult;
            let mut res = Vec::new();
            let mut attn = Vec::new();
            for j in 0..cfg.num_res_blocks {
                res.push(ResnetBlock::new(
                    block_in,
                    block_out,
                    vbl.pp(format!("res.{j}")),
                )?);
                block_in = block_out;
                if i == n - 1 {
                    attn.push(AttnBlock::new(block_in, vbl.pp(format!("attn.{j}")))?);
                }
            }
            let resample = if i != n - 1 {
                let cfg = Conv2dConfig {
                    stride: 2,
                    ..Default::default()
                };
                let down = conv2d(block_in, block_in, 3, cfg, vbl.pp("downsample.conv"))?;
                Some(Box::new(down) as Box<dyn Module + Send + Sync>)
            } else {
                None
            };
            levels.push(Level {
                res,
                attn,
                resample,
            });
        }
        Ok(Self {
            conv_in,
            levels,
            mid: Mid::new(block_in, vb.pp("mid"))?,
            norm_out: group_norm(GROUPS, block_in, EPS, vb.pp("norm_out"))?,
            conv_out: conv(block_in, cfg.z_channels, 3, vb.pp("conv_out"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.conv_in.forward(x)?;
        for level in &self.levels {
            h = level.forward_blocks(h)?;
            if let Some(down) = &level.resample {
                // Asymmetric zero padding (right and bottom by one), then a stride-2 conv.
                h = down.forward(&h.pad_with_zeros(D::Minus1, 0, 1)?.pad_with_zeros(
                    D::Minus2,
                    0,
                    1,
                )?)?;
            }
        }
        let h = self.mid.forward(&h)?;
        self.conv_out.forward(&self.norm_out.forward_swish(&h)?)
    }
}

pub struct Decoder {
    conv_in: SameConv2d,
    mid: Mid,
    levels: Vec<Level>,
    norm_out: GroupNorm,
    conv_out: SameConv2d,
}

impl Decoder {
    fn new(cfg: &VqConfig, vb: VarBuilder) -> Result<Self> {
        let n = cfg.ch_mult.len();
        let mut block_in = cfg.ch * cfg.ch_mult[n - 1];
        let conv_in = conv(cfg.z_channels, block_in, 3, vb.pp("conv_in"))?;
        let mid = Mid::new(block_in, vb.pp("mid"))?;
        let mut levels = Vec::with_capacity(n);
        for i in 0..n {
            let vbl = vb.pp(format!("conv_blocks.{i}"));
            let block_out = cfg.ch * cfg.ch_mult[n - 1 - i];
            let mut res = Vec::new();
            let mut attn = Vec::new();
            for j in 0..=cfg.num_res_blocks {
                res.push(ResnetBlock::new(
                    block_in,
                    block_out,
                    vbl.pp(format!("res.{j}")),
                )?);
                block_in = block_out;
                if i == 0 {
                    attn.push(AttnBlock::new(block_in, vbl.pp(format!("attn.{j}")))?);
                }
            }
            let resample = if i != n - 1 {
                let up = conv(block_in, block_in, 3, vbl.pp("upsample.conv"))?;
                Some(Box::new(up) as Box<dyn Module + Send + Sync>)
            } else {
                None
            };
            levels.push(Level {
                res,
                attn,
                resample,
            });
        }
        Ok(Self {
            conv_in,
            mid,
            levels,
            norm_out: group_norm(GROUPS, block_in, EPS, vb.pp("norm_out"))?,
            conv_out: conv(block_in, 3, 3, vb.pp("conv_out"))?,
        })
    }

    fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let mut h = self.mid.forward(&self.conv_in.forward(z)?)?;
        for level in &self.levels {
            h = level.forward_blocks(h)?;
            if let Some(up) = &level.resample {
                let (_, _, hh, ww) = h.dims4()?;
                h = up.forward(&h.upsample_nearest2d(2 * hh, 2 * ww)?)?;
            }
        }
        self.conv_out.forward(&self.norm_out.forward_swish(&h)?)
    }
}

pub struct VqModel {
    encoder: Option<Encoder>,
    quant_conv: Option<SameConv2d>,
    decoder: Decoder,
    post_quant_conv: SameConv2d,
    /// Codebook with L2-normalised rows (codebook_size, embed_dim).
    codebook: Tensor,
    cfg: VqConfig,
}

impl VqModel {
    /// `vb` points at `gen_vision_model`. The encoder is loaded when its weights are present.
    pub fn new(cfg: &VqConfig, vb: VarBuilder) -> Result<Self> {
        let embedding = vb.get(
            (cfg.codebook_size, cfg.codebook_embed_dim),
            "quantize.embedding.weight",
        )?;
        let codebook =
            l2_normalize(&embedding.to_dtype(DType::F32)?)?.to_dtype(embedding.dtype())?;
        let has_encoder = vb.contains_tensor("encoder.conv_in.weight");
        let (encoder, quant_conv) = if has_encoder {
            (
                Some(Encoder::new(cfg, vb.pp("encoder"))?),
                Some(conv(
                    cfg.z_channels,
                    cfg.codebook_embed_dim,
                    1,
                    vb.pp("quant_conv"),
                )?),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            encoder,
            quant_conv,
            decoder: Decoder::new(cfg, vb.pp("decoder"))?,
            post_quant_conv: conv(
                cfg.codebook_embed_dim,
                cfg.z_channels,
                1,
                vb.pp("post_quant_conv"),
            )?,
            codebook,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &VqConfig {
        &self.cfg
    }

    pub fn has_encoder(&self) -> bool {
        self.encoder.is_some()
    }

    /// Decode code indices (n, grid·grid), raster order, into images (n, 3, H, W) ≈ [−1, 1].
    pub fn decode_codes(&self, codes: &Tensor, grid: usize) -> Result<Tensor> {
        let n = codes.dim(0)?;
        let e = self.cfg.codebook_embed_dim;
        let z = self.codebook.index_select(&codes.flatten_all()?, 0)?; // (n·g², e)
        let z = z
            .reshape((n, grid, grid, e))?
            .permute((0, 3, 1, 2))?
            .contiguous()?;
        self.decoder.forward(&self.post_quant_conv.forward(&z)?)
    }

    /// The continuous latent `quant_conv(encoder(x))` (n, embed_dim, g, g) of images in [−1, 1].
    pub fn encode_latent(&self, x: &Tensor) -> Result<Tensor> {
        let (Some(encoder), Some(quant_conv)) = (&self.encoder, &self.quant_conv) else {
            candle_core::bail!(
                "this checkpoint has no VQ encoder weights (gen_vision_model.encoder.*)"
            );
        };
        quant_conv.forward(&encoder.forward(x)?)
    }

    /// Nearest codes (n, g·g), raster order, of a latent, with L2-normalised latents and codes
    /// (the official `VectorQuantizer` with `l2_norm=True`).
    pub fn quantize(&self, latent: &Tensor) -> Result<Tensor> {
        let (n, e, g1, g2) = latent.dims4()?;
        let z = latent
            .permute((0, 2, 3, 1))?
            .reshape((n * g1 * g2, e))?
            .to_dtype(DType::F32)?;
        let z = l2_normalize(&z)?;
        let book = self.codebook.to_dtype(DType::F32)?;
        // |z|² + |c|² − 2 z·c, as the reference computes it.
        let d = z
            .sqr()?
            .sum_keepdim(1)?
            .broadcast_add(&book.sqr()?.sum(1)?.unsqueeze(0)?)?
            .broadcast_sub(&(z.matmul(&book.t()?)? * 2.0)?)?;
        d.argmin(1)?.reshape((n, g1 * g2))
    }
}

/// Rows divided by `max(‖row‖₂, 1e-12)` (`F.normalize(p=2, dim=-1)`).
fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::INFINITY)?;
    x.broadcast_div(&norm)
}
