//! Scaled dot-product attention shared by SigLIP and the LLM, with a fused f32 CPU path.
//!
//! The generic path is candle ops: `softmax(q·kᵀ·scale + mask)` in f32, then `·v`. On CPU it
//! materialises every intermediate for all heads at once and runs many small multi-threaded
//! GEMMs; the fused path instead gives each (batch, head) pair to one thread, which computes its
//! scores with a single-threaded GEMM straight from the strided q/k views (no copies, the scale
//! folded into the GEMM), applies the causal limit and the softmax in place, and multiplies by v.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu_gemm::{gemm_f32, Strided};

/// Which keys each query may see.
pub enum Mask<'a> {
    /// Every key.
    None,
    /// Query i (absolute position `past + i`) sees keys 0..=past + i.
    Causal { past: usize },
    /// An additive mask broadcastable to (b, heads, tq, tk) (e.g. −∞ on padding keys).
    Additive(&'a Tensor),
}

/// `q` (b, heads, tq, d), `k`/`v` (b, kv_heads, tk, d) → (b, tq, heads·d). The last dim of each
/// must be contiguous; the other strides are free (views of a fused qkv or of a KV cache).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, mask: Mask) -> Result<Tensor> {
    let (b, heads, tq, d) = q.dims4()?;
    let fused = q.device().is_cpu()
        && [q, k, v].iter().all(|t| t.dtype() == DType::F32)
        && [q, k, v].iter().all(|t| t.stride()[3] == 1);
    let causal_past = match mask {
        Mask::None => Some(None),
        Mask::Causal { past } => Some(Some(past)),
        Mask::Additive(_) => None,
    };
    if let (true, Some(causal_past)) = (fused, causal_past) {
        let op = FusedAttention {
            scale: scale as f32,
            causal_past,
        };
        return q.apply_op3_no_bwd(k, v, &op);
    }
    let kv_heads = k.dim(1)?;
    let (k, v) = if kv_heads == heads {
        (k.clone(), v.clone())
    } else {
        (
            repeat_kv(k, heads / kv_heads)?,
            repeat_kv(v, heads / kv_heads)?,
        )
    };
    let mut scores = (q.contiguous()?.matmul(&k.t()?)? * scale)?;
    match mask {
        Mask::None => {}
        // One query at the end of the sequence sees every key: no mask needed.
        Mask::Causal { .. } if tq == 1 => {}
        Mask::Causal { past } => {
            let mask = causal_mask(tq, past, scores.dtype(), q.device())?;
            scores = scores.broadcast_add(&mask)?;
        }
        Mask::Additive(m) => scores = scores.broadcast_add(m)?,
    }
    // Softmax in f32 whatever the activation dtype, as the reference's eager attention.
    let probs =
        candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(v.dtype())?;
    probs
        .matmul(&v.contiguous()?)?
        .transpose(1, 2)?
        .reshape((b, tq, heads * d))
}

