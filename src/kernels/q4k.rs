//! Products with q4_K weights read in place from candle's blocks (`y = x · Wᵀ`, f32 in and
//! out), so a quantized matrix is held once. candle's own CPU product repacks every q4_K matrix
//! into a second copy on first use (and, with AMX, a third for many rows); Janus-Pro-7B's LLM is
//! 3.65 GB of q4_K blocks, so that copy alone decides whether 7B fits in 9 GB.
//!
//! Few rows (decode steps): each row is quantized to q8_K as llama.cpp does and dotted with the
//! weight's blocks — with AVX-512 VNNI four rows share each decoded weight block; otherwise
//! candle's dot product (its AVX2 kernel where available). Many rows (prefills): panels of the
//! weight are dequantized to f32 and go through the f32 GEMM, as bf16 weights do.

use candle_core::quantized::k_quants::{BlockQ4K, BlockQ8K, GgmlType, QK_K};
use rayon::prelude::*;

use super::few_rows::{simd_level, SimdLevel};
use super::SendPtr;

/// Weights per q4_K (and q8_K) block.
pub const BLOCK: usize = QK_K;

/// Up to this many rows a product takes the quantized dot products; more take the GEMM.
pub const FEW_ROWS: usize = 16;

/// Output columns per rayon task of the few-row path.
const COLUMNS_PER_TASK: usize = 64;

/// The kernel a few-row product runs on this CPU (`JANUS_RS_SIMD` caps it as elsewhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DotLevel {
    /// candle's portable dot product (`vec_dot_unopt`): the reference.
    Scalar,
    /// candle's dot product with its own dispatch (its AVX2 kernel on AVX2 CPUs).
    Candle,
    /// Ours: AVX-512 with VNNI, up to four rows per decoded weight block.
    Avx512Vnni,
}

pub fn dot_level() -> DotLevel {
    match simd_level() {
        SimdLevel::Scalar => DotLevel::Scalar,
        SimdLevel::Avx2 => DotLevel::Candle,
        SimdLevel::Avx512 => {
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vnni") {
                return DotLevel::Avx512Vnni;
            }
            DotLevel::Candle
        }
    }
}

/// A q4_K matrix's blocks (candle's storage bytes) as blocks: `n` rows of `k / 256` blocks.
pub fn blocks(bytes: &[u8], n: usize, k: usize) -> candle_core::Result<&[BlockQ4K]> {
    let size = std::mem::size_of::<BlockQ4K>();
    let count = n * (k / QK_K);
    if !k.is_multiple_of(QK_K)
        || bytes.len() != count * size
        || bytes
            .as_ptr()
            .align_offset(std::mem::align_of::<BlockQ4K>())
            != 0
    {
        candle_core::bail!(
            "q4_K weight of {} bytes does not hold {n} × {k} (or is misaligned)",
            bytes.len()
        )
    }
    // SAFETY: BlockQ4K is repr(C) plain data (two f16, 12 scale bytes, 128 nibble bytes); length and alignment checked.
    Ok(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<BlockQ4K>(), count) })
}

/// `x` (m × k, row-major) quantized to q8_K, row by row.
pub fn quantize_rows(x: &[f32], m: usize, k: usize) -> Vec<BlockQ8K> {
    let per_row = k / QK_K;
    let mut out = vec![BlockQ8K::zeros(); m * per_row];
    out.par_chunks_mut(per_row.max(1))
        .zip(x.par_chunks(k.max(1)))
        .for_each(|(dst, row)| BlockQ8K::from_float(row, dst));
    out
}

/// `y (m × n) = x · Wᵀ` for `m ≤ FEW_ROWS` rows of `x` (m × k) and a q4_K weight W (n × k).
pub fn matmul_few_rows(
    level: DotLevel,
    x: &[f32],
    m: usize,
    w: &[BlockQ4K],
    (n, k): (usize, usize),
    y: &mut [f32],
) {
    assert!(
        k.is_multiple_of(QK_K) && x.len() == m * k && w.len() == n * (k / QK_K) && y.len() == m * n
    );
    let per_row = k / QK_K;
    let xq = quantize_rows(x, m, k);
    let x_rows: Vec<&[BlockQ8K]> = xq.chunks(per_row.max(1)).take(m).collect();
    let min_sums: Vec<Vec<[f32; 8]>> = match level {
        #[cfg(target_arch = "x86_64")]
        DotLevel::Avx512Vnni => x_rows.iter().map(|r| x86::min_sums(r)).collect(),
        _ => Vec::new(),
    };
    let y_ptr = SendPtr(y.as_mut_ptr());
    (0..n.div_ceil(COLUMNS_PER_TASK))
        .into_par_iter()
        .for_each(|task| {
            let y_ptr = &y_ptr;
            let j0 = task * COLUMNS_PER_TASK;
            // Rows outermost: the task's columns (a few hundred KB of blocks) stay in cache
            // while every group of rows passes over them.
            for r0 in (0..m).step_by(4) {
                let r1 = (r0 + 4).min(m);
                for j in j0..(j0 + COLUMNS_PER_TASK).min(n) {
                    let wj = &w[j * per_row..(j + 1) * per_row];
                    let mut out = [0f32; 4];
                    dot_rows(level, k, wj, (&x_rows[r0..r1], &min_sums), r0, &mut out);
                    for (r, v) in (r0..r1).zip(out) {
                        // SAFETY: column j belongs to this task alone; r < m.
                        unsafe { *y_ptr.0.add(r * n + j) = v };
                    }
                }
            }
        });
}

