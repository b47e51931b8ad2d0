//! Transposed copies of f32 blocks: `dst[c·dst_stride + r] = src[r·src_stride + c]`.
//!
//! The many-row product hands the GEMM each weight panel k-major (column-major), which it reads
//! as it is; a row-major panel it packs itself, more slowly than a 16 × 16 register transpose
//! (on the 1B's 604-row products k-major panels measured ≈ 5–8 % faster).

use super::few_rows::SimdLevel;

/// Edge of the square tiles the AVX-512 kernel transposes in registers.
pub const TILE: usize = 16;

/// Copies the `rows × cols` block at `src` (row stride `src_stride`) transposed to `dst`:
/// element (r, c) goes to `dst[c · dst_stride + r]`.
///
/// # Safety
/// `src` addresses `rows` rows of `cols` readable f32s at `src_stride`; `dst` addresses `cols`
/// rows of `rows` writable f32s at `dst_stride`; the two do not overlap.
pub unsafe fn transpose(
    level: SimdLevel,
    src: *const f32,
    src_stride: usize,
    (rows, cols): (usize, usize),
    dst: *mut f32,
    dst_stride: usize,
) {
    let mut full_rows = 0;
    let mut full_cols = 0;
    #[cfg(target_arch = "x86_64")]
    if level == SimdLevel::Avx512 {
        full_rows = rows - rows % TILE;
        full_cols = cols - cols % TILE;
        for r0 in (0..full_rows).step_by(TILE) {
            for c0 in (0..full_cols).step_by(TILE) {
                // SAFETY: the tile lies inside both blocks (as the caller says); the level is
                // only AVX-512 on a CPU that has it.
                unsafe {
                    x86::tile_avx512(
                        src.add(r0 * src_stride + c0),
                        src_stride,
                        dst.add(c0 * dst_stride + r0),
                        dst_stride,
                    )
                };
            }
        }
    }
    let _ = level;
    // SAFETY (all three): the parts of the block the tiles left, inside it as the caller says.
    unsafe {
        transpose_scalar(
            src,
            src_stride,
            (full_rows, cols - full_cols),
            0,
            full_cols,
            dst,
            dst_stride,
        );
        transpose_scalar(
            src,
            src_stride,
            (rows - full_rows, cols),
            full_rows,
            0,
            dst,
            dst_stride,
        );
    }
}

/// The scalar reference: rows `r0 .. r0 + rows`, columns `c0 .. c0 + cols` of the block.
///
/// # Safety
/// As [`transpose`], for the block that contains the addressed part.
unsafe fn transpose_scalar(
    src: *const f32,
    src_stride: usize,
    (rows, cols): (usize, usize),
    r0: usize,
    c0: usize,
    dst: *mut f32,
    dst_stride: usize,
) {
    for r in r0..r0 + rows {
        for c in c0..c0 + cols {
            // SAFETY: (r, c) is inside the block, as the caller says.
            unsafe { *dst.add(c * dst_stride + r) = *src.add(r * src_stride + c) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::TILE;
    use std::arch::x86_64::*;

    /// One 16 × 16 tile: pairs of rows interleaved by lanes, then by lane pairs, then the
    /// 128-bit quarters gathered across registers in two shuffles.
    ///
    /// # Safety
    /// The CPU supports AVX-512 F; 16 rows of 16 f32s are readable at `src` (stride
    /// `src_stride`) and writable at `dst` (stride `dst_stride`).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile_avx512(
        src: *const f32,
        src_stride: usize,
        dst: *mut f32,
        dst_stride: usize,
    ) {
        let mut r = [_mm512_setzero_ps(); TILE];
        for (i, v) in r.iter_mut().enumerate() {
            // SAFETY: as the caller says.
            *v = unsafe { _mm512_loadu_ps(src.add(i * src_stride)) };
        }
        // t[2i], t[2i + 1]: rows 2i, 2i + 1 interleaved, lanes (0, 1) and (2, 3) of each quarter.
        let mut t = [_mm512_setzero_ps(); TILE];
        for i in 0..TILE / 2 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        // s[4g + j], quarter q: column 4q + j of rows 4g .. 4g + 4.
        let mut s = [_mm512_setzero_ps(); TILE];
        for g in 0..TILE / 4 {
            let pd = |v: __m512| _mm512_castps_pd(v);
            let (a, b, c, d) = (
                pd(t[4 * g]),
                pd(t[4 * g + 1]),
                pd(t[4 * g + 2]),
                pd(t[4 * g + 3]),
            );
            s[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
            s[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
            s[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
            s[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
        }
        for j in 0..4 {
            // Quarters (0, 1) and (2, 3) of row groups (0, 1) and (2, 3) for column offset j.
            let a01 = _mm512_shuffle_f32x4::<0x44>(s[j], s[4 + j]);
            let a23 = _mm512_shuffle_f32x4::<0xEE>(s[j], s[4 + j]);
            let b01 = _mm512_shuffle_f32x4::<0x44>(s[8 + j], s[12 + j]);
            let b23 = _mm512_shuffle_f32x4::<0xEE>(s[8 + j], s[12 + j]);
            let out = [
                _mm512_shuffle_f32x4::<0x88>(a01, b01),
                _mm512_shuffle_f32x4::<0xDD>(a01, b01),
                _mm512_shuffle_f32x4::<0x88>(a23, b23),
                _mm512_shuffle_f32x4::<0xDD>(a23, b23),
            ];
            for (q, v) in out.into_iter().enumerate() {
                // SAFETY: column 4q + j of the tile is row 4q + j of the destination tile.
                unsafe { _mm512_storeu_ps(dst.add((4 * q + j) * dst_stride), v) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::few_rows::test_data::levels;
    use super::*;

    /// Every level against the scalar reference, on blocks with and without partial tiles, at
    /// strides wider than the block.
    #[test]
    fn every_level_transposes_like_the_reference() {
        for &(rows, cols) in &[
            (16, 16),
            (64, 2048),
            (37, 50),
            (5, 3),
            (16, 47),
            (70, 16),
            (0, 9),
        ] {
            let (src_stride, dst_stride) = (cols + 3, rows + 5);
            let src: Vec<f32> = (0..rows * src_stride)
                .map(|i| i as f32 * 0.5 - 7.0)
                .collect();
            for level in levels() {
                let mut dst = vec![f32::NAN; cols * dst_stride];
                // SAFETY: both buffers hold the blocks at their strides.
                unsafe {
                    transpose(
                        level,
                        src.as_ptr(),
                        src_stride,
                        (rows, cols),
                        dst.as_mut_ptr(),
                        dst_stride,
                    )
                };
                for r in 0..rows {
                    for c in 0..cols {
                        assert_eq!(
                            dst[c * dst_stride + r].to_bits(),
                            src[r * src_stride + c].to_bits(),
                            "{level:?} {rows}×{cols} at ({r}, {c})"
                        );
                    }
                }
                // Nothing outside the block is written.
                for c in 0..cols {
                    assert!(dst[c * dst_stride + rows..(c + 1) * dst_stride]
                        .iter()
                        .all(|v| v.is_nan()));
                }
            }
        }
    }
}
