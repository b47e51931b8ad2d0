//! Element-wise f32 kernels over slices — attention's softmax (with its own `exp`) and the erf
//! GELU — written once as portable code in independent lanes and compiled three times: for
//! AVX-512F, for AVX2+FMA and for the baseline, picked at run time by [`SimdLevel`].
//!
//! The lanes fix the order of every sum and the code has no fused multiply-adds, so all levels
//! compute bit-identical results (the tests check it): a softmax gives the same probabilities on
//! any x86 machine. libm's scalar `expf` took 5 % of SigLIP's time in the softmax, and the GELU
//! loop, compiled for the build machine's baseline (SSE2), a tenth of its MLP.

use super::few_rows::SimdLevel;

/// Lanes of the softmax's loops: four AVX-512 vectors (eight AVX2 ones) of independent work per
/// iteration, which the exponential's long dependency chain needs to keep the vector units busy.
const LANES: usize = 64;

/// `e^x` for x ≤ 88, within 2 ulp of libm's `expf` on [−87, 88] (the test measures it); below
/// −87.33 it returns e^−87.33 (1.2e-38) rather than a denormal or 0, which for softmax (every x
/// ≤ 0 after subtracting the max, the max itself giving 1) changes a probability by at most that.
///
/// Cephes' `expf`: e^x = 2^n · e^r with n = ⌊x·log₂e + ½⌋, r = x − n·ln 2 in two parts, e^r a
/// degree-7 polynomial.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.33, 88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4 * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * (r * r) + r + 1.0;
    // 2^n from the bits of n + 127 + 2^23, whose low mantissa bits are the integer n + 127 (in
    // 1..=254 here); a float-to-int cast would not vectorise (it saturates, lane by lane).
    e * f32::from_bits((n + (127.0 + 8_388_608.0)).to_bits() << 23)
}

/// erf for f32: x·P(x²)/Q(x²) on x clamped to [−4, 4] (erf is ±1 in f32 beyond), with the
/// minimax coefficients Eigen and XLA use for their vectorised float erf; within 5e-7 of libm's
/// `erff` (a few f32 ulps; see the test).
#[inline(always)]
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

#[inline(always)]
fn gelu(v: f32) -> f32 {
    0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2))
}

/// The portable kernels; `#[inline(always)]` so that each wrapper below compiles them for its
/// own target features.
mod portable {
    use super::{exp, gelu, LANES};

    /// e^(v − max) of a block in place, each added to its lane's sum.
    #[inline(always)]
    fn exp_block(block: &mut [f32; LANES], max: f32, sums: &mut [f32; LANES]) {
        for (s, v) in sums.iter_mut().zip(block) {
            *v = exp(*v - max);
            *s += *v;
        }
    }

    #[inline(always)]
    pub fn softmax(row: &mut [f32]) {
        if row.is_empty() {
            return;
        }
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            for (m, &v) in lanes.iter_mut().zip(c) {
                *m = if v > *m { v } else { *m };
            }
        }
        let max = lanes
            .iter()
            .chain(chunks.remainder())
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        let mut sums = [0f32; LANES];
        let mut chunks = row.chunks_exact_mut(LANES);
        for c in &mut chunks {
            exp_block(c.try_into().expect("a whole block"), max, &mut sums);
        }
        // The tail in a block padded with −∞, whose exponentials (1.2e-38 each: see `exp`) vanish
        // next to the sum, which is at least 1 (the max gives e^0).
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            let mut block = [f32::NEG_INFINITY; LANES];
            block[..tail.len()].copy_from_slice(tail);
            exp_block(&mut block, max, &mut sums);
            tail.copy_from_slice(&block[..tail.len()]);
        }
        let inv = 1.0 / sums.iter().sum::<f32>();
        row.iter_mut().for_each(|v| *v *= inv);
    }

    #[inline(always)]
    pub fn silu_mul_into(gate: &[f32], up: &[f32], out: &mut [f32]) {
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            *o = g / (exp(-g) + 1.0) * u;
        }
    }

    #[inline(always)]
    pub fn gelu_into(x: &[f32], out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = gelu(v);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::portable;

    #[target_feature(enable = "avx512f")]
    pub fn softmax_avx512(row: &mut [f32]) {
        portable::softmax(row)
    }

    #[target_feature(enable = "avx2")]
    pub fn softmax_avx2(row: &mut [f32]) {
        portable::softmax(row)
    }

    #[target_feature(enable = "avx512f")]
    pub fn silu_mul_avx512(gate: &[f32], up: &[f32], out: &mut [f32]) {
        portable::silu_mul_into(gate, up, out)
    }

    #[target_feature(enable = "avx2")]
    pub fn silu_mul_avx2(gate: &[f32], up: &[f32], out: &mut [f32]) {
        portable::silu_mul_into(gate, up, out)
    }

    #[target_feature(enable = "avx512f")]
    pub fn gelu_avx512(x: &[f32], out: &mut [f32]) {
        portable::gelu_into(x, out)
    }

    #[target_feature(enable = "avx2")]
    pub fn gelu_avx2(x: &[f32], out: &mut [f32]) {
        portable::gelu_into(x, out)
    }
}

