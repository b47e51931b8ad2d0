//! The AVX-512 VNNI q4_K · q8_K dot product, up to four activation rows per weight block.
//!
//! A q4_K block holds 256 weights in eight sub-blocks of 32, each with a 6-bit scale and min:
//! `w = d · scale_j · q − dmin · min_j`, q in 0..16. Bytes `32p..32p + 32` of `qs` hold
//! sub-block 2p in their low nibbles and 2p + 1 in their high ones, so one 64-byte vector of
//! both nibble halves lines up with 64 consecutive q8_K values, and `vpdpbusd` (u8 · i8, four
//! products per i32 lane) leaves sub-block 2p's sums in lanes 0..8 and 2p + 1's in lanes 8..16.

use std::arch::x86_64::*;

use candle_core::quantized::k_quants::{BlockQ4K, BlockQ8K};

/// candle's q4_K block, field for field (its fields are crate-private).
#[repr(C)]
struct Q4K {
    d: u16,
    dmin: u16,
    scales: [u8; 12],
    qs: [u8; 128],
}

/// candle's q8_K block, field for field.
#[repr(C)]
struct Q8K {
    d: f32,
    qs: [i8; 256],
    bsums: [i16; 16],
}

const _: () = assert!(std::mem::size_of::<Q4K>() == std::mem::size_of::<BlockQ4K>());
const _: () = assert!(std::mem::align_of::<Q4K>() == std::mem::align_of::<BlockQ4K>());
const _: () = assert!(std::mem::size_of::<Q8K>() == std::mem::size_of::<BlockQ8K>());
const _: () = assert!(std::mem::align_of::<Q8K>() == std::mem::align_of::<BlockQ8K>());

/// The eight 6-bit scales and eight mins of a block's 12 packed bytes (ggml's
/// `get_scale_min_k4`), as two little-endian u64 of eight bytes each.
#[inline(always)]
fn scales_and_mins(packed: &[u8; 12]) -> (u64, u64) {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let word =
        |i: usize| u32::from_le_bytes([packed[i], packed[i + 1], packed[i + 2], packed[i + 3]]);
    let (u0, u1, u2) = (word(0), word(4), word(8));
    let scales_lo = u0 & KMASK1;
    let scales_hi = (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4);
    let mins_lo = u1 & KMASK1;
    let mins_hi = ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4);
    (
        scales_lo as u64 | (scales_hi as u64) << 32,
        mins_lo as u64 | (mins_hi as u64) << 32,
    )
}

/// What the dot products need of one q8_K row besides its blocks: per block, the eight
/// sub-block sums of its values times the block's scale (the part the weights' mins multiply).
pub(super) fn min_sums(row: &[BlockQ8K]) -> Vec<[f32; 8]> {
    // SAFETY: Q8K is candle's block field for field (asserted above).
    let row = unsafe { std::slice::from_raw_parts(row.as_ptr().cast::<Q8K>(), row.len()) };
    row.iter()
        .map(|b| std::array::from_fn(|j| b.d * f32::from(b.bsums[2 * j] + b.bsums[2 * j + 1])))
        .collect()
}

/// Bytes ahead of the block being read that each block asks the CPU to fetch: one stream per
/// core does not reach the memory bandwidth on the hardware prefetcher alone.
const PREFETCH_AHEAD: usize = 2048;

