//! `y = x · Wᵀ` on CPU for a `Linear` layer: f32 activations and accumulation, the weight
//! (n × k) in f32 (its checkpoint layout), bf16 (packed, [`super::packed`]) or q4_K (candle's
//! blocks, [`super::q4k`]).
//!
//! - Few rows (decode steps, up to [`FEW_ROWS`]): f32 weights through the few-row kernel
//!   ([`super::few_rows`]), packed bf16 ones through [`matmul_packed`]; both read each weight
//!   once.
//! - Many rows (prefill, SigLIP): the f32 GEMM on panels of [`PANEL`] weight rows, one panel per
//!   task, handed over k-major where the CPU has AVX-512: f32 rows transposed in 16 × 16 register
//!   tiles ([`super::transpose`]), packed bf16 panels widened, q4_K ones dequantized a block
//!   column at a time and transposed. The GEMM reads a k-major panel as it is and packs a
//!   row-major one itself, more slowly (on the 1B's 604-row products k-major measured ≈ 5 %
//!   faster than f32 rows in place; through the packed micro-kernel a batch's 16-prompt prefill
//!   took 165 s against 121 s). Handing the GEMM a cache-sized panel rather than the whole
//!   matrix measured faster (SigLIP 2.8 → 2.3 s, prefill 8.6 → 8.2 s on the 1B; the GEMM's
//!   packing then reads from cache). Each thread reuses one panel buffer.

use super::{with_cpu_f32, SendPtr};
use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

use std::cell::RefCell;

use super::few_rows::{matmul_few_rows, simd_level, SimdLevel, FEW_ROWS};
use super::gemm::{gemm_f32, Strided};
use super::packed::{matmul_packed, PackedBf16};
use super::q4k;
use super::transpose::transpose;
use candle_core::quantized::k_quants::BlockQ4K;

/// Weight rows per GEMM call on the many-row path.
const PANEL: usize = 64;
/// Input rows per pass over the weight panels: a batch's prefill (16 prompts of 600 tokens: 9664
/// rows) runs as chunks of about one prompt's size, whose activations stay in cache.
const ROW_CHUNK: usize = 1024;

/// `x (m × k, f32) · wᵀ` for `w (n × k, f32)`: an (m × n) f32 tensor. Both on CPU.
pub fn matmul_weight(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (m, k) = x.dims2()?;
    let (n, kw) = w.dims2()?;
    if k != kw || x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        candle_core::bail!(
            "matmul_weight: x {:?} {:?}, w {:?} {:?}",
            x.dims(),
            x.dtype(),
            w.dims(),
            w.dtype()
        );
    }
    if m <= FEW_ROWS {
        return matmul_few_rows(x, w);
    }
    let mut y = Vec::with_capacity(m * n);
    with_cpu_f32("matmul_weight", x, |xv| {
        with_cpu_f32("matmul_weight", w, |wv| {
            many_rows(xv, &Weights::F32(wv), (m, n, k), &mut y);
            Ok(())
        })
    })?;
    Tensor::from_vec(y, (m, n), x.device())
}

/// `x (m × k, f32, CPU) · Wᵀ` for a packed bf16 weight: an (m × n) f32 tensor.
pub fn matmul_packed_weight(x: &Tensor, w: &PackedBf16) -> Result<Tensor> {
    let (m, k) = x.dims2()?;
    let (n, kw) = w.dims();
    if k != kw || x.dtype() != DType::F32 {
        candle_core::bail!(
            "linear: input {:?} {:?} for a {n} × {kw} weight",
            x.dims(),
            x.dtype()
        );
    }
    let mut y = Vec::with_capacity(m * n);
    with_cpu_f32("linear (packed bf16 weight)", x, |xv| {
        if m <= FEW_ROWS {
            y.resize(m * n, 0.0);
            matmul_packed(simd_level(), xv, m, w, &mut y);
        } else {
            many_rows(xv, &Weights::Packed(w), (m, n, k), &mut y);
        }
        Ok(())
    })?;
    Tensor::from_vec(y, (m, n), x.device())
}