/// Softmax of `row` in place, in f32.
pub fn softmax_in_place(level: SimdLevel, row: &mut [f32]) {
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level` is at most the detected one (`simd_level`), so the CPU has AVX-512F.
        SimdLevel::Avx512 => unsafe { x86::softmax_avx512(row) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, AVX2.
        SimdLevel::Avx2 => unsafe { x86::softmax_avx2(row) },
        _ => portable::softmax(row),
    }
}

/// `out[i] = SiLU(gate[i]) · up[i]`, SiLU(g) = g / (1 + e^−g) as candle computes it; all three
/// the same length.
pub fn silu_mul_into(level: SimdLevel, gate: &[f32], up: &[f32], out: &mut [f32]) {
    assert!(
        gate.len() == out.len() && up.len() == out.len(),
        "silu_mul_into: lengths differ"
    );
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `softmax_in_place`.
        SimdLevel::Avx512 => unsafe { x86::silu_mul_avx512(gate, up, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, AVX2.
        SimdLevel::Avx2 => unsafe { x86::silu_mul_avx2(gate, up, out) },
        _ => portable::silu_mul_into(gate, up, out),
    }
}

/// `out[i] = GELU(x[i])` (the exact erf form); `out` as long as `x`.
pub fn gelu_into(level: SimdLevel, x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "gelu_into: lengths differ");
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `softmax_in_place`.
        SimdLevel::Avx512 => unsafe { x86::gelu_avx512(x, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, AVX2.
        SimdLevel::Avx2 => unsafe { x86::gelu_avx2(x, out) },
        _ => portable::gelu_into(x, out),
    }
}

#[cfg(test)]
mod tests {
    use super::super::few_rows::test_data::levels;
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        let mut worst = 0;
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4;
            worst = worst.max(ulps(exp(x), x.exp()));
        }
        assert!(worst <= 2, "max ulp distance {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1e4), exp(-87.33));
        assert!(exp(f32::NEG_INFINITY) < 2e-38);
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
    }

    /// Every level gives the scalar reference's bits, and those are within 1e-6 (relative) of
    /// the softmax with libm's `expf` that this one replaced.
    #[test]
    fn softmax_levels_agree_bit_for_bit_and_with_libms_exp() {
        for len in [0usize, 1, 5, 16, 17, 100, 577, 1030] {
            let row: Vec<f32> = (0..len)
                .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 40.0)
                .collect();
            let mut want = row.clone();
            softmax_in_place(SimdLevel::Scalar, &mut want);
            for level in levels() {
                let mut got = row.clone();
                softmax_in_place(level, &mut got);
                assert_eq!(got, want, "{level:?}, {len} values");
            }
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = row.iter().map(|&v| (v - max).exp()).collect();
            let inv = 1.0 / e.iter().sum::<f32>();
            for (g, e) in want.iter().zip(&e) {
                let p = e * inv;
                assert!((g - p).abs() <= 1e-6 * p, "{g} vs {p}, {len} values");
            }
        }
    }

    #[test]
    fn silu_mul_levels_agree_bit_for_bit_and_with_libms_exp() {
        let g: Vec<f32> = (0..10_007usize)
            .map(|i| ((i * 104729 % 99991) as f32 / 99991.0 - 0.5) * 200.0)
            .collect();
        let u: Vec<f32> = (0..g.len())
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 4.0)
            .collect();
        let mut want = vec![0f32; g.len()];
        silu_mul_into(SimdLevel::Scalar, &g, &u, &mut want);
        for level in levels() {
            let mut got = vec![0f32; g.len()];
            silu_mul_into(level, &g, &u, &mut got);
            assert_eq!(got, want, "{level:?}");
        }
        for ((&g, &u), &got) in g.iter().zip(&u).zip(&want) {
            let libm = g / ((-g).exp() + 1.0) * u;
            assert!(
                (got - libm).abs() <= 1e-6 * libm.abs() + 1e-30,
                "{g}, {u}: {got} vs {libm}"
            );
        }
    }

    #[test]
    fn gelu_levels_agree_bit_for_bit_and_with_candles_erf() {
        let x: Vec<f32> = (0..40_003usize)
            .map(|i| ((i * 104729 % 99991) as f32 / 99991.0 - 0.5) * 24.0)
            .collect();
        let mut want = vec![0f32; x.len()];
        gelu_into(SimdLevel::Scalar, &x, &mut want);
        for level in levels() {
            let mut got = vec![0f32; x.len()];
            gelu_into(level, &x, &mut got);
            assert_eq!(got, want, "{level:?}");
        }
        for (&v, &g) in x.iter().zip(&want) {
            let exact =
                0.5 * v as f64 * (1.0 + candle_core::cpu::erf::erf_f64(v as f64 / 2f64.sqrt()));
            // GELU values up to about ±12 here: f32 rounding of those is ~1e-6.
            assert!(
                (g as f64 - exact).abs() < 2e-6,
                "GELU({v}) = {g}, want {exact}"
            );
        }
    }
}
