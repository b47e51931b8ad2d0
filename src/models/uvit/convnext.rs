//! The ConvNeXt-V2 block with FiLM conditioning, and its fused CPU kernels (GRN; residual +
//! FiLM).

use super::*;

/// ConvNeXt-V2 block with FiLM conditioning (keys `depthwise`, `norm`, `channelwise_linear_1`,
/// `channelwise_norm` (GRN), `channelwise_linear_2`, `cond_embeds_mapper`).
pub struct ConvNextBlock {
    pub(super) depthwise: DepthwiseConv2d,
    pub(super) norm: RmsNorm,
    pub(super) linear_1: Linear,
    pub(super) grn_weight: Tensor,
    pub(super) grn_bias: Tensor,
    pub(super) linear_2: Linear,
    pub(super) cond_embeds_mapper: Linear,
    pub(super) channels: usize,
    /// CPU f32: the GRN weight and bias as host vectors (fused kernels below).
    pub(super) cpu_grn: Option<(Vec<f32>, Vec<f32>)>,
}

impl ConvNextBlock {
    pub fn new(
        channels: usize,
        hidden: usize,
        eps: f64,
        bias: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let wide = 4 * channels;
        let grn = vb.pp("channelwise_norm");
        let grn_weight = grn.get((1, 1, 1, wide), "weight")?.reshape(wide)?;
        let grn_bias = grn.get((1, 1, 1, wide), "bias")?.reshape(wide)?;
        let cpu_grn = if vb.device().is_cpu() && vb.dtype() == DType::F32 {
            Some((grn_weight.to_vec1::<f32>()?, grn_bias.to_vec1::<f32>()?))
        } else {
            None
        };
        Ok(Self {
            depthwise: depthwise_conv2d(channels, 7, bias, vb.pp("depthwise"))?,
            norm: rms_norm(channels, eps, vb.pp("norm"))?,
            linear_1: linear_b(channels, wide, bias, vb.pp("channelwise_linear_1"))?,
            grn_weight,
            grn_bias,
            linear_2: linear_b(wide, channels, bias, vb.pp("channelwise_linear_2"))?,
            cond_embeds_mapper: linear_b(hidden, 2 * channels, bias, vb.pp("cond_embeds_mapper"))?,
            channels,
            cpu_grn,
        })
    }

    /// `x`: (B, H, W, C) contiguous; `silu_cond`: `silu(t_emb)`, (B, hidden).
    pub fn forward_nhwc(&self, x: &Tensor, silu_cond: &Tensor) -> Result<Tensor> {
        let (b, h, w, c) = x.dims4()?;
        let y = self.depthwise.forward_nhwc(x)?;
        let y = self.norm.forward(&y)?;
        let y = gelu_erf(&self.linear_1.forward(&y.reshape((b, h * w, c))?)?)?;
        let ss = self.cond_embeds_mapper.forward(silu_cond)?;
        if let Some((weight, bias)) = &self.cpu_grn {
            if y.device().is_cpu() && y.dtype() == DType::F32 {
                let y = y.apply_op1_no_bwd(&Grn { weight, bias })?;
                let y = self.linear_2.forward(&y)?.reshape((b, h, w, c))?;
                let film = FilmResidual {
                    scale_shift: ss.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?,
                };
                return y.contiguous()?.apply_op2_no_bwd(&x.contiguous()?, &film);
            }
        }
        // GRN: L2 norm over the spatial positions per (image, channel), normalised by its mean
        // over channels. The norm accumulates in f32 (as torch.norm does for half inputs).
        let g = y
            .to_dtype(DType::F32)?
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .to_dtype(y.dtype())?;
        let n = g.broadcast_div(&(g.mean_keepdim(D::Minus1)? + 1e-6)?)?;
        let factor = (n.broadcast_mul(&self.grn_weight)? + 1.0)?;
        let y = y.broadcast_mul(&factor)?.broadcast_add(&self.grn_bias)?;
        let y = (self.linear_2.forward(&y)?.reshape((b, h, w, c))? + x)?;
        // FiLM after the residual: chunk(2) gives scale first, then shift.
        let scale = (ss.narrow(1, 0, self.channels)? + 1.0)?.reshape((b, 1, 1, c))?;
        let shift = ss
            .narrow(1, self.channels, self.channels)?
            .reshape((b, 1, 1, c))?;
        y.broadcast_mul(&scale)?.broadcast_add(&shift)
    }
}

