//! `y = x · Wᵀ` with the weight stored in bf16 and everything else in f32, on CPU.
//!
//! The official checkpoints are bf16: keeping their weights in bf16 halves the bytes a decode
//! step streams (it is memory-bound) without changing a single weight. The products widen the
//! weight in registers (a bf16 is the top half of an f32) and accumulate in f32, so results
//! differ from the f32 path only by summation order.
//!
//! - Few rows (decode steps, up to [`FEW_ROWS`]): each weight row is read once from memory and
//!   multiplied against every input row while it sits in L1; threads split the weight rows.
//!   SIMD levels are chosen at run time — AVX-512F, AVX2+FMA, else portable scalar code — and
//!   `JANUS_RS_SIMD=scalar|avx2|avx512` caps the level (tests and benchmarks).
//! - Many rows (prefill, SigLIP): panels of [`PANEL`] weight rows are widened to f32 and handed
//!   to the f32 GEMM, one panel per task.

use std::sync::OnceLock;

use candle_core::{DType, Result, Tensor};
use half::bf16;
use rayon::prelude::*;

use super::gemm::{gemm_f32, Strided};

/// Up to this many input rows, the few-row kernel; beyond, widened panels and the f32 GEMM.
pub const FEW_ROWS: usize = 16;
/// Weight rows widened to f32 at a time on the many-row path.
const PANEL: usize = 64;
/// Weight rows per task on the few-row path (≈ 128 KiB of bf16 at width 1024).
const ROWS_PER_TASK: usize = 64;

/// The instruction-set level of the few-row kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    Scalar,
    Avx2,
    Avx512,
}

/// The best level this CPU supports, capped by `JANUS_RS_SIMD` (read once).
pub fn simd_level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match std::env::var("JANUS_RS_SIMD")
            .ok()
            .as_deref()
            .map(str::trim)
        {
            Some("scalar") => SimdLevel::Scalar,
            Some("avx2") => SimdLevel::Avx2,
            _ => SimdLevel::Avx512,
        };
        detected_level().min(cap)
    })
}

/// The best level the CPU supports.
pub fn detected_level() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            return SimdLevel::Avx512;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return SimdLevel::Avx2;
        }
    }
    SimdLevel::Scalar
}

/// `x (m × k, f32) · wᵀ` for `w (n × k, bf16)`: an (m × n) f32 tensor. Both on CPU.
pub fn matmul_bf16_weight(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (m, k) = x.dims2()?;
    let (n, kw) = w.dims2()?;
    if k != kw || x.dtype() != DType::F32 || w.dtype() != DType::BF16 {
        candle_core::bail!(
            "matmul_bf16_weight: x {:?} {:?}, w {:?} {:?}",
            x.dims(),
            x.dtype(),
            w.dims(),
            w.dtype()
        );
    }
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    let (xs, _) = x.storage_and_layout();
    let (ws, _) = w.storage_and_layout();
    let (candle_core::Storage::Cpu(xs), candle_core::Storage::Cpu(ws)) = (&*xs, &*ws) else {
        candle_core::bail!("matmul_bf16_weight: CPU tensors only");
    };
    let xv = &xs.as_slice::<f32>()?[x.layout().start_offset()..][..m * k];
    let wv = &ws.as_slice::<bf16>()?[w.layout().start_offset()..][..n * k];
    let mut y = vec![0f32; m * n];
    if m <= FEW_ROWS {
        few_rows(simd_level(), xv, wv, (m, n, k), &mut y);
    } else {
        many_rows(xv, wv, (m, n, k), &mut y);
    }
    Tensor::from_vec(y, (m, n), x.device())
}

/// The few-row product at a given level (falls back to scalar where the CPU lacks it).
pub fn few_rows(
    level: SimdLevel,
    x: &[f32],
    w: &[bf16],
    (m, n, k): (usize, usize, usize),
    y: &mut [f32],
) {
    assert!(x.len() >= m * k && w.len() >= n * k && y.len() >= m * n);
    let level = level.min(detected_level());
    // yt is (n × m): each task writes its weight rows' outputs contiguously.
    let mut yt = vec![0f32; n * m];
    yt.par_chunks_mut(ROWS_PER_TASK * m.max(1))
        .enumerate()
        .for_each(|(task, out)| {
            let first = task * ROWS_PER_TASK;
            for (i, out) in out.chunks_mut(m.max(1)).enumerate() {
                let row = &w[(first + i) * k..][..k];
                for (r, o) in out.iter_mut().enumerate() {
                    *o = dot(level, row, &x[r * k..][..k]);
                }
            }
        });
    for j in 0..n {
        for r in 0..m {
            y[r * n + j] = yt[j * m + r];
        }
    }
}

fn dot(level: SimdLevel, w: &[bf16], x: &[f32]) -> f32 {
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the level was checked against the CPU's features (`detected_level`).
        SimdLevel::Avx512 => unsafe { x86::dot_avx512(w, x) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        SimdLevel::Avx2 => unsafe { x86::dot_avx2(w, x) },
        _ => dot_scalar(w, x),
    }
}

/// The scalar reference: widen, multiply, accumulate in f32.
pub fn dot_scalar(w: &[bf16], x: &[f32]) -> f32 {
    w.iter().zip(x).map(|(w, x)| w.to_f32() * x).sum()
}

