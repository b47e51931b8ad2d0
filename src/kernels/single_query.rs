//! Attention of one query over a KV cache — the decode step — for one (row, head).
//!
//! A decode step reads every cached key and value once and does two multiply-adds per element:
//! it is memory-bound, and at the default answer length the KV cache, not the weights, is most
//! of what a batched step reads. The general GEMM packs (copies) its operands first; here the
//! scores are four keys per pass of the few-row kernel straight from the cache, and the output is
//! one sweep over the values with the output row held in registers. SIMD levels as in
//! [`super::few_rows`] (runtime dispatch, `JANUS_RS_SIMD` caps it), with a scalar reference.

use super::few_rows::{SimdLevel, WeightElem, ROW_BLOCK};

/// `scores[j] = scale · (q · k_j)` for the `scores.len()` keys `k_j = k + j·k_stride`, each `d`
/// long.
///
/// # Safety
/// `q` addresses `d` valid f32s, and every `k_j` (j < scores.len()) `d` valid f32s; the CPU
/// supports `level`.
pub unsafe fn scores(
    level: SimdLevel,
    q: *const f32,
    k: *const f32,
    k_stride: usize,
    d: usize,
    scale: f32,
    scores: &mut [f32],
) {
    let level = level.min(super::few_rows::detected_level());
    let n = scores.len();
    let mut j0 = 0;
    while j0 < n {
        // A short last block repeats its last key; the repeats are not written.
        // SAFETY: (j0 + i).min(n - 1) < n keys, valid per the caller.
        let keys: [*const f32; ROW_BLOCK] =
            std::array::from_fn(|i| unsafe { k.add((j0 + i).min(n - 1) * k_stride) });
        // SAFETY: forwarded to the caller.
        let dots = unsafe { f32::block::<1>(level, keys, [q], d) };
        for (s, dot) in scores[j0..].iter_mut().zip(dots) {
            *s = dot[0] * scale;
        }
        j0 += ROW_BLOCK;
    }
}

/// `out = Σ_j p[j] · v_j` for the `p.len()` values `v_j = v + j·v_stride`, each `out.len()`
/// long. Every output element is summed over j in order, at every level.
///
/// # Safety
/// Every `v_j` addresses `out.len()` valid f32s; the CPU supports `level`.
pub unsafe fn weighted_sum(
    level: SimdLevel,
    p: &[f32],
    v: *const f32,
    v_stride: usize,
    out: &mut [f32],
) {
    // SAFETY: forwarded to the caller (the level is at most what the CPU supports).
    unsafe {
        match level.min(super::few_rows::detected_level()) {
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => x86::weighted_sum_avx512(p, v, v_stride, out),
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => x86::weighted_sum_avx2(p, v, v_stride, out),
            _ => weighted_sum_scalar(p, v, v_stride, out),
        }
    }
}

/// The scalar reference.
///
/// # Safety
/// As [`weighted_sum`].
unsafe fn weighted_sum_scalar(p: &[f32], v: *const f32, v_stride: usize, out: &mut [f32]) {
    for (c, o) in out.iter_mut().enumerate() {
        let mut s = 0f32;
        for (j, &pj) in p.iter().enumerate() {
            // SAFETY: column c < out.len() of value j < p.len().
            s += pj * unsafe { *v.add(j * v_stride + c) };
        }
        *o = s;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Accumulator registers per sweep over the values: 8 × 16 = 128 columns with AVX-512 (one
    /// sweep for the LLMs' head size), 8 × 8 with AVX2.
    const VECTORS: usize = 8;

    macro_rules! weighted_sum_kernel {
        ($name:ident, $feature:literal, $vec:ty, $lanes:literal, $zero:ident, $set1:ident,
         $fmadd:ident, $load:ident, $store:ident) => {
            /// # Safety
            /// As [`super::weighted_sum`]; the CPU supports the feature.
            #[target_feature(enable = $feature)]
            pub unsafe fn $name(p: &[f32], v: *const f32, v_stride: usize, out: &mut [f32]) {
                let d = out.len();
                let mut c = 0;
                // Full sweeps of VECTORS registers, then single registers, then scalar columns.
                while c + VECTORS * $lanes <= d {
                    let mut acc: [$vec; VECTORS] = [$zero(); VECTORS];
                    for (j, &pj) in p.iter().enumerate() {
                        let pv = $set1(pj);
                        let row = unsafe { v.add(j * v_stride + c) };
                        for (u, a) in acc.iter_mut().enumerate() {
                            *a = $fmadd(pv, unsafe { $load(row.add(u * $lanes)) }, *a);
                        }
                    }
                    for (u, a) in acc.iter().enumerate() {
                        unsafe { $store(out.as_mut_ptr().add(c + u * $lanes), *a) };
                    }
                    c += VECTORS * $lanes;
                }
                while c + $lanes <= d {
                    let mut a = $zero();
                    for (j, &pj) in p.iter().enumerate() {
                        a = $fmadd($set1(pj), unsafe { $load(v.add(j * v_stride + c)) }, a);
                    }
                    unsafe { $store(out.as_mut_ptr().add(c), a) };
                    c += $lanes;
                }
                for col in c..d {
                    let mut s = 0f32;
                    for (j, &pj) in p.iter().enumerate() {
                        s = pj.mul_add(unsafe { *v.add(j * v_stride + col) }, s);
                    }
                    out[col] = s;
                }
            }
        };
    }

    weighted_sum_kernel!(
        weighted_sum_avx512,
        "avx512f",
        __m512,
        16,
        _mm512_setzero_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps
    );

    weighted_sum_kernel!(
        weighted_sum_avx2,
        "avx2,fma",
        __m256,
        8,
        _mm256_setzero_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::few_rows::test_data::assert_close;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        // A small LCG: deterministic, no extra dependency.
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                (s >> 8) as f32 / (1 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn every_level_matches_the_scalar_reference() {
        // Head sizes with and without full sweeps and tails; key counts not a multiple of 4;
        // a row stride wider than the head (a cache with several heads per position).
        for (d, n, stride) in [
            (128, 37, 128),
            (64, 5, 96),
            (72, 9, 200),
            (3, 1, 3),
            (130, 4, 130),
        ] {
            let q = data(d, 1);
            let kv = data(n * stride, 2);
            let p = data(n, 3);
            let mut want_scores = vec![0f32; n];
            for (j, s) in want_scores.iter_mut().enumerate() {
                *s = 0.7 * (0..d).map(|c| q[c] * kv[j * stride + c]).sum::<f32>();
            }
            let mut want_sum = vec![0f32; d];
            // SAFETY: n values of d elements at the given stride.
            unsafe { weighted_sum_scalar(&p, kv.as_ptr(), stride, &mut want_sum) };
            // Levels above the CPU's run at the CPU's.
            for level in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
                let mut got = vec![0f32; n];
                // SAFETY: as above; the level is supported.
                unsafe { scores(level, q.as_ptr(), kv.as_ptr(), stride, d, 0.7, &mut got) };
                assert_close(
                    &got,
                    &want_scores,
                    1e-5,
                    &format!("scores {level:?} d={d} n={n}"),
                );
                let mut got = vec![0f32; d];
                // SAFETY: as above.
                unsafe { weighted_sum(level, &p, kv.as_ptr(), stride, &mut got) };
                assert_close(&got, &want_sum, 1e-5, &format!("sum {level:?} d={d} n={n}"));
            }
        }
    }
}