/// Additive causal mask (tq, past + tq): 0 where key ≤ query position, −∞ elsewhere.
pub fn causal_mask(
    tq: usize,
    past: usize,
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let tk = past + tq;
    let m: Vec<f32> = (0..tq)
        .flat_map(|i| {
            (0..tk).map(move |j| {
                if j <= past + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_vec(m, (tq, tk), device)?.to_dtype(dtype)
}

fn repeat_kv(x: &Tensor, rep: usize) -> Result<Tensor> {
    let (b, h, t, d) = x.dims4()?;
    x.unsqueeze(2)?
        .expand((b, h, rep, t, d))?
        .reshape((b, h * rep, t, d))
}

struct FusedAttention {
    scale: f32,
    causal_past: Option<usize>,
}

/// A strided 4-D view: base offset and strides (b, head, t, ·).
struct View<'a> {
    data: &'a [f32],
    start: usize,
    stride: [usize; 3],
}

impl<'a> View<'a> {
    fn new(storage: &'a CpuStorage, layout: &Layout) -> Result<Self> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("fused attention expects f32")
        };
        let s = layout.stride();
        Ok(Self {
            data,
            start: layout.start_offset(),
            stride: [s[0], s[1], s[2]],
        })
    }

    fn head(&self, b: usize, h: usize) -> *const f32 {
        self.data[self.start + b * self.stride[0] + h * self.stride[1]..].as_ptr()
    }
}

impl CustomOp3 for FusedAttention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, heads, tq, d) = ql.shape().dims4()?;
        let (kb, kv_heads, tk, kd) = kl.shape().dims4()?;
        if vl.shape().dims() != kl.shape().dims() || kb != b || kd != d || heads % kv_heads != 0 {
            candle_core::bail!(
                "fused attention: q {:?}, k {:?}, v {:?} do not fit",
                ql.shape(),
                kl.shape(),
                vl.shape()
            )
        }
        if let Some(past) = self.causal_past {
            if past + tq != tk {
                candle_core::bail!("fused attention: {past} past + {tq} new keys but k has {tk}")
            }
        }
        // The views' extents were checked by candle when the layouts were built; every read below
        // stays inside head (b, h) of its tensor.
        let (q, k, v) = (View::new(qs, ql)?, View::new(ks, kl)?, View::new(vs, vl)?);
        let rep = heads / kv_heads;
        let per_head: Vec<(usize, Vec<f32>)> = (0..b * heads)
            .into_par_iter()
            .map(|bh| {
                let (bi, h) = (bh / heads, bh % heads);
                let mut scores = vec![0f32; tq * tk];
                let (qp, kp, vp) = (q.head(bi, h), k.head(bi, h / rep), v.head(bi, h / rep));
                // SAFETY: scores is (tq × tk) row-major; q is (tq × d) with row stride
                // q.stride[2]; kᵀ is (d × tk) with column stride k.stride[2]; all inside their
                // buffers as the layouts describe.
                unsafe {
                    gemm_f32(
                        (tq, tk, d),
                        Strided {
                            ptr: scores.as_mut_ptr(),
                            col_stride: 1,
                            row_stride: tk,
                        },
                        Strided {
                            ptr: qp,
                            col_stride: 1,
                            row_stride: q.stride[2],
                        },
                        Strided {
                            ptr: kp,
                            col_stride: k.stride[2],
                            row_stride: 1,
                        },
                        0.0,
                        self.scale,
                        1,
                    );
                }
                for (i, row) in scores.chunks_mut(tk).enumerate() {
                    let visible = self.causal_past.map_or(tk, |p| (p + i + 1).min(tk));
                    softmax_in_place(&mut row[..visible]);
                    row[visible..].fill(0.0);
                }
                let mut out = vec![0f32; tq * d];
                // SAFETY: out is (tq × d) row-major, scores (tq × tk) row-major, v (tk × d)
                // with row stride v.stride[2].
                unsafe {
                    gemm_f32(
                        (tq, d, tk),
                        Strided {
                            ptr: out.as_mut_ptr(),
                            col_stride: 1,
                            row_stride: d,
                        },
                        Strided {
                            ptr: scores.as_ptr(),
                            col_stride: 1,
                            row_stride: tk,
                        },
                        Strided {
                            ptr: vp,
                            col_stride: 1,
                            row_stride: v.stride[2],
                        },
                        0.0,
                        1.0,
                        1,
                    );
                }
                (bh, out)
            })
            .collect();
        let mut out = vec![0f32; b * tq * heads * d];
        for (bh, o) in per_head {
            let (bi, h) = (bh / heads, bh % heads);
            for (i, row) in o.chunks(d).enumerate() {
                let at = ((bi * tq + i) * heads + h) * d;
                out[at..at + d].copy_from_slice(row);
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((b, tq, heads * d))))
    }
}

fn softmax_in_place(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|x| *x *= inv);
}

/// Exact (erf) GELU, `0.5·x·(1 + erf(x/√2))`. On CPU f32 the erf is a branch-free rational
/// approximation that vectorises (within 5e-7 of libm's `erff`, a few f32 ulps; see
/// the test) and the work is spread over threads; candle's op calls the scalar `erff` on one
/// thread, which made GELU a tenth of SigLIP's time.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if !(x.device().is_cpu() && x.dtype() == DType::F32 && x.is_contiguous()) {
        return x.gelu_erf();
    }
    let data = x.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; data.len()];
    out.par_chunks_mut(16384)
        .zip(data.par_chunks(16384))
        .for_each(|(o, i)| {
            for (o, &v) in o.iter_mut().zip(i) {
                *o = 0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
            }
        });
    Tensor::from_vec(out, x.shape(), x.device())
}

