//! `y = x · Wᵀ` on CPU for a `Linear` layer: f32 activations, the weight (n × k, its checkpoint
//! layout) stored in f32 or bf16, f32 accumulation.
//!
//! The official checkpoints are bf16: keeping their weights in bf16 halves the bytes a decode
//! step streams (it is memory-bound) without changing a single weight; a bf16 is the top half of
//! an f32, so widening is exact and results differ from the f32 path only by summation order.
//!
//! - Few rows (decode steps, up to [`FEW_ROWS`]): the few-row kernel ([`super::few_rows`]),
//!   which reads each weight once and widens it in registers.
//! - Many rows (prefill, SigLIP): the f32 GEMM on panels of [`PANEL`] weight rows, one panel per
//!   task (bf16 panels widened first). Handing the GEMM a cache-sized panel rather than the
//!   whole matrix measured faster for f32 weights too (SigLIP 2.8 → 2.3 s, prefill 8.6 → 8.2 s on
//!   the 1B; the GEMM's packing then reads from cache).

use std::borrow::Cow;

use candle_core::{DType, Result, Tensor};
use half::bf16;
use rayon::prelude::*;

use super::few_rows::{matmul_few_rows, WeightElem, FEW_ROWS};
use super::gemm::{gemm_f32, Strided};

/// Weight rows per GEMM call on the many-row path.
const PANEL: usize = 64;
/// Input rows per pass over the weight panels: a batch's prefill (16 prompts of 600 tokens: 9664
/// rows) runs as chunks of about one prompt's size, whose activations stay in cache.
const ROW_CHUNK: usize = 1024;

/// `x (m × k, f32) · wᵀ` for `w (n × k)` in f32 or bf16: an (m × n) f32 tensor. Both on CPU.
pub fn matmul_weight(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (m, k) = x.dims2()?;
    let (n, kw) = w.dims2()?;
    if k != kw || x.dtype() != DType::F32 || !matches!(w.dtype(), DType::F32 | DType::BF16) {
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
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    let (xs, _) = x.storage_and_layout();
    let (ws, _) = w.storage_and_layout();
    let (candle_core::Storage::Cpu(xs), candle_core::Storage::Cpu(ws)) = (&*xs, &*ws) else {
        candle_core::bail!("matmul_weight: CPU tensors only");
    };
    let xv = &xs.as_slice::<f32>()?[x.layout().start_offset()..][..m * k];
    let w0 = w.layout().start_offset();
    let mut y = vec![0f32; m * n];
    if w.dtype() == DType::BF16 {
        many_rows(
            xv,
            &ws.as_slice::<bf16>()?[w0..][..n * k],
            (m, n, k),
            &mut y,
        );
    } else {
        many_rows(xv, &ws.as_slice::<f32>()?[w0..][..n * k], (m, n, k), &mut y);
    }
    Tensor::from_vec(y, (m, n), x.device())
}

/// A panel of weight rows as f32: borrowed when it already is.
trait Panel: WeightElem {
    fn panel(w: &[Self]) -> Cow<'_, [f32]>;
}

impl Panel for f32 {
    fn panel(w: &[f32]) -> Cow<'_, [f32]> {
        Cow::Borrowed(w)
    }
}

impl Panel for bf16 {
    fn panel(w: &[bf16]) -> Cow<'_, [f32]> {
        // A shift rather than `to_f32`, so that the loop vectorises.
        Cow::Owned(
            w.iter()
                .map(|v| f32::from_bits((v.to_bits() as u32) << 16))
                .collect(),
        )
    }
}

fn many_rows<W: Panel>(x: &[f32], w: &[W], (m, n, k): (usize, usize, usize), y: &mut [f32]) {
    let rows_per_chunk = m.div_ceil(m.div_ceil(ROW_CHUNK).max(1)).max(1);
    for r0 in (0..m).step_by(rows_per_chunk) {
        let rows = rows_per_chunk.min(m - r0);
        let (xc, yc) = (&x[r0 * k..(r0 + rows) * k], &mut y[r0 * n..(r0 + rows) * n]);
        panels(xc, w, (rows, n, k), yc);
    }
}

fn panels<W: Panel>(x: &[f32], w: &[W], (m, n, k): (usize, usize, usize), y: &mut [f32]) {
    let y_ptr = SendPtr(y.as_mut_ptr());
    (0..n.div_ceil(PANEL)).into_par_iter().for_each(|p| {
        let j0 = p * PANEL;
        let rows = PANEL.min(n - j0);
        let panel = W::panel(&w[j0 * k..(j0 + rows) * k]);
        let y_ptr = &y_ptr;
        // The weight is the left operand (measured 5–30 % faster than as the right one, as
        // `x.matmul(w.t())` has it, on the LLM and SigLIP shapes): yᵀ[j0..j0 + rows, :] =
        // panel (rows × k) · xᵀ (k × m). SAFETY: dst is y[:, j0..j0 + rows] (y row-major, m × n,
        // read with strides (1, n)), disjoint between panels; the panel is (rows × k) row-major;
        // xᵀ is x (m × k, row-major) read with strides (1, k).
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
                    col_stride: 1,
                    row_stride: k,
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
    });
}

struct SendPtr(*mut f32);
// SAFETY: each task writes a disjoint column block of y through it (see `many_rows`).
unsafe impl Sync for SendPtr {}

#[cfg(test)]
mod tests {
    use super::super::few_rows::test_data::{assert_close, inputs, reference};
    use super::*;
    use candle_core::Device;

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
            let (x, w32) = inputs(m, n, k);
            let want = reference(&x, &w32, (m, n, k));
            let w: Vec<bf16> = w32.iter().map(|&v| bf16::from_f32(v)).collect();
            let xt = Tensor::from_vec(x, (m, k), &Device::Cpu)?;
            let wt = Tensor::from_vec(w, (n, k), &Device::Cpu)?;
            let y = matmul_weight(&xt, &wt)?;
            assert_eq!(y.dims(), &[m, n]);
            assert_close(
                &y.flatten_all()?.to_vec1()?,
                &want,
                8e-6,
                &format!("bf16 m={m}"),
            );
            // The same weights in f32 (bf16 widens exactly) through the f32 path.
            let y32 = matmul_weight(&xt, &wt.to_dtype(DType::F32)?)?;
            assert_close(
                &y32.flatten_all()?.to_vec1()?,
                &want,
                8e-6,
                &format!("f32 m={m}"),
            );
            // Non-contiguous input (a transposed view) gives the same result.
            let xt2 = xt.t()?.contiguous()?.t()?;
            let y2 = matmul_weight(&xt2, &wt)?;
            assert_eq!(
                y2.flatten_all()?.to_vec1::<f32>()?,
                y.flatten_all()?.to_vec1::<f32>()?
            );
        }
        let x = Tensor::zeros((2, 8), DType::F32, &Device::Cpu)?;
        let w = Tensor::zeros((3, 9), DType::BF16, &Device::Cpu)?;
        assert!(matmul_weight(&x, &w).is_err());
        let w = Tensor::zeros((3, 8), DType::F16, &Device::Cpu)?;
        assert!(matmul_weight(&x, &w).is_err());
        Ok(())
    }
}