/// Rows per parallel task in the CPU kernels below.
const ROWS_PER_TASK: usize = 16;

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(d), Some((start, end))) => Ok(&d[start..end]),
        _ => candle_core::bail!("{op}: expects a contiguous f32 input"),
    }
}

/// GRN on (B, N, D) (CPU f32): per image, `g_d = ‖x[:, d]‖₂` (accumulated in f64),
/// `out = bias + (weight·g/(mean(g) + 1e-6) + 1)·x`.
struct Grn<'a> {
    weight: &'a [f32],
    bias: &'a [f32],
}

impl CustomOp1 for Grn<'_> {
    fn name(&self) -> &'static str {
        "uvit-grn"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, "uvit-grn")?;
        let (b, n, d) = l.shape().dims3()?;
        if d != self.weight.len() {
            candle_core::bail!("uvit-grn: {d} channels, expected {}", self.weight.len())
        }
        let mut out = vec![0f32; x.len()];
        for (img, dst) in x.chunks_exact(n * d).zip(out.chunks_exact_mut(n * d)) {
            let sumsq = img
                .par_chunks(ROWS_PER_TASK * d)
                .map(|rows| {
                    let mut acc = vec![0f64; d];
                    for row in rows.chunks_exact(d) {
                        for (a, &v) in acc.iter_mut().zip(row) {
                            *a += v as f64 * v as f64;
                        }
                    }
                    acc
                })
                .reduce(
                    || vec![0f64; d],
                    |mut a, b| {
                        a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                        a
                    },
                );
            let g: Vec<f32> = sumsq.iter().map(|&s| s.sqrt() as f32).collect();
            let mean = g.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let inv = 1.0 / (mean as f32 + 1e-6);
            let factor: Vec<f32> = g
                .iter()
                .zip(self.weight)
                .map(|(&g, &w)| w * (g * inv) + 1.0)
                .collect();
            dst.par_chunks_mut(ROWS_PER_TASK * d)
                .zip(img.par_chunks(ROWS_PER_TASK * d))
                .for_each(|(o, i)| {
                    for (o, i) in o.chunks_exact_mut(d).zip(i.chunks_exact(d)) {
                        for (((o, &i), &f), &bias) in
                            o.iter_mut().zip(i).zip(&factor).zip(self.bias)
                        {
                            *o = bias + f * i;
                        }
                    }
                });
        }
        Ok((CpuStorage::F32(out), Shape::from((b, n, d))))
    }
}

/// `(y + x)·(1 + scale) + shift` on (B, H, W, C) (CPU f32), with `scale_shift` (B, 2C).
struct FilmResidual {
    scale_shift: Vec<f32>,
}

impl CustomOp2 for FilmResidual {
    fn name(&self) -> &'static str {
        "uvit-film-residual"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (y, x) = (
            contiguous_f32(s1, l1, self.name())?,
            contiguous_f32(s2, l2, self.name())?,
        );
        let (b, h, w, c) = l1.shape().dims4()?;
        if l2.shape() != l1.shape() || self.scale_shift.len() != b * 2 * c {
            candle_core::bail!("uvit-film-residual: shape mismatch")
        }
        let mut out = vec![0f32; y.len()];
        let per_image = h * w * c;
        out.par_chunks_mut(ROWS_PER_TASK * c)
            .zip(
                y.par_chunks(ROWS_PER_TASK * c)
                    .zip(x.par_chunks(ROWS_PER_TASK * c)),
            )
            .enumerate()
            .for_each(|(task, (o, (y, x)))| {
                // A task may straddle two images: look the image up per row.
                let first = task * ROWS_PER_TASK * c;
                for (r, ((o, y), x)) in o
                    .chunks_exact_mut(c)
                    .zip(y.chunks_exact(c))
                    .zip(x.chunks_exact(c))
                    .enumerate()
                {
                    let img = (first + r * c) / per_image;
                    let ss = &self.scale_shift[img * 2 * c..(img + 1) * 2 * c];
                    let (scale, shift) = ss.split_at(c);
                    for ((((o, &y), &x), &sc), &sh) in
                        o.iter_mut().zip(y).zip(x).zip(scale).zip(shift)
                    {
                        *o = (y + x) * (1.0 + sc) + sh;
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, h, w, c))))
    }
}
