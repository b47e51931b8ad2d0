//! Activations with a fast f32 CPU path.

use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

use super::elementwise::{gelu_into, silu_mul_into};
use super::few_rows::simd_level;
use super::with_cpu_f32;

/// Exact (erf) GELU, `0.5·x·(1 + erf(x/√2))`. On CPU f32 the erf is a branch-free rational
/// approximation, vectorised for the CPU at run time ([`super::elementwise`]; within 5e-7 of
/// libm's `erff`), and the work is spread over threads; candle's op calls the scalar `erff` on
/// one thread, which made GELU a tenth of SigLIP's time.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if !(x.device().is_cpu() && x.dtype() == DType::F32 && x.is_contiguous()) {
        return x.gelu_erf();
    }
    let mut out = vec![0f32; x.elem_count()];
    let level = simd_level();
    with_cpu_f32("gelu_erf", x, |data| {
        out.par_chunks_mut(16384)
            .zip(data.par_chunks(16384))
            .for_each(|(o, i)| gelu_into(level, i, o));
        Ok(())
    })?;
    Tensor::from_vec(out, x.shape(), x.device())
}

/// `SiLU(gate) · up`, element by element (the gated MLP's product). One vectorised pass on CPU
/// f32 when both are contiguous and of one shape; candle's two ops otherwise (its SiLU calls
/// the scalar `exp` on one thread).
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    let fused = gate.device().is_cpu()
        && gate.dtype() == DType::F32
        && up.dtype() == DType::F32
        && gate.dims() == up.dims()
        && gate.is_contiguous()
        && up.is_contiguous();
    if !fused {
        return gate.silu()? * up;
    }
    let mut out = vec![0f32; gate.elem_count()];
    let level = simd_level();
    with_cpu_f32("silu_mul", gate, |g| {
        with_cpu_f32("silu_mul", up, |u| {
            out.par_chunks_mut(16384)
                .zip(g.par_chunks(16384).zip(u.par_chunks(16384)))
                .for_each(|(o, (g, u))| silu_mul_into(level, g, u, o));
            Ok(())
        })
    })?;
    Tensor::from_vec(out, gate.shape(), gate.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};

    #[test]
    fn gelu_matches_candles_and_reads_views_at_their_offset() {
        let x = Tensor::randn(0f32, 3.0, (3, 40000), &Device::Cpu).unwrap();
        let diff = |a: &Tensor, b: &Tensor| crate::kernels::gemm::max_abs(&(a - b).unwrap());
        // GELU values up to about ±10 here: f32 rounding of those is ~1e-6.
        assert!(diff(&gelu_erf(&x).unwrap(), &x.gelu_erf().unwrap()) < 2e-6);
        let row = x.i(1).unwrap(); // contiguous, starting at element 40000
        assert!(diff(&gelu_erf(&row).unwrap(), &row.gelu_erf().unwrap()) < 2e-6);
        let t = x.t().unwrap(); // not contiguous: candle's op
        assert!(diff(&gelu_erf(&t).unwrap(), &t.gelu_erf().unwrap()) < 2e-6);
    }

    #[test]
    fn silu_mul_matches_candles_ops_on_every_path() -> Result<()> {
        let dev = Device::Cpu;
        let g = Tensor::randn(0f32, 4.0, (5, 3001), &dev)?;
        let u = Tensor::randn(0f32, 1.0, (5, 3001), &dev)?;
        let candle = |g: &Tensor, u: &Tensor| (g.silu().unwrap() * u).unwrap();
        let rel = |a: &Tensor, b: &Tensor| {
            crate::kernels::gemm::max_abs(&(a - b).unwrap())
                / crate::kernels::gemm::max_abs(b).max(1e-30)
        };
        assert!(rel(&silu_mul(&g, &u)?, &candle(&g, &u)) < 1e-6);
        // Views at an offset (the halves of a fused gate|up output are strided: candle's ops).
        let (g1, u1) = (g.i(2..4)?, u.i(1..3)?);
        assert!(rel(&silu_mul(&g1, &u1)?, &candle(&g1, &u1)) < 1e-6);
        let wide = Tensor::cat(&[&g, &u], 1)?;
        let (gn, un) = (wide.narrow(1, 0, 3001)?, wide.narrow(1, 3001, 3001)?);
        assert!(rel(&silu_mul(&gn, &un)?, &candle(&g, &u)) < 1e-6);
        // Shapes that differ are candle's error, not a panic.
        assert!(silu_mul(&g, &u.i(0..4)?).is_err());
        Ok(())
    }
}