/// `out[i] = w · rows[i]` for up to four q8_K rows (rows `r0..` of the product; `min_sums`
/// holds every row's, for the AVX-512 kernel).
fn dot_rows(
    level: DotLevel,
    k: usize,
    w: &[BlockQ4K],
    (rows, min_sums): (&[&[BlockQ8K]], &[Vec<[f32; 8]>]),
    r0: usize,
    out: &mut [f32; 4],
) {
    match level {
        #[cfg(target_arch = "x86_64")]
        DotLevel::Avx512Vnni => {
            let mut with_sums: [(&[BlockQ8K], &[[f32; 8]]); 4] = [(&[], &[]); 4];
            for (slot, (r, s)) in with_sums.iter_mut().zip(rows.iter().zip(&min_sums[r0..])) {
                *slot = (r, s);
            }
            // SAFETY: the level is only chosen where the CPU has AVX-512 F/BW and VNNI; every
            // row holds as many blocks as w (checked inside).
            unsafe { x86::dot_rows_avx512_vnni(w, &with_sums[..rows.len()], out) }
        }
        DotLevel::Scalar => {
            for (o, r) in out.iter_mut().zip(rows) {
                *o = BlockQ4K::vec_dot_unopt(k, w, r);
            }
        }
        _ => {
            for (o, r) in out.iter_mut().zip(rows) {
                *o = BlockQ4K::vec_dot(k, w, r);
            }
        }
    }
}

/// Rows `j0..` of W (n × k) dequantized to f32 into `out`, row-major (its length gives the rows).
pub fn dequantize_rows_into(w: &[BlockQ4K], k: usize, j0: usize, out: &mut [f32]) {
    let rows = out.len() / k.max(1);
    dequantize_blocks(&w[j0 * (k / QK_K)..(j0 + rows) * (k / QK_K)], out);
}

/// Whole blocks dequantized to f32, in order.
fn dequantize_blocks(blocks: &[BlockQ4K], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd_level() == SimdLevel::Avx512 && is_x86_feature_detected!("avx512bw") {
        // SAFETY: AVX-512 F (the level) and BW (just checked) are present; out fits blocks.
        unsafe { x86::dequantize_avx512(blocks, out) };
        return;
    }
    BlockQ4K::to_float(blocks, out);
}

/// Rows `j0..j0 + rows` of W dequantized to f32 into `dst`, k-major (k × rows: row `j0 + j` at
/// k-index `c` is `dst[c · rows + j]`), one block column at a time through `scratch` so the
/// transposition reads from cache. Values are those of [`dequantize_rows_into`], bit for bit.
///
/// # Safety
/// `dst` addresses k · rows writable f32s.
pub unsafe fn dequantize_rows_k_major(
    w: &[BlockQ4K],
    k: usize,
    (j0, rows): (usize, usize),
    scratch: &mut Vec<f32>,
    dst: *mut f32,
) {
    let per_row = k / QK_K;
    scratch.clear();
    scratch.resize(rows * QK_K, 0.0);
    for b in 0..per_row {
        for (r, out) in scratch.chunks_exact_mut(QK_K).enumerate() {
            let at = (j0 + r) * per_row + b;
            dequantize_blocks(&w[at..at + 1], out);
        }
        // SAFETY: scratch holds rows × QK_K; the destination columns b·QK_K .. (b + 1)·QK_K
        // of the k × rows block are inside dst, as the caller says.
        unsafe {
            super::transpose::transpose(
                simd_level(),
                scratch.as_ptr(),
                QK_K,
                (rows, QK_K),
                dst.add(b * QK_K * rows),
                rows,
            )
        };
    }
}

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests;
