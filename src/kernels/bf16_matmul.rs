//! `y = x · Wᵀ` with the weight stored in bf16 and everything else in f32, on CPU.
//!
//! The official checkpoints are bf16: keeping their weights in bf16 halves the bytes a decode
//! step streams (it is memory-bound) without changing a single weight. The products widen the
//! weight in registers (a bf16 is the top half of an f32) and accumulate in f32, so results
//! differ from the f32 path only by summation order.
//!
//! - Few rows (decode steps, up to [`FEW_ROWS`]): the few-row kernel ([`super::few_rows`]),
//!   which reads each weight once and widens it in registers.
//! - Many rows (prefill, SigLIP): panels of [`PANEL`] weight rows are widened to f32 and handed
//!   to the f32 GEMM, one panel per task.

use candle_core::{DType, Result, Tensor};
use half::bf16;
use rayon::prelude::*;

use super::few_rows::{matmul_few_rows, FEW_ROWS};
use super::gemm::{gemm_f32, Strided};

/// Weight rows widened to f32 at a time on the many-row path.
const PANEL: usize = 64;

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
    if m <= FEW_ROWS {
        return matmul_few_rows(x, w);
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
    many_rows(xv, wv, (m, n, k), &mut y);
    Tensor::from_vec(y, (m, n), x.device())
}

fn many_rows(x: &[f32], w: &[bf16], (m, n, k): (usize, usize, usize), y: &mut [f32]) {
    let y_ptr = SendPtr(y.as_mut_ptr());
    (0..n.div_ceil(PANEL)).into_par_iter().for_each(|p| {
        let j0 = p * PANEL;
        let rows = PANEL.min(n - j0);
        // A bf16 is the top half of an f32 (a shift, so that the loop vectorises).
        let panel: Vec<f32> = w[j0 * k..(j0 + rows) * k]
            .iter()
            .map(|v| f32::from_bits((v.to_bits() as u32) << 16))
            .collect();
        let y_ptr = &y_ptr;
        // As in `gemm::matmul_x_wt`, the weight is the left operand: yᵀ[j0..j0 + rows, :] =
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
