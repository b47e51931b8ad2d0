//! `y = x · Wᵀ` for a few input rows (decode steps) with an f32 weight in its checkpoint layout
//! (bf16 weights are packed and go to [`super::packed`]).
//!
//! A decode step is memory-bound: every weight is read once per step and used for one or a few
//! input rows. The general GEMM packs its operands first and splits its work for many rows; here
//! each thread streams a contiguous block of weight rows once, four rows at a time (four memory
//! streams keep more loads in flight than one), and multiplies each against every input row
//! while it sits in L1, up to four input rows per pass (two with AVX2); results differ from a
//! plain dot product only by summation order. Attention's decode step reads its cached keys
//! through the same blocks ([`super::single_query`]).
//!
//! SIMD levels are chosen at run time — AVX-512F, AVX2+FMA, else portable scalar code — and
//! `JANUS_RS_SIMD=scalar|avx2|avx512` caps the level (tests and benchmarks).

use super::{with_cpu_f32, SendPtr};
use std::sync::OnceLock;

use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

/// Up to this many input rows the few-row kernel is used; beyond, a GEMM. Measured on the
/// full-size 1B LLM with then row-major bf16 weights (one token per row, 2-core AVX-512 VM): 17
/// rows 0.46 s here vs 0.84 s through weight panels and the GEMM, 32 rows 0.74 s vs 1.06 s
/// (batched understanding and CFG with up to 16 images decode with such row counts).
pub const FEW_ROWS: usize = 32;
/// Weight rows handled together (each one a memory stream).
pub const ROW_BLOCK: usize = 4;
/// Bytes of weights per parallel task.
const TASK_BYTES: usize = 256 << 10;

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

/// Asks the CPU to bring the cache line holding `p` into L1: a hint that never faults, so any
/// address will do (form it with `wrapping_add`). A single sequential stream per core leaves the
/// hardware prefetcher short of the memory bandwidth; a few kilobytes of software prefetch ahead
/// closes most of the gap.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86_64, and a prefetch reads nothing architecturally.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A weight element type the few-row kernel reads (f32; a trait so that the blocks' callers
/// name their element type).
pub trait WeightElem: Copy + Send + Sync + 'static {
    fn widen(self) -> f32;

    /// Four weight rows against `R` input rows: `out[i][r] = Σ_k w[i][k] · x[r][k]`.
    ///
    /// # Safety
    /// Each `w[i]` and `x[r]` must address `k` valid elements, and the CPU must support `level`.
    unsafe fn block<const R: usize>(
        level: SimdLevel,
        w: [*const Self; ROW_BLOCK],
        x: [*const f32; R],
        k: usize,
    ) -> [[f32; R]; ROW_BLOCK];
}

/// The scalar reference block.
///
/// # Safety
/// As [`WeightElem::block`].
unsafe fn block_scalar<W: WeightElem, const R: usize>(
    w: [*const W; ROW_BLOCK],
    x: [*const f32; R],
    k: usize,
) -> [[f32; R]; ROW_BLOCK] {
    let mut out = [[0f32; R]; ROW_BLOCK];
    for (i, &wp) in w.iter().enumerate() {
        // SAFETY: forwarded to the caller.
        let wr = unsafe { std::slice::from_raw_parts(wp, k) };
        for (r, &xp) in x.iter().enumerate() {
            // SAFETY: as above.
            let xr = unsafe { std::slice::from_raw_parts(xp, k) };
            out[i][r] = wr.iter().zip(xr).map(|(w, x)| w.widen() * x).sum();
        }
    }
    out
}

impl WeightElem for f32 {
    fn widen(self) -> f32 {
        self
    }

    unsafe fn block<const R: usize>(
        level: SimdLevel,
        w: [*const f32; ROW_BLOCK],
        x: [*const f32; R],
        k: usize,
    ) -> [[f32; R]; ROW_BLOCK] {
        // SAFETY: forwarded to the caller (the level was checked against the CPU).
        unsafe {
            match level {
                #[cfg(target_arch = "x86_64")]
                SimdLevel::Avx512 => x86::block_f32_avx512(w, x, k),
                #[cfg(target_arch = "x86_64")]
                SimdLevel::Avx2 => x86::block_f32_avx2(w, x, k),
                _ => block_scalar(w, x, k),
            }
        }
    }
}

