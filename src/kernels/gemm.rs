//! One entry point to the `gemm` crate (candle's CPU GEMM) for the hand-written f32 CPU kernels.

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

/// max |t| over all elements (tests).
#[cfg(test)]
pub fn max_abs(t: &candle_core::Tensor) -> f32 {
    t.abs()
        .and_then(|a| a.max_all())
        .and_then(|a| a.to_dtype(candle_core::DType::F32))
        .and_then(|a| a.to_scalar::<f32>())
        .expect("max_abs")
}
