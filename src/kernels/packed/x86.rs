//! The x86 kernels of [`super`]: AVX-512 and AVX2 micro-kernels and widening.

use std::arch::x86_64::*;

use super::super::few_rows::prefetch;
use super::NR;

/// k-rows ahead that the kernels prefetch.
const PREFETCH_ROWS: usize = 32;

/// AVX-512: per k-row one 64-byte load gives both f32 vectors of the panel; 2·R
/// accumulators.
///
/// # Safety
/// As [`super::micro_scalar`]; the CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn micro_avx512<const R: usize>(
    x: *const f32,
    w: *const u16,
    kc: usize,
    y: *mut f32,
    ys: usize,
) {
    let high = _mm512_set1_epi32(0xFFFF_0000u32 as i32);
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for kk in 0..kc {
        // SAFETY: as the caller says.
        let v = unsafe { _mm512_loadu_si512(w.add(kk * NR) as *const _) };
        // A k-row is one cache line; the hardware prefetcher alone leaves a single stream
        // per core short of the memory bandwidth (1 row: 0.14 → 0.10 s per LLM step).
        prefetch(w.wrapping_add((kk + PREFETCH_ROWS) * NR));
        let lo = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
        let hi = _mm512_castsi512_ps(_mm512_and_si512(v, high));
        for (r, a) in acc.iter_mut().enumerate() {
            let b = _mm512_set1_ps(unsafe { *x.add(kk * R + r) });
            a[0] = _mm512_fmadd_ps(b, lo, a[0]);
            a[1] = _mm512_fmadd_ps(b, hi, a[1]);
        }
    }
    for (r, a) in acc.iter().enumerate() {
        // SAFETY: as the caller says.
        unsafe {
            let yp = y.add(r * ys);
            _mm512_storeu_ps(yp, _mm512_add_ps(_mm512_loadu_ps(yp), a[0]));
            let yp = yp.add(NR / 2);
            _mm512_storeu_ps(yp, _mm512_add_ps(_mm512_loadu_ps(yp), a[1]));
        }
    }
}

/// [`super::widen_columns`] for a whole panel with AVX-512: a k-row's 64 bytes give
/// outputs 0..16 (shifted) and 16..32 (masked).
///
/// # Safety
/// As [`super::widen_columns`] with `live == NR`; the CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn widen_columns_avx512(panel: &[u16], dst: *mut f32, stride: usize) {
    let high = _mm512_set1_epi32(0xFFFF_0000u32 as i32);
    for (kk, line) in panel.chunks_exact(NR).enumerate() {
        // SAFETY: a k-row is NR (32) u16s; dst as the caller says.
        unsafe {
            let v = _mm512_loadu_si512(line.as_ptr() as *const _);
            let d = dst.add(kk * stride);
            _mm512_storeu_ps(d, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
            _mm512_storeu_ps(
                d.add(NR / 2),
                _mm512_castsi512_ps(_mm512_and_si512(v, high)),
            );
        }
    }
}

/// [`super::widen_columns`] for a whole panel with AVX2: the k-row's first 32 bytes give
/// outputs 0..8 and 16..24, its last 32 bytes outputs 8..16 and 24..32.
///
/// # Safety
/// As [`super::widen_columns`] with `live == NR`; the CPU supports AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn widen_columns_avx2(panel: &[u16], dst: *mut f32, stride: usize) {
    let high = _mm256_set1_epi32(0xFFFF_0000u32 as i32);
    for (kk, line) in panel.chunks_exact(NR).enumerate() {
        for h in 0..2 {
            // SAFETY: a k-row is NR (32) u16s; dst as the caller says.
            unsafe {
                let v = _mm256_loadu_si256(line.as_ptr().add(16 * h) as *const __m256i);
                let d = dst.add(kk * stride + 8 * h);
                _mm256_storeu_ps(d, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
                _mm256_storeu_ps(
                    d.add(NR / 2),
                    _mm256_castsi256_ps(_mm256_and_si256(v, high)),
                );
            }
        }
    }
}

/// AVX2: 16 registers hold R ≤ 4 rows of one half of the panel at a time (outputs
/// 8h..8h+8 and 16+8h..16+8h+8 come from the half's 32-byte load).
///
/// # Safety
/// As [`super::micro_scalar`]; the CPU supports AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn micro_avx2<const R: usize>(
    x: *const f32,
    w: *const u16,
    kc: usize,
    y: *mut f32,
    ys: usize,
) {
    let high = _mm256_set1_epi32(0xFFFF_0000u32 as i32);
    for h in 0..2 {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for kk in 0..kc {
            // SAFETY: as the caller says.
            let v = unsafe { _mm256_loadu_si256(w.add(kk * NR + 16 * h) as *const __m256i) };
            prefetch(w.wrapping_add((kk + PREFETCH_ROWS) * NR));
            let lo = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
            let hi = _mm256_castsi256_ps(_mm256_and_si256(v, high));
            for (r, a) in acc.iter_mut().enumerate() {
                let b = _mm256_set1_ps(unsafe { *x.add(kk * R + r) });
                a[0] = _mm256_fmadd_ps(b, lo, a[0]);
                a[1] = _mm256_fmadd_ps(b, hi, a[1]);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            // SAFETY: as the caller says.
            unsafe {
                let yp = y.add(r * ys + 8 * h);
                _mm256_storeu_ps(yp, _mm256_add_ps(_mm256_loadu_ps(yp), a[0]));
                let yp = yp.add(NR / 2);
                _mm256_storeu_ps(yp, _mm256_add_ps(_mm256_loadu_ps(yp), a[1]));
            }
        }
    }
}
