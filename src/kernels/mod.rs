//! CPU compute kernels the models are written in: the f32 GEMM entry point, products with
//! bf16-stored weights, "same" and Winograd convolutions, depthwise convolution, fused
//! GroupNorm, attention and its masks, products with q4_K blocks read in place, activations and
//! the other element-wise kernels (softmax, GELU, SiLU), and the `Linear` layer that dispatches to
//! them. On other devices each falls back to candle's ops.
pub mod activation;
pub mod attention;
pub mod conv;
pub mod depthwise;
pub mod elementwise;
pub mod few_rows;
pub mod gemm;
pub mod group_norm;
pub mod linear;
pub mod masks;
pub mod packed;
pub mod q4k;
pub mod single_query;
pub mod transpose;
pub mod weight_matmul;
pub mod winograd;

/// The f32 elements of a CPU tensor in row-major order (a contiguous copy if it is a strided
/// view), handed to `f` while its storage stays borrowed. `what` names the caller in the error a
/// tensor elsewhere gets.
pub(crate) fn with_cpu_f32<R>(
    what: &str,
    t: &candle_core::Tensor,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("{what}: needs its input on the CPU")
    };
    f(&cpu.as_slice::<f32>()?[layout.start_offset()..][..t.elem_count()])
}

/// A tensor's elements as f32 in row-major order, copied by all threads when there are more
/// than a few million (a 604-token forward's logits are 247 MB).
pub fn to_vec_f32(t: &candle_core::Tensor) -> candle_core::Result<Vec<f32>> {
    use rayon::prelude::*;
    let t = t.to_dtype(candle_core::DType::F32)?;
    if !t.device().is_cpu() || t.elem_count() < 4 * COPY_CHUNK {
        return t.flatten_all()?.to_vec1::<f32>();
    }
    with_cpu_f32("to_vec_f32", &t, |src| {
        let mut out = Vec::with_capacity(src.len());
        out.spare_capacity_mut()
            .par_chunks_mut(COPY_CHUNK)
            .zip(src.par_chunks(COPY_CHUNK))
            .for_each(|(dst, src)| {
                for (d, &s) in dst.iter_mut().zip(src) {
                    d.write(s);
                }
            });
        // SAFETY: the chunks above wrote all src.len() elements.
        unsafe { out.set_len(src.len()) };
        Ok(out)
    })
}

/// Elements per task of [`to_vec_f32`].
const COPY_CHUNK: usize = 1 << 20;

/// A buffer's base pointer handed to rayon tasks that each write (or read) a disjoint part of it.
pub(crate) struct SendPtr(pub(crate) *mut f32);
/// As [`SendPtr`], read only.
pub(crate) struct SendConstPtr(pub(crate) *const f32);
// SAFETY: every user hands each task a region no other task touches (see the callers).
unsafe impl Sync for SendPtr {}
// SAFETY: as above; reads only.
unsafe impl Sync for SendConstPtr {}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, IndexOp, Tensor};

    #[test]
    fn to_vec_f32_copies_large_small_strided_and_bf16_tensors() -> candle_core::Result<()> {
        let n = 5 * 1_200_000;
        let big = Tensor::arange(0u32, n as u32, &Device::Cpu)?.to_dtype(DType::F32)?;
        assert_eq!(super::to_vec_f32(&big)?, big.to_vec1::<f32>()?);
        // A large strided view (4 of 5 columns) and bf16: converted, in row-major order.
        let m = big.reshape((n / 5, 5))?.i((.., 1..5))?;
        let want: Vec<f32> = m.flatten_all()?.to_vec1()?;
        assert_eq!(super::to_vec_f32(&m)?, want);
        let small = Tensor::new(&[[1.5f32, -2.0], [3.0, 0.25]], &Device::Cpu)?;
        assert_eq!(
            super::to_vec_f32(&small.to_dtype(DType::BF16)?)?,
            [1.5, -2.0, 3.0, 0.25]
        );
        Ok(())
    }
}
