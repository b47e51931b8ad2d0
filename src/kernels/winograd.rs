//! 3×3 "same" convolution on CPU with Winograd F(2×2, 3×3) (Lavin & Gray, 2015).
//!
//! Each 2×2 output tile comes from a 4×4 input tile: V = Bᵀ d B per input channel, then for each
//! of the 16 transformed positions ξ one GEMM M_ξ = V_ξ · U_ξ over the channels (U = G g Gᵀ, the
//! transformed weights, prepared once), then Y = Aᵀ M A. That is 16 multiplies per tile and
//! channel pair instead of 36, so the GEMM work is 2.25× smaller than a direct conv; the
//! transforms only add, subtract and halve, so f32 accuracy stays close to the direct form.
//! Tiles are processed in bands of tile rows to keep the transformed buffers small.

use super::{SendConstPtr, SendPtr};
use rayon::prelude::*;

use super::gemm::{gemm_f32, Strided};

/// Transformed weights, laid out [ξ][c_in][c_out], from (c_out, c_in, 3, 3) weights. Input
/// channels in parallel blocks, output channels innermost so each (ξ, c_in) row is written in
/// order (a VQ decoder's transforms took ≈ 2 s of a 1B load written c_out-outermost on one thread).
pub fn transform_weights(w: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    assert_eq!(w.len(), cout * cin * 9, "winograd: weight length");
    const CIN_BLOCK: usize = 16;
    let len = 16 * cin * cout;
    let mut u: Vec<f32> = Vec::with_capacity(len);
    let u_ptr = super::SendPtr(u.as_mut_ptr());
    (0..cin.div_ceil(CIN_BLOCK))
        .into_par_iter()
        .for_each(|block| {
            let u_ptr = &u_ptr;
            for ci in block * CIN_BLOCK..((block + 1) * CIN_BLOCK).min(cin) {
                for co in 0..cout {
                    let g = &w[(co * cin + ci) * 9..(co * cin + ci) * 9 + 9];
                    // G g (4×3), with G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]].
                    let mut gg = [[0f32; 3]; 4];
                    for c in 0..3 {
                        let (g0, g1, g2) = (g[c], g[3 + c], g[6 + c]);
                        gg[0][c] = g0;
                        gg[1][c] = 0.5 * (g0 + g1 + g2);
                        gg[2][c] = 0.5 * (g0 - g1 + g2);
                        gg[3][c] = g2;
                    }
                    // (G g) Gᵀ (4×4).
                    for (r, row) in gg.iter().enumerate() {
                        let (a, b, c) = (row[0], row[1], row[2]);
                        let vals = [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
                        for (s, v) in vals.into_iter().enumerate() {
                            // SAFETY: inside the 16·cin·cout elements; input channel ci belongs to
                            // this block alone, so no other task writes this element.
                            unsafe { *u_ptr.0.add(((r * 4 + s) * cin + ci) * cout + co) = v };
                        }
                    }
                }
            }
        });
    // SAFETY: every (ξ, ci, co) element was written above.
    unsafe { u.set_len(len) };
    u
}

/// One image: `x` (C, H, W) → `out` (C_out, H, W), zero padding 1.
#[allow(clippy::needless_range_loop)] // the transforms read best as matrix indices
pub fn conv3x3(
    x: &[f32],
    out: &mut [f32],
    u: &[f32],
    bias: Option<&[f32]>,
    (c, h, w): (usize, usize, usize),
    cout: usize,
) {
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    // Tile rows per band: about 1024 tiles (measured best: the band stays in cache), at least one row.
    let band = (1024 / tw).clamp(1, th);
    // Layouts [channel][ξ][tile] so each channel's transform is one contiguous chunk.
    let mut v = vec![0f32; 16 * c * band * tw];
    let mut m = vec![0f32; 16 * cout * band * tw];
    for row0 in (0..th).step_by(band) {
        let rows = band.min(th - row0);
        let t = rows * tw; // tiles in this band
        v[..16 * c * t]
            .par_chunks_mut(16 * t)
            .enumerate()
            .for_each(|(ci, dst)| {
                let src = &x[ci * h * w..(ci + 1) * h * w];
                // Zero-padded input rows 2·row0 − 1 … 2·(row0 + rows), columns −1 … 2·tw.
                let (ph, pw) = (2 * rows + 2, 2 * tw + 2);
                let mut pad = vec![0f32; ph * pw];
                for py in 0..ph {
                    let y = (2 * row0 + py).wrapping_sub(1);
                    if y < h {
                        pad[py * pw + 1..py * pw + 1 + w].copy_from_slice(&src[y * w..(y + 1) * w]);
                    }
                }
                for k in 0..t {
                    let (ti, tj) = (k / tw, k % tw);
                    let d = |r: usize, s: usize| pad[(2 * ti + r) * pw + 2 * tj + s];
                    // Bᵀ d: rows combined, Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]].
                    let mut bd = [[0f32; 4]; 4];
                    for s in 0..4 {
                        let (d0, d1, d2, d3) = (d(0, s), d(1, s), d(2, s), d(3, s));
                        bd[0][s] = d0 - d2;
                        bd[1][s] = d1 + d2;
                        bd[2][s] = d2 - d1;
                        bd[3][s] = d1 - d3;
                    }
                    // (Bᵀ d) B: the same combination of columns.
                    for (r, row) in bd.iter().enumerate() {
                        let vals = [
                            row[0] - row[2],
                            row[1] + row[2],
                            row[2] - row[1],
                            row[1] - row[3],
                        ];
                        for (s, val) in vals.into_iter().enumerate() {
                            dst[(r * 4 + s) * t + k] = val;
                        }
                    }
                }
            });
        // The 16 products are independent: one per thread, each single-threaded (cheaper than
        // splitting every small product across threads).
        let (m_ptr, v_ptr) = (SendPtr(m.as_mut_ptr()), SendConstPtr(v.as_ptr()));
        (0..16).into_par_iter().for_each(|xi| {
            let (m_ptr, v_ptr) = (&m_ptr, &v_ptr);
            // SAFETY: M_ξ is (t × cout) with row stride 1 and column stride 16·t inside `m`
            // (last element (cout−1)·16t + ξt + t − 1 < 16·cout·t), and different ξ write
            // disjoint elements; V_ξ is (t × c) likewise inside `v` (read only); U_ξ is
            // (c × cout) row-major inside `u`.
            unsafe {
                gemm_f32(
                    (t, cout, c),
                    Strided {
                        ptr: m_ptr.0.add(xi * t),
                        col_stride: 16 * t,
                        row_stride: 1,
                    },
                    Strided {
                        ptr: v_ptr.0.add(xi * t),
                        col_stride: 16 * t,
                        row_stride: 1,
                    },
                    Strided {
                        ptr: u[xi * c * cout..].as_ptr(),
                        col_stride: 1,
                        row_stride: cout,
                    },
                    0.0,
                    1.0,
                    1,
                );
            }
        });
        // Y = Aᵀ M A per output channel, written into the output plane.
        let m = &m;
        out.par_chunks_mut(h * w).enumerate().for_each(|(co, dst)| {
            let b = bias.map_or(0.0, |b| b[co]);
            for k in 0..t {
                let (ti, tj) = (row0 + k / tw, k % tw);
                let e = |xi: usize| m[(co * 16 + xi) * t + k];
                // Aᵀ = [[1,1,1,0],[0,1,−1,−1]] applied to rows, then to columns.
                let mut rows2 = [[0f32; 4]; 2];
                for s in 0..4 {
                    let (m0, m1, m2, m3) = (e(s), e(4 + s), e(8 + s), e(12 + s));
                    rows2[0][s] = m0 + m1 + m2;
                    rows2[1][s] = m1 - m2 - m3;
                }
                for (a, r) in rows2.iter().enumerate() {
                    let y = 2 * ti + a;
                    if y >= h {
                        continue;
                    }
                    let x0 = 2 * tj;
                    dst[y * w + x0] = r[0] + r[1] + r[2] + b;
                    if x0 + 1 < w {
                        dst[y * w + x0 + 1] = r[1] - r[2] - r[3] + b;
                    }
                }
            }
        });
    }
}