/// `out[i] = w · rows[i]` for `rows.len()` ≤ 4 rows (blocks and [`min_sums`]), each as many
/// blocks long as `w`.
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
pub(super) unsafe fn dot_rows_avx512_vnni(
    w: &[BlockQ4K],
    rows: &[(&[BlockQ8K], &[[f32; 8]])],
    out: &mut [f32; 4],
) {
    match rows.len() {
        1 => dot::<1>(w, rows, out),
        2 => dot::<2>(w, rows, out),
        3 => dot::<3>(w, rows, out),
        4 => dot::<4>(w, rows, out),
        n => panic!("dot_rows_avx512_vnni: {n} rows (1 to 4)"),
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
unsafe fn dot<const R: usize>(
    w: &[BlockQ4K],
    rows: &[(&[BlockQ8K], &[[f32; 8]])],
    out: &mut [f32; 4],
) {
    // SAFETY (casts): Q4K and Q8K are candle's blocks field for field (size and alignment
    // asserted above; candle declares both repr(C)).
    let w = std::slice::from_raw_parts(w.as_ptr().cast::<Q4K>(), w.len());
    let x: [(&[Q8K], &[[f32; 8]]); R] = std::array::from_fn(|r| {
        let (blocks, sums) = rows[r];
        assert!(
            blocks.len() == w.len() && sums.len() == w.len(),
            "a row does not match the weight"
        );
        (
            std::slice::from_raw_parts(blocks.as_ptr().cast::<Q8K>(), blocks.len()),
            sums,
        )
    });
    let low_nibbles = _mm256_set1_epi8(0x0f);
    // Lanes 0..8 take sub-block 2p's scale, lanes 8..16 sub-block 2p + 1's.
    let pair_index: [__m512i; 4] = std::array::from_fn(|p| {
        _mm512_mask_set1_epi32(_mm512_set1_epi32(2 * p as i32), 0xff00, 2 * p as i32 + 1)
    });
    let mut acc = [_mm512_setzero_ps(); R];
    let mut acc_min = [_mm256_setzero_ps(); R];
    for (b, wb) in w.iter().enumerate() {
        let ahead = (wb as *const Q4K).cast::<i8>().wrapping_add(PREFETCH_AHEAD);
        _mm_prefetch::<_MM_HINT_T0>(ahead);
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(128));
        let d = half::f16::from_bits(wb.d).to_f32();
        let dmin = half::f16::from_bits(wb.dmin).to_f32();
        let (scales, mins) = scales_and_mins(&wb.scales);
        let scales32 = _mm512_cvtepu8_epi32(_mm_cvtsi64_si128(scales as i64));
        let scale: [__m512; 4] = std::array::from_fn(|p| {
            _mm512_cvtepi32_ps(_mm512_permutexvar_epi32(pair_index[p], scales32))
        });
        let mins = _mm256_mul_ps(
            _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(mins as i64))),
            _mm256_set1_ps(-dmin),
        );
        let mut block = [_mm512_setzero_ps(); R];
        for (p, scale) in scale.iter().enumerate() {
            let bits = _mm256_loadu_si256(wb.qs.as_ptr().add(32 * p).cast());
            let lo = _mm256_and_si256(bits, low_nibbles);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), low_nibbles);
            let wq = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
            for r in 0..R {
                let xq = _mm512_loadu_si512(x[r].0[b].qs.as_ptr().add(64 * p).cast());
                let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq, xq);
                block[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), *scale, block[r]);
            }
        }
        for r in 0..R {
            acc[r] = _mm512_fmadd_ps(block[r], _mm512_set1_ps(d * x[r].0[b].d), acc[r]);
            let sums = _mm256_loadu_ps(x[r].1[b].as_ptr());
            acc_min[r] = _mm256_fmadd_ps(mins, sums, acc_min[r]);
        }
    }
    for r in 0..R {
        let m = acc_min[r];
        let m = _mm_add_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_add_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_add_ss(m, _mm_movehdup_ps(m));
        out[r] = _mm512_reduce_add_ps(acc[r]) + _mm_cvtss_f32(m);
    }
}

/// candle's `BlockQ4K::to_float`, bit for bit (the same multiply, then subtract), 16 lanes wide.
///
/// # Safety
/// The CPU must support AVX-512 F and BW.
#[target_feature(enable = "avx512f,avx512bw,avx2")]
pub(super) unsafe fn dequantize_avx512(w: &[BlockQ4K], out: &mut [f32]) {
    assert_eq!(out.len(), w.len() * 256, "dequantize: output length");
    // SAFETY: as in `dot`.
    let w = std::slice::from_raw_parts(w.as_ptr().cast::<Q4K>(), w.len());
    let low_nibbles = _mm256_set1_epi8(0x0f);
    for (wb, y) in w.iter().zip(out.chunks_exact_mut(256)) {
        let d = half::f16::from_bits(wb.d).to_f32();
        let dmin = half::f16::from_bits(wb.dmin).to_f32();
        let (scales, mins) = scales_and_mins(&wb.scales);
        let byte = |v: u64, j: usize| ((v >> (8 * j)) & 0xff) as f32;
        for p in 0..4 {
            let bits = _mm256_loadu_si256(wb.qs.as_ptr().add(32 * p).cast());
            let lo = _mm256_and_si256(bits, low_nibbles);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), low_nibbles);
            for (h, nibbles) in [lo, hi].into_iter().enumerate() {
                let j = 2 * p + h;
                let scale = _mm512_set1_ps(d * byte(scales, j));
                let min = _mm512_set1_ps(dmin * byte(mins, j));
                let halves = [
                    _mm256_castsi256_si128(nibbles),
                    _mm256_extracti128_si256::<1>(nibbles),
                ];
                for (q, bytes) in halves.into_iter().enumerate() {
                    let v = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes));
                    let v = _mm512_sub_ps(_mm512_mul_ps(scale, v), min);
                    _mm512_storeu_ps(y.as_mut_ptr().add(64 * p + 32 * h + 16 * q), v);
                }
            }
        }
    }
}