/// `x (m × k, f32) · wᵀ` for `w (n × k, f32)`: an (m × n) f32 tensor, computed
/// by [`few_rows`] at the CPU's level. Both on CPU.
pub fn matmul_few_rows(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (m, k) = x.dims2()?;
    let (n, kw) = w.dims2()?;
    if k != kw || x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        candle_core::bail!(
            "matmul_few_rows: x {:?} {:?}, w {:?} {:?}",
            x.dims(),
            x.dtype(),
            w.dims(),
            w.dtype()
        );
    }
    let mut y = vec![0f32; m * n];
    with_cpu_f32("matmul_few_rows", x, |xv| {
        with_cpu_f32("matmul_few_rows", w, |wv| {
            few_rows(simd_level(), xv, wv, (m, n, k), &mut y);
            Ok(())
        })
    })?;
    Tensor::from_vec(y, (m, n), x.device())
}

/// `y (m × n) = x (m × k) · wᵀ` for `w (n × k)`, all row-major, at a given SIMD level (capped at
/// what the CPU supports). Any `m` works; the kernel pays off up to [`FEW_ROWS`].
pub fn few_rows<W: WeightElem>(
    level: SimdLevel,
    x: &[f32],
    w: &[W],
    (m, n, k): (usize, usize, usize),
    y: &mut [f32],
) {
    assert!(x.len() >= m * k && w.len() >= n * k && y.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    let level = level.min(detected_level());
    let row_bytes = (k * std::mem::size_of::<W>()).max(1);
    let rows_per_task = (TASK_BYTES / row_bytes).max(1).next_multiple_of(ROW_BLOCK);
    let y_ptr = SendPtr(y.as_mut_ptr());
    (0..n.div_ceil(rows_per_task))
        .into_par_iter()
        .for_each(|task| {
            let y_ptr = &y_ptr;
            let first = task * rows_per_task;
            let last = (first + rows_per_task).min(n);
            for j0 in (first..last).step_by(ROW_BLOCK) {
                // A short last block repeats its last row; the repeats are not written.
                let rows: [*const W; ROW_BLOCK] =
                    std::array::from_fn(|i| w[(j0 + i).min(last - 1) * k..].as_ptr());
                let live = ROW_BLOCK.min(last - j0);
                let mut r0 = 0;
                while r0 < m {
                    let rows_now = input_rows_per_pass(level, m - r0);
                    let xs = &x[r0 * k..];
                    // SAFETY: every row pointer addresses k elements (asserted lengths), and
                    // `level` is at most the detected level.
                    let out = unsafe {
                        match rows_now {
                            4 => one_pass::<W, 4>(level, rows, xs, k),
                            2 => one_pass::<W, 2>(level, rows, xs, k),
                            _ => one_pass::<W, 1>(level, rows, xs, k),
                        }
                    };
                    for (i, o) in out.iter().enumerate().take(live) {
                        for (r, &v) in o.iter().enumerate().take(rows_now) {
                            // SAFETY: (r0 + r, j0 + i) is inside y (m × n); tasks write disjoint
                            // column ranges.
                            unsafe { *y_ptr.0.add((r0 + r) * n + j0 + i) = v };
                        }
                    }
                    r0 += rows_now;
                }
            }
        });
}

/// The most input rows one pass over a weight block multiplies.
const MAX_INPUT_ROWS: usize = 4;

/// One pass over a weight block for the `R` input rows at the start of `x` (row-major, `k` wide):
/// `out[i][r]` for `r < R`, the rest zero.
///
/// # Safety
/// As [`WeightElem::block`]; `x` holds at least `R` rows.
unsafe fn one_pass<W: WeightElem, const R: usize>(
    level: SimdLevel,
    rows: [*const W; ROW_BLOCK],
    x: &[f32],
    k: usize,
) -> [[f32; MAX_INPUT_ROWS]; ROW_BLOCK] {
    // SAFETY: forwarded to the caller.
    let block =
        unsafe { W::block::<R>(level, rows, std::array::from_fn(|r| x[r * k..].as_ptr()), k) };
    block.map(|src| std::array::from_fn(|r| if r < R { src[r] } else { 0.0 }))
}

/// Input rows per pass over a weight block: each pass widens the block's weights once and keeps
/// `ROW_BLOCK × rows` accumulators in registers. AVX-512 has 32 vector registers, room for four
/// input rows (16 accumulators); AVX2's 16 hold two. Every (weight row, input row) pair is summed
/// in the same order whatever the rows per pass, so a row's result never depends on the rows
/// beside it (batched decoding gives the one-row answers exactly).
fn input_rows_per_pass(level: SimdLevel, remaining: usize) -> usize {
    if level == SimdLevel::Avx512 && remaining >= 4 {
        4
    } else if remaining >= 2 {
        2
    } else {
        1
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::ROW_BLOCK;

    /// One kernel body per (element type, SIMD level): `$load(ptr, i)` gives the widened
    /// weights at `ptr + i`, `$lanes` of them; tails are finished in scalar code.
    macro_rules! block_kernel {
        ($name:ident, $feature:literal, $elem:ty, $vec:ty, $lanes:literal, $zero:ident,
         $fmadd:ident, $loadx:ident, $reduce:path, |$p:ident, $i:ident| $load:expr) => {
            /// # Safety
            /// Every pointer addresses `k` valid elements; the CPU supports the feature.
            #[target_feature(enable = $feature)]
            pub unsafe fn $name<const R: usize>(
                w: [*const $elem; ROW_BLOCK],
                x: [*const f32; R],
                k: usize,
            ) -> [[f32; R]; ROW_BLOCK] {
                let mut acc: [[$vec; R]; ROW_BLOCK] = [[$zero(); R]; ROW_BLOCK];
                let mut i = 0;
                while i + $lanes <= k {
                    let mut xv: [$vec; R] = [$zero(); R];
                    for r in 0..R {
                        xv[r] = unsafe { $loadx(x[r].add(i)) };
                    }
                    for b in 0..ROW_BLOCK {
                        let wv = {
                            let ($p, $i) = (w[b], i);
                            unsafe { $load }
                        };
                        for r in 0..R {
                            acc[b][r] = $fmadd(wv, xv[r], acc[b][r]);
                        }
                    }
                    i += $lanes;
                }
                let mut out = [[0f32; R]; ROW_BLOCK];
                for b in 0..ROW_BLOCK {
                    for r in 0..R {
                        let mut s = unsafe { $reduce(acc[b][r]) };
                        for t in i..k {
                            s += unsafe { f32::from(*w[b].add(t)) * *x[r].add(t) };
                        }
                        out[b][r] = s;
                    }
                }
                out
            }
        };
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn reduce256(v: __m256) -> f32 {
        let half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let half = _mm_add_ps(half, _mm_movehl_ps(half, half));
        _mm_cvtss_f32(_mm_add_ss(half, _mm_shuffle_ps(half, half, 1)))
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn reduce512(v: __m512) -> f32 {
        _mm512_reduce_add_ps(v)
    }

    block_kernel!(
        block_f32_avx512,
        "avx512f",
        f32,
        __m512,
        16,
        _mm512_setzero_ps,
        _mm512_fmadd_ps,
        _mm512_loadu_ps,
        reduce512,
        |p, i| _mm512_loadu_ps(p.add(i))
    );

    block_kernel!(
        block_f32_avx2,
        "avx2,fma",
        f32,
        __m256,
        8,
        _mm256_setzero_ps,
        _mm256_fmadd_ps,
        _mm256_loadu_ps,
        reduce256,
        |p, i| _mm256_loadu_ps(p.add(i))
    );
}

/// Test data and checks shared by the CPU product kernels' tests.
#[cfg(test)]
pub(crate) mod test_data {
    use super::{detected_level, SimdLevel};
    use half::bf16;

    /// Every SIMD level this CPU can run, the scalar reference first.
    pub fn levels() -> Vec<SimdLevel> {
        [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512]
            .into_iter()
            .filter(|&l| l <= detected_level())
            .collect()
    }

    /// x (m × k) and w (n × k): deterministic values of mixed sign and magnitude, the weights
    /// exactly representable in bf16.
    pub fn inputs(m: usize, n: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
        let x = (0..m * k)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 3.0)
            .collect();
        let w = (0..n * k)
            .map(|i| bf16::from_f32(((i * 104729 % 997) as f32 / 997.0 - 0.5) * 0.2).to_f32())
            .collect();
        (x, w)
    }

    /// `x · wᵀ` summed in f64.
    pub fn reference(x: &[f32], w: &[f32], (m, n, k): (usize, usize, usize)) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for r in 0..m {
            for j in 0..n {
                let s: f64 = (0..k)
                    .map(|i| w[j * k + i] as f64 * x[r * k + i] as f64)
                    .sum();
                y[r * n + j] = s as f32;
            }
        }
        y
    }

    /// Every element within `rel` of the largest |want| (at least 1e-3).
    pub fn assert_close(got: &[f32], want: &[f32], rel: f32, what: &str) {
        let scale = want.iter().fold(1e-3f32, |a, v| a.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= rel * scale, "{what}[{i}]: {g} vs {w}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_data::*;
    use super::*;

    #[test]
    fn every_level_matches_the_reference() {
        // Shapes cover: k below and between vector widths, n not a multiple of the row block,
        // odd and even row counts, more rows than FEW_ROWS, tasks of several blocks.
        for &(m, n, k) in &[
            (1, 1, 1),
            (1, 70, 31),
            (2, 130, 64),
            (3, 65, 100),
            (16, 9, 517),
            (17, 5, 40),
            (33, 5, 40),
            (2, 300, 2048),
            (1, 7, 0),
        ] {
            let (x, w) = inputs(m, n, k);
            let want = reference(&x, &w, (m, n, k));
            for level in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
                if level > detected_level() {
                    eprintln!("{level:?} not supported here: not tested");
                    continue;
                }
                let what = format!("{level:?} m={m} n={n} k={k}");
                let mut y = vec![f32::NAN; m * n];
                few_rows(level, &x, &w, (m, n, k), &mut y);
                assert_close(&y, &want, 1e-5, &format!("f32 {what}"));
            }
        }
    }

    #[test]
    fn a_row_s_result_does_not_depend_on_the_rows_beside_it() {
        // Batched decoding relies on it: row r of an m-row product is bit-identical to the
        // product of row r alone, at every level and row count (4-, 2- and 1-row passes mixed).
        let (n, k) = (37, 300);
        for m in 1..=11 {
            let (x, w) = inputs(m, n, k);
            for level in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
                if level > detected_level() {
                    continue;
                }
                let mut all = vec![0f32; m * n];
                few_rows(level, &x, &w, (m, n, k), &mut all);
                for r in 0..m {
                    let mut one = vec![0f32; n];
                    few_rows(level, &x[r * k..(r + 1) * k], &w, (1, n, k), &mut one);
                    let row = &all[r * n..(r + 1) * n];
                    assert!(
                        row.iter()
                            .zip(&one)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{level:?} m={m} row {r}"
                    );
                }
            }
        }
    }

    #[test]
    fn simd_levels_agree_with_the_scalar_reference_closely() {
        // The SIMD kernels only reorder the sum: against the scalar kernel they agree to a few
        // ulps of the result's scale, whatever the level.
        let (m, n, k) = (2, 64, 1000);
        let (x, w) = inputs(m, n, k);
        let mut scalar = vec![0f32; m * n];
        few_rows(SimdLevel::Scalar, &x, &w, (m, n, k), &mut scalar);
        let mut best = vec![0f32; m * n];
        few_rows(detected_level(), &x, &w, (m, n, k), &mut best);
        assert_close(&best, &scalar, 1e-5, "best level vs scalar");
    }
}