/// `x (m × k, f32, CPU) · Wᵀ` for a q4_K weight W (n × k) held as candle's blocks: an (m × n)
/// f32 tensor. Few rows take the quantized dot products, more the GEMM on dequantized panels.
pub fn matmul_q4k_weight(x: &Tensor, w: &[BlockQ4K], n: usize) -> Result<Tensor> {
    let (m, k) = x.dims2()?;
    if x.dtype() != DType::F32 || w.len() * q4k::BLOCK != n * k || !k.is_multiple_of(q4k::BLOCK) {
        candle_core::bail!(
            "linear: input {:?} {:?} for a q4_K weight of {n} rows",
            x.dims(),
            x.dtype()
        );
    }
    let mut y = Vec::with_capacity(m * n);
    with_cpu_f32("linear (q4_K weight)", x, |xv| {
        if m <= q4k::FEW_ROWS {
            y.resize(m * n, 0.0);
            q4k::matmul_few_rows(q4k::dot_level(), xv, m, w, (n, k), &mut y);
        } else {
            many_rows(xv, &Weights::Q4K(w), (m, n, k), &mut y);
        }
        Ok(())
    })?;
    Tensor::from_vec(y, (m, n), x.device())
}

/// A weight the many-row path reads panel by panel.
enum Weights<'a> {
    F32(&'a [f32]),
    Packed(&'a PackedBf16),
    Q4K(&'a [BlockQ4K]),
}

thread_local! {
    /// Each thread's panel (and q4_K dequantization scratch), reused between panels and calls.
    static PANEL_BUFFERS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl Weights<'_> {
    /// Calls `f` with rows `j0..j0 + rows` of W (rows × k) as f32 and their (row, column)
    /// strides: k-major where the CPU has AVX-512 (the GEMM reads that layout as it is and packs
    /// a row-major one itself, more slowly), row-major f32 weights in place otherwise.
    fn with_panel<R>(
        &self,
        (j0, rows, k): (usize, usize, usize),
        f: impl FnOnce(&[f32], usize, usize) -> R,
    ) -> R {
        let level = simd_level();
        if let Self::F32(w) = self {
            if level != SimdLevel::Avx512 {
                return f(&w[j0 * k..(j0 + rows) * k], k, 1);
            }
        }
        PANEL_BUFFERS.with_borrow_mut(|(panel, scratch)| {
            panel.clear();
            panel.reserve(rows * k);
            let dst = panel.as_mut_ptr();
            // SAFETY (each arm): `dst` holds rows · k f32s, every one written before `set_len`.
            let strides = unsafe {
                match self {
                    Self::F32(w) => {
                        transpose(level, w[j0 * k..].as_ptr(), k, (rows, k), dst, rows);
                        (1, rows)
                    }
                    Self::Packed(p) => {
                        p.widen_k_major_into(j0, rows, dst);
                        (1, rows)
                    }
                    Self::Q4K(w) if level == SimdLevel::Avx512 => {
                        q4k::dequantize_rows_k_major(w, k, (j0, rows), scratch, dst);
                        (1, rows)
                    }
                    Self::Q4K(w) => {
                        panel.resize(rows * k, 0.0);
                        q4k::dequantize_rows_into(w, k, j0, panel);
                        (k, 1)
                    }
                }
            };
            // SAFETY: as above (the row-major q4_K arm already set the length).
            unsafe { panel.set_len(rows * k) };
            f(panel, strides.0, strides.1)
        })
    }
}

/// Fills `y` (empty) with the m × n product. The GEMM writes every output without reading it,
/// so `y` is never zeroed first (on a prefill's 600-row products, and the 250 MB of a 604-token
/// `lm_head`, zeroing cost ≈ 0.15 s per forward of the 1B); with k = 0 the product is zeros.
fn many_rows(x: &[f32], w: &Weights, (m, n, k): (usize, usize, usize), y: &mut Vec<f32>) {
    assert!(y.is_empty());
    if k == 0 {
        y.resize(m * n, 0.0);
        return;
    }
    y.reserve(m * n);
    let rows_per_chunk = m.div_ceil(m.div_ceil(ROW_CHUNK).max(1)).max(1);
    for r0 in (0..m).step_by(rows_per_chunk) {
        let rows = rows_per_chunk.min(m - r0);
        let xc = &x[r0 * k..(r0 + rows) * k];
        let yc = &mut y.spare_capacity_mut()[r0 * n..(r0 + rows) * n];
        panels(xc, w, (rows, n, k), yc);
    }
    // SAFETY: the panels of every row chunk wrote all m·n elements.
    unsafe { y.set_len(m * n) };
}

/// Writes every element of `y` (m × n).
fn panels(
    x: &[f32],
    w: &Weights,
    (m, n, k): (usize, usize, usize),
    y: &mut [std::mem::MaybeUninit<f32>],
) {
    let y_ptr = SendPtr(y.as_mut_ptr().cast::<f32>());
    (0..n.div_ceil(PANEL)).into_par_iter().for_each(|p| {
        let j0 = p * PANEL;
        let rows = PANEL.min(n - j0);
        let y_ptr = &y_ptr;
        w.with_panel((j0, rows, k), |panel, row_stride, col_stride| {
            // The weight is the left operand (measured 5–30 % faster than as the right one, as
            // `x.matmul(w.t())` has it, on the LLM and SigLIP shapes): yᵀ[j0..j0 + rows, :] =
            // panel (rows × k) · xᵀ (k × m). SAFETY: dst is y[:, j0..j0 + rows] (y row-major,
            // m × n, read with strides (1, n)), disjoint between panels; the panel is (rows × k)
            // at its strides; xᵀ is x (m × k, row-major) read with strides (1, k).
            unsafe {
                gemm_f32(
                    (rows, m, k),
                    Strided {
                        ptr: y_ptr.0.add(j0),
                        col_stride: n,
                        row_stride: 1,
                    },
                    Strided {
                        ptr: panel.as_ptr(),
                        col_stride,
                        row_stride,
                    },
                    Strided {
                        ptr: x.as_ptr(),
                        col_stride: k,
                        row_stride: 1,
                    },
                    0.0,
                    1.0,
                    1,
                )
            }
        })
    });
}

#[cfg(test)]
mod tests {
    use super::super::few_rows::test_data::{assert_close, inputs, reference};
    use super::*;
    use candle_core::Device;

    /// The many-row path never reads its output buffer: memory holding NaNs beforehand (as a
    /// reused allocation may) gives the same result as fresh memory.
    #[test]
    fn many_rows_does_not_read_the_output() {
        let (m, n, k) = (90, 150, 70);
        let (x, w) = inputs(m, n, k);
        let want = reference(&x, &w, (m, n, k));
        let mut y = vec![f32::NAN; m * n];
        y.clear();
        many_rows(&x, &Weights::F32(&w), (m, n, k), &mut y);
        assert_close(&y, &want, 8e-6, "NaN-filled buffer");
    }

    #[test]
    fn tensor_entry_point_few_and_many_rows() -> Result<()> {
        // 1100 rows: two row chunks of 550 (ROW_CHUNK).
        for &(m, n, k) in &[
            (2, 200, 96),
            (17, 130, 40),
            (40, 64, 300),
            (70, 150, 33),
            (1100, 70, 20),
        ] {
            let (x, w) = inputs(m, n, k);
            let want = reference(&x, &w, (m, n, k));
            let xt = Tensor::from_vec(x, (m, k), &Device::Cpu)?;
            let wt = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu)?;
            let y = matmul_weight(&xt, &wt)?;
            assert_eq!(y.dims(), &[m, n]);
            assert_close(&y.flatten_all()?.to_vec1()?, &want, 8e-6, &format!("m={m}"));
            // The same weights in bf16 (exact: they are bf16 values), packed.
            let wb: Vec<half::bf16> = w.iter().map(|&v| half::bf16::from_f32(v)).collect();
            let yp = matmul_packed_weight(&xt, &PackedBf16::pack(&wb, n, k))?;
            assert_eq!(yp.dims(), &[m, n]);
            assert_close(
                &yp.flatten_all()?.to_vec1()?,
                &want,
                8e-6,
                &format!("packed m={m}"),
            );
            // Non-contiguous input (a transposed view) gives the same result.
            let xt2 = xt.t()?.contiguous()?.t()?;
            let y2 = matmul_weight(&xt2, &wt)?;
            assert_eq!(
                y2.flatten_all()?.to_vec1::<f32>()?,
                y.flatten_all()?.to_vec1::<f32>()?
            );
        }
        let x = Tensor::zeros((40, 0), DType::F32, &Device::Cpu)?;
        let w = Tensor::zeros((3, 0), DType::F32, &Device::Cpu)?;
        assert_eq!(
            matmul_weight(&x, &w)?.to_vec2::<f32>()?,
            vec![vec![0f32; 3]; 40]
        );
        let p = PackedBf16::pack(&[], 3, 0);
        assert_eq!(
            matmul_packed_weight(&x, &p)?.to_vec2::<f32>()?,
            vec![vec![0f32; 3]; 40]
        );
        let x = Tensor::zeros((2, 8), DType::F32, &Device::Cpu)?;
        let w = Tensor::zeros((3, 9), DType::F32, &Device::Cpu)?;
        assert!(matmul_weight(&x, &w).is_err());
        let w = Tensor::zeros((3, 8), DType::BF16, &Device::Cpu)?;
        assert!(matmul_weight(&x, &w).is_err());
        let w = Tensor::zeros((3, 8), DType::F16, &Device::Cpu)?;
        assert!(matmul_weight(&x, &w).is_err());
        let p = PackedBf16::pack(&[half::bf16::ZERO; 27], 3, 9);
        assert!(matmul_packed_weight(&x, &p).is_err());
        Ok(())
    }
}
