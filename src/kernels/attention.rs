//! Scaled dot-product attention shared by SigLIP and the LLM, with a fused f32 CPU path.
//!
//! The generic path is candle ops: `softmax(q·kᵀ·scale + mask)` in f32, then `·v`. On CPU it
//! materialises every intermediate for all heads at once and runs many small multi-threaded
//! GEMMs; the fused path instead gives each (batch, head) pair to one thread, which computes its
//! scores with a single-threaded GEMM straight from the strided q/k views (no copies, the scale
//! folded into the GEMM), applies the causal limit and the softmax in place, and multiplies by v.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::elementwise::softmax_in_place;
use super::few_rows::simd_level;
use super::gemm::{gemm_f32, Strided};
use super::masks::padded_causal_mask;
use super::single_query;

/// Which keys each query may see.
pub enum Mask<'a> {
    /// Every key.
    None,
    /// Query i (absolute position `past + i`) sees keys 0..=past + i.
    Causal { past: usize },
    /// Causal, and row r's first `pads[r]` keys (left padding) hidden from its real queries,
    /// as [`padded_causal_mask`] has it. The fused path skips the hidden keys altogether, so a
    /// padded row computes exactly what it computes alone; its padding queries give zeros.
    PaddedCausal { past: usize, pads: &'a [usize] },
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
    let (causal_past, pads) = match mask {
        Mask::None => (Some(None), None),
        Mask::Causal { past } => (Some(Some(past)), None),
        Mask::PaddedCausal { past, pads } => (Some(Some(past)), Some(pads)),
        Mask::Additive(_) => (None, None),
    };
    if let (true, Some(causal_past)) = (fused, causal_past) {
        if pads.is_some_and(|p| p.len() != b) {
            candle_core::bail!(
                "fused attention: {} pads for a batch of {b}",
                pads.map_or(0, <[usize]>::len)
            )
        }
        let op = FusedAttention {
            scale: scale as f32,
            causal_past,
            pads: pads.map(<[usize]>::to_vec),
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
        Mask::PaddedCausal { past, pads } => {
            let mask = padded_causal_mask(pads, tq, past, scores.dtype(), q.device())?;
            scores = scores.broadcast_add(&mask)?;
        }
        Mask::Additive(m) => scores = scores.broadcast_add(m)?,
    }
    let on_gpu = !q.device().is_cpu();
    let probs = if on_gpu && tq == 1 && scores.dtype() != DType::F32 {
        // Decode steps on a GPU: candle's softmax kernel already accumulates in f32; only the
        // exponentials are rounded to the activation dtype before normalising (one extra
        // rounding per probability), which saves two casts per layer and step.
        candle_nn::ops::softmax_last_dim(&scores)?
    } else {
        // Softmax in f32 whatever the activation dtype, as the reference's eager attention.
        candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(v.dtype())?
    };
    // cuBLAS takes the strided view of the KV cache as it is (a row stride of `d`, a batch
    // stride of the cache's capacity): copying V would cost a read and a write of it per layer.
    let v = if on_gpu { v } else { v.contiguous()? };
    probs
        .matmul(&v)?
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

/// Queries per block in the fused path (a block's scores, 64 × 600 keys, take 150 KB).
const QUERY_BLOCK: usize = 64;

struct FusedAttention {
    scale: f32,
    causal_past: Option<usize>,
    /// Left padding of each batch row: its first keys are skipped (see [`Mask::PaddedCausal`]).
    pads: Option<Vec<usize>>,
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
                let pad = self.pads.as_ref().map_or(0, |p| p[bi]).min(tk);
                // Only keys pad.. are seen by this row's real queries: start k and v there.
                let tk = tk - pad;
                let level = simd_level();
                let mut scores = vec![0f32; QUERY_BLOCK.min(tq) * tk];
                let (qp, kp, vp) = (q.head(bi, h), k.head(bi, h / rep), v.head(bi, h / rep));
                // SAFETY: `pad` rows into head (bi, h) of k and v, inside it (pad <= tk).
                let (kp, vp) = unsafe { (kp.add(pad * k.stride[2]), vp.add(pad * v.stride[2])) };
                if tq == 1 {
                    // A decode step: its query sees every key from the first real one on.
                    let mut out = vec![0f32; d];
                    // SAFETY: q is d long; k and v hold tk rows of d from kp/vp at their row
                    // strides (inside head (bi, h), as above).
                    unsafe {
                        single_query::scores(
                            level,
                            qp,
                            kp,
                            k.stride[2],
                            d,
                            self.scale,
                            &mut scores,
                        );
                        softmax_in_place(level, &mut scores);
                        single_query::weighted_sum(level, &scores, vp, v.stride[2], &mut out);
                    }
                    return (bh, out);
                }
                let mut out = vec![0f32; tq * d];
                // Queries in blocks: a causal block's queries see keys up to its last query's
                // position only, so the keys after it are neither scored nor summed (half the
                // work of a prefill), and a block's scores stay in cache.
                for i0 in (0..tq).step_by(QUERY_BLOCK) {
                    let rows = QUERY_BLOCK.min(tq - i0);
                    let keys = self
                        .causal_past
                        .map_or(tk, |p| (p + i0 + rows).saturating_sub(pad).min(tk));
                    if keys == 0 {
                        // Padding queries only (before the row's first real key): zeros.
                        continue;
                    }
                    let scores = &mut scores[..rows * keys];
                    // SAFETY: scores is (rows × keys) row-major; q's rows i0.. (rows × d, row
                    // stride q.stride[2]); kᵀ is (d × keys) with column stride k.stride[2]; all
                    // inside their buffers as the layouts describe (keys <= tk).
                    unsafe {
                        gemm_f32(
                            (rows, keys, d),
                            Strided {
                                ptr: scores.as_mut_ptr(),
                                col_stride: 1,
                                row_stride: keys,
                            },
                            Strided {
                                ptr: qp.add(i0 * q.stride[2]),
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
                    for (r, row) in scores.chunks_mut(keys).enumerate() {
                        // Keys up to the query's own position, counted from the first real key;
                        // a padding query (before the first real key) sees none and gives zeros.
                        let visible = self
                            .causal_past
                            .map_or(keys, |p| (p + i0 + r + 1).saturating_sub(pad).min(keys));
                        softmax_in_place(level, &mut row[..visible]);
                        row[visible..].fill(0.0);
                    }
                    // SAFETY: out's rows i0.. (rows × d) row-major, scores (rows × keys)
                    // row-major, v (keys × d) with row stride v.stride[2].
                    unsafe {
                        gemm_f32(
                            (rows, d, keys),
                            Strided {
                                ptr: out.as_mut_ptr().add(i0 * d),
                                col_stride: 1,
                                row_stride: d,
                            },
                            Strided {
                                ptr: scores.as_ptr(),
                                col_stride: 1,
                                row_stride: keys,
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        crate::kernels::gemm::max_abs(&(a - b).unwrap())
    }

    /// The fused f32 path against the generic path run in f64.
    fn check(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, mask: impl Fn() -> Mask<'static>) {
        let f64 = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
        let fused = attention(q, k, v, scale, mask()).unwrap();
        let generic = attention(&f64(q), &f64(k), &f64(v), scale, mask())
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        assert!(max_diff(&fused, &generic) < 1e-5);
    }

    #[test]
    fn padded_rows_compute_exactly_what_they_compute_alone() {
        let dev = Device::Cpu;
        let (h, d, t) = (2, 8, 5);
        let rand = |t| Tensor::randn(0f32, 1.0, (2, h, t, d), &dev).unwrap();
        let (q, k, v) = (rand(t), rand(t), rand(t));
        let pads = [0usize, 2];
        let mask = || Mask::PaddedCausal {
            past: 0,
            pads: &pads,
        };
        let out = attention(&q, &k, &v, 0.3, mask()).unwrap();
        // Row 1 is 3 real tokens after 2 of padding.
        let real = |x: &Tensor| x.i(1..2).unwrap().narrow(2, 2, 3).unwrap();
        let alone = attention(
            &real(&q),
            &real(&k),
            &real(&v),
            0.3,
            Mask::Causal { past: 0 },
        )
        .unwrap();
        let row1 = out.i(1).unwrap();
        assert_eq!(
            max_diff(&row1.narrow(0, 2, 3).unwrap(), &alone.i(0).unwrap()),
            0.0
        );
        assert_eq!(
            crate::kernels::gemm::max_abs(&row1.narrow(0, 0, 2).unwrap()),
            0.0
        );
        // The generic path (f64, additive mask) agrees on every real query.
        let f64 = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
        let generic = attention(&f64(&q), &f64(&k), &f64(&v), 0.3, mask())
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        assert!(max_diff(&out.i(0).unwrap(), &generic.i(0).unwrap()) < 1e-5);
        assert!(
            max_diff(
                &row1.narrow(0, 2, 3).unwrap(),
                &generic.i(1).unwrap().narrow(0, 2, 3).unwrap()
            ) < 1e-5
        );
        // A decode step: one query per row against a cache of 6 keys.
        let (q1, k6, v6) = (rand(1), rand(6), rand(6));
        let step = attention(
            &q1,
            &k6,
            &v6,
            0.3,
            Mask::PaddedCausal {
                past: 5,
                pads: &pads,
            },
        )
        .unwrap();
        let tail = |x: &Tensor| x.i(1..2).unwrap().narrow(2, 2, 4).unwrap();
        let alone = attention(
            &q1.i(1..2).unwrap(),
            &tail(&k6),
            &tail(&v6),
            0.3,
            Mask::Causal { past: 3 },
        )
        .unwrap();
        assert_eq!(max_diff(&step.i(1).unwrap(), &alone.i(0).unwrap()), 0.0);
    }

    #[test]
    fn fused_matches_the_generic_path() {
        let dev = Device::Cpu;
        // q/k/v as strided views of one fused projection, as SigLIP has them.
        let (b, h, t, d) = (2, 3, 7, 8);
        let qkv = Tensor::randn(0f32, 1.0, (b, t, 3, h, d), &dev).unwrap();
        let qkv = qkv.permute((2, 0, 3, 1, 4)).unwrap();
        let (q, k, v) = (qkv.i(0).unwrap(), qkv.i(1).unwrap(), qkv.i(2).unwrap());
        check(&q, &k, &v, 0.3, || Mask::None);

        // Causal with a past: 3 new queries against a 10-key cache view.
        let cache = || {
            Tensor::randn(0f32, 1.0, (b, h, 16, d), &dev)
                .unwrap()
                .narrow(2, 0, 10)
                .unwrap()
        };
        let (k_cache, v_cache) = (cache(), cache());
        let q = Tensor::randn(0f32, 1.0, (b, h, 3, d), &dev).unwrap();
        check(&q, &k_cache, &v_cache, 0.5, || Mask::Causal { past: 7 });

        // One new query (a decode step): the generic path needs no mask.
        let q1 = q.narrow(2, 2, 1).unwrap().contiguous().unwrap();
        check(&q1, &k_cache, &v_cache, 0.5, || Mask::Causal { past: 9 });

        // Several query blocks (QUERY_BLOCK = 64): 150 queries, with and without a past, at
        // a small head size and at SigLIP's.
        for d in [8, 64] {
            let rand = |t| Tensor::randn(0f32, 1.0, (b, h, t, d), &dev).unwrap();
            let (q, k, v) = (rand(150), rand(150), rand(150));
            check(&q, &k, &v, 0.3, || Mask::None);
            check(&q, &k, &v, 0.3, || Mask::Causal { past: 0 });
            let (k, v) = (rand(170), rand(170));
            check(&q, &k, &v, 0.3, || Mask::Causal { past: 20 });
        }
    }

    #[test]
    fn padding_longer_than_a_query_block_gives_zeros_then_the_rows_own_attention() {
        let dev = Device::Cpu;
        let (h, d, t) = (2, 8, 150);
        let rand = |t| Tensor::randn(0f32, 1.0, (2, h, t, d), &dev).unwrap();
        let (q, k, v) = (rand(t), rand(t), rand(t));
        // Row 1: 70 padding tokens (past the first block of queries), then 80 real ones.
        let pads = [0usize, 70];
        let out = attention(
            &q,
            &k,
            &v,
            0.3,
            Mask::PaddedCausal {
                past: 0,
                pads: &pads,
            },
        )
        .unwrap();
        let row1 = out.i(1).unwrap();
        assert_eq!(
            crate::kernels::gemm::max_abs(&row1.narrow(0, 0, 70).unwrap()),
            0.0
        );
        let real = |x: &Tensor| x.i(1..2).unwrap().narrow(2, 70, 80).unwrap();
        let f64 = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
        let alone = attention(
            &f64(&real(&q)),
            &f64(&real(&k)),
            &f64(&real(&v)),
            0.3,
            Mask::Causal { past: 0 },
        )
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
        assert!(max_diff(&row1.narrow(0, 70, 80).unwrap(), &alone.i(0).unwrap()) < 1e-5);
        let whole = |x: &Tensor| x.i(0..1).unwrap();
        let row0 = attention(
            &whole(&q),
            &whole(&k),
            &whole(&v),
            0.3,
            Mask::Causal { past: 0 },
        );
        assert_eq!(max_diff(&out.i(0..1).unwrap(), &row0.unwrap()), 0.0);
    }
}