/// erf for f32: x·P(x²)/Q(x²) on x clamped to [−4, 4] (erf is ±1 in f32 beyond), with the
/// minimax coefficients Eigen and XLA use for their vectorised float erf.
#[inline]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_4e-5;
    p = x2 * p + -7.349_906_3e-4;
    p = x2 * p + -2.954_6e-3;
    p = x2 * p + -1.609_603_3e-2;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329e-3;
    q = x2 * q + -1.426_474e-2;
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        super::super::cpu_gemm::max_abs(&(a - b).unwrap())
    }

    #[test]
    fn fused_matches_the_generic_path() {
        let dev = Device::Cpu;
        // q/k/v as strided views of one fused projection, as SigLIP has them.
        let (b, h, t, d) = (2, 3, 7, 8);
        let qkv = Tensor::randn(0f32, 1.0, (b, t, 3, h, d), &dev).unwrap();
        let qkv = qkv.permute((2, 0, 3, 1, 4)).unwrap();
        let (q, k, v) = (qkv.i(0).unwrap(), qkv.i(1).unwrap(), qkv.i(2).unwrap());
        let fused = attention(&q, &k, &v, 0.3, Mask::None).unwrap();
        let generic = attention(
            &q.contiguous().unwrap().to_dtype(DType::F64).unwrap(),
            &k.to_dtype(DType::F64).unwrap(),
            &v.to_dtype(DType::F64).unwrap(),
            0.3,
            Mask::None,
        )
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
        assert!(max_diff(&fused, &generic) < 1e-5);

        // Causal with a past: 3 new queries against a 10-key cache view.
        let k_cache = Tensor::randn(0f32, 1.0, (b, h, 16, d), &dev)
            .unwrap()
            .narrow(2, 0, 10)
            .unwrap();
        let v_cache = Tensor::randn(0f32, 1.0, (b, h, 16, d), &dev)
            .unwrap()
            .narrow(2, 0, 10)
            .unwrap();
        let q = Tensor::randn(0f32, 1.0, (b, h, 3, d), &dev).unwrap();
        let fused = attention(&q, &k_cache, &v_cache, 0.5, Mask::Causal { past: 7 }).unwrap();
        let f64 = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
        let generic = attention(
            &f64(&q),
            &f64(&k_cache),
            &f64(&v_cache),
            0.5,
            Mask::Causal { past: 7 },
        )
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
        assert!(max_diff(&fused, &generic) < 1e-5);

        // One new query (a decode step): the generic path needs no mask.
        let q1 = q.narrow(2, 2, 1).unwrap().contiguous().unwrap();
        let fused = attention(&q1, &k_cache, &v_cache, 0.5, Mask::Causal { past: 9 }).unwrap();
        let generic = attention(
            &f64(&q1),
            &f64(&k_cache),
            &f64(&v_cache),
            0.5,
            Mask::Causal { past: 9 },
        )
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
        assert!(max_diff(&fused, &generic) < 1e-5);
    }

    #[test]
    fn fast_erf_matches_libm() {
        let mut worst = 0f32;
        for i in -60_000..=60_000 {
            let x = i as f32 * 1e-4; // [-6, 6]
            worst = worst.max((erf(x) - candle_core::cpu::erf::erf_f32(x)).abs());
        }
        // Measured 4.2e-7 (about 3.5 ulp of 1.0): f32 rounding level.
        assert!(worst < 5e-7, "max |erf - erff| = {worst}");
        // GELU values up to about ±10 here: f32 rounding of those is ~1e-6.
        let x = Tensor::randn(0f32, 3.0, (3, 40000), &Device::Cpu).unwrap();
        assert!(max_diff(&gelu_erf(&x).unwrap(), &x.gelu_erf().unwrap()) < 2e-6);
    }
}
