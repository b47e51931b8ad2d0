//! One entry point to the `gemm` crate (candle's CPU GEMM) for the hand-written f32 CPU kernels.

use candle_core::{DType, Result, Storage, Tensor};

/// A strided f32 matrix operand: base pointer, column stride, row stride (in elements).
#[derive(Clone, Copy)]
pub struct Strided<P> {
    pub ptr: P,
    pub col_stride: usize,
    pub row_stride: usize,
}

/// `dst (m × n) = alpha·dst + beta·lhs (m × k) · rhs (k × n)`; `alpha` is ignored (dst not read)
/// when it is 0.
///
/// # Safety
/// Every element the strides address — row i < m, column j < n/k of each operand — must lie in
/// memory valid for reading (lhs, rhs) and writing (dst), and dst must not overlap lhs or rhs.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_f32(
    (m, n, k): (usize, usize, usize),
    dst: Strided<*mut f32>,
    lhs: Strided<*const f32>,
    rhs: Strided<*const f32>,
    alpha: f32,
    beta: f32,
    threads: usize,
) {
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: forwarded to the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            dst.col_stride as isize,
            dst.row_stride as isize,
            alpha != 0.0,
            lhs.ptr,
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.ptr,
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            alpha,
            beta,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// `y (m × n) = x (m × k) · wᵀ` for f32 `x` and `w (n × k)` on CPU — a `Linear` layer's product
/// for many rows.
///
/// The gemm crate is called for `yᵀ = w · xᵀ` rather than `y = x · wᵀ` (what `x.matmul(w.t())`
/// asks for): with the weight as the left operand it packs the weight more cheaply, and this
/// measured 5–30 % faster on the LLM and SigLIP shapes (`bench/RESULTS.md`).
pub fn matmul_x_wt(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (m, k) = x.dims2()?;
    let (n, kw) = w.dims2()?;
    if k != kw || x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        candle_core::bail!(
            "matmul_x_wt: x {:?} {:?}, w {:?} {:?}",
            x.dims(),
            x.dtype(),
            w.dims(),
            w.dtype()
        );
    }
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    let (xs, _) = x.storage_and_layout();
    let (ws, _) = w.storage_and_layout();
    let (Storage::Cpu(xs), Storage::Cpu(ws)) = (&*xs, &*ws) else {
        candle_core::bail!("matmul_x_wt: CPU tensors only");
    };
    let xv = &xs.as_slice::<f32>()?[x.layout().start_offset()..][..m * k];
    let wv = &ws.as_slice::<f32>()?[w.layout().start_offset()..][..n * k];
    let mut y = vec![0f32; m * n];
    // SAFETY: yᵀ (n × m) is y (m × n, row-major) read with strides (1, n); w is (n × k)
    // row-major; xᵀ (k × m) is x (m × k, row-major) read with strides (1, k). All in bounds.
    unsafe {
        gemm_f32(
            (n, m, k),
            Strided {
                ptr: y.as_mut_ptr(),
                col_stride: n,
                row_stride: 1,
            },
            Strided {
                ptr: wv.as_ptr(),
                col_stride: 1,
                row_stride: k,
            },
            Strided {
                ptr: xv.as_ptr(),
                col_stride: k,
                row_stride: 1,
            },
            0.0,
            1.0,
            rayon::current_num_threads(),
        )
    };
    Tensor::from_vec(y, (m, n), x.device())
}

/// max |t| over all elements (tests).
#[cfg(test)]
pub fn max_abs(t: &candle_core::Tensor) -> f32 {
    t.abs()
        .and_then(|a| a.max_all())
        .and_then(|a| a.to_dtype(candle_core::DType::F32))
        .and_then(|a| a.to_scalar::<f32>())
        .expect("max_abs")
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn matmul_x_wt_matches_candle() -> Result<()> {
        for &(m, n, k) in &[(1, 3, 5), (17, 40, 33), (130, 70, 300)] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu)?;
            let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu)?;
            let want = x.matmul(&w.t()?)?;
            let got = matmul_x_wt(&x, &w)?;
            assert_eq!(got.dims(), &[m, n]);
            let err = max_abs(&(got - &want)?) / max_abs(&want);
            assert!(err < 1e-6, "m={m} n={n} k={k}: {err}");
            // A non-contiguous input gives the same result.
            let xt = x.t()?.contiguous()?.t()?;
            assert_eq!(
                matmul_x_wt(&xt, &w)?.flatten_all()?.to_vec1::<f32>()?,
                matmul_x_wt(&x, &w)?.flatten_all()?.to_vec1::<f32>()?
            );
        }
        let x = Tensor::zeros((2, 8), DType::F32, &Device::Cpu)?;
        assert!(matmul_x_wt(&x, &Tensor::zeros((3, 9), DType::F32, &Device::Cpu)?).is_err());
        assert!(matmul_x_wt(&x, &Tensor::zeros((3, 8), DType::BF16, &Device::Cpu)?).is_err());
        Ok(())
    }
}