fn many_rows(x: &[f32], w: &[bf16], (m, n, k): (usize, usize, usize), y: &mut [f32]) {
    let y_ptr = SendPtr(y.as_mut_ptr());
    (0..n.div_ceil(PANEL)).into_par_iter().for_each(|p| {
        let j0 = p * PANEL;
        let rows = PANEL.min(n - j0);
        let panel: Vec<f32> = w[j0 * k..(j0 + rows) * k]
            .iter()
            .map(|v| v.to_f32())
            .collect();
        let y_ptr = &y_ptr;
        // SAFETY: dst is y[:, j0..j0 + rows] (row stride n), disjoint between panels; lhs is x
        // (m × k, row-major); rhs is the panel read as (k × rows) (column j = weight row j).
        unsafe {
            gemm_f32(
                (m, rows, k),
                Strided {
                    ptr: y_ptr.0.add(j0),
                    col_stride: 1,
                    row_stride: n,
                },
                Strided {
                    ptr: x.as_ptr(),
                    col_stride: 1,
                    row_stride: k,
                },
                Strided {
                    ptr: panel.as_ptr(),
                    col_stride: k,
                    row_stride: 1,
                },
                0.0,
                1.0,
                1,
            )
        }
    });
}

struct SendPtr(*mut f32);
// SAFETY: each task writes a disjoint column block of y through it (see `many_rows`).
unsafe impl Sync for SendPtr {}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use half::bf16;

    /// # Safety
    /// The CPU must support AVX-512F; `x.len() >= w.len()`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_avx512(w: &[bf16], x: &[f32]) -> f32 {
        let k = w.len();
        let (wp, xp) = (w.as_ptr() as *const u16, x.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        while i + 32 <= k {
            let w0 = _mm256_loadu_si256(wp.add(i) as *const __m256i);
            let w1 = _mm256_loadu_si256(wp.add(i + 16) as *const __m256i);
            let w0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(w0), 16));
            let w1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(w1), 16));
            acc0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xp.add(i)), acc0);
            acc1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xp.add(i + 16)), acc1);
            i += 32;
        }
        let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
        while i < k {
            sum += w[i].to_f32() * x[i];
            i += 1;
        }
        sum
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA; `x.len() >= w.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_avx2(w: &[bf16], x: &[f32]) -> f32 {
        let k = w.len();
        let (wp, xp) = (w.as_ptr() as *const u16, x.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= k {
            let w0 = _mm_loadu_si128(wp.add(i) as *const __m128i);
            let w1 = _mm_loadu_si128(wp.add(i + 8) as *const __m128i);
            let w0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(w0), 16));
            let w1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(w1), 16));
            acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xp.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xp.add(i + 8)), acc1);
            i += 16;
        }
        let acc = _mm256_add_ps(acc0, acc1);
        let half = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let half = _mm_add_ps(half, _mm_movehl_ps(half, half));
        let mut sum = _mm_cvtss_f32(_mm_add_ss(half, _mm_shuffle_ps(half, half, 1)));
        while i < k {
            sum += w[i].to_f32() * x[i];
            i += 1;
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn data(m: usize, n: usize, k: usize) -> (Vec<f32>, Vec<bf16>) {
        // Deterministic values of mixed sign and magnitude.
        let x = (0..m * k)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 3.0)
            .collect();
        let w = (0..n * k)
            .map(|i| bf16::from_f32(((i * 104729 % 997) as f32 / 997.0 - 0.5) * 0.2))
            .collect();
        (x, w)
    }

    fn reference(x: &[f32], w: &[bf16], (m, n, k): (usize, usize, usize)) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for r in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for i in 0..k {
                    s += w[j * k + i].to_f64() * x[r * k + i] as f64;
                }
                y[r * n + j] = s as f32;
            }
        }
        y
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        let scale = want.iter().fold(1e-3f32, |a, v| a.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 2e-6 * scale * 4.0,
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }

    #[test]
    fn every_level_matches_the_reference() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (1, 70, 31),
            (2, 130, 64),
            (3, 65, 100),
            (16, 9, 517),
        ] {
            let (x, w) = data(m, n, k);
            let want = reference(&x, &w, (m, n, k));
            for level in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
                if level > detected_level() {
                    eprintln!("{level:?} not supported here: not tested");
                    continue;
                }
                let mut y = vec![f32::NAN; m * n];
                few_rows(level, &x, &w, (m, n, k), &mut y);
                assert_close(&y, &want, &format!("{level:?} m={m} n={n} k={k}"));
            }
        }
    }

    #[test]
    fn tensor_entry_point_few_and_many_rows() -> Result<()> {
        for &(m, n, k) in &[(2, 200, 96), (17, 130, 40), (40, 64, 300)] {
            let (x, w) = data(m, n, k);
            let want = reference(&x, &w, (m, n, k));
            let xt = Tensor::from_vec(x, (m, k), &Device::Cpu)?;
            let wt = Tensor::from_vec(w, (n, k), &Device::Cpu)?;
            let y = matmul_bf16_weight(&xt, &wt)?;
            assert_eq!(y.dims(), &[m, n]);
            assert_close(&y.flatten_all()?.to_vec1()?, &want, &format!("m={m}"));
            // Non-contiguous input (a transposed view) gives the same result.
            let xt2 = xt.t()?.contiguous()?.t()?;
            let y2 = matmul_bf16_weight(&xt2, &wt)?;
            assert_eq!(
                y2.flatten_all()?.to_vec1::<f32>()?,
                y.flatten_all()?.to_vec1::<f32>()?
            );
        }
        let x = Tensor::zeros((2, 8), DType::F32, &Device::Cpu)?;
        let w = Tensor::zeros((3, 9), DType::BF16, &Device::Cpu)?;
        assert!(matmul_bf16_weight(&x, &w).is_err());
        Ok(())
    }
}
