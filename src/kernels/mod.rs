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

/// A buffer's base pointer handed to rayon tasks that each write (or read) a disjoint part of it.
pub(crate) struct SendPtr(pub(crate) *mut f32);
/// As [`SendPtr`], read only.
pub(crate) struct SendConstPtr(pub(crate) *const f32);
// SAFETY: every user hands each task a region no other task touches (see the callers).
unsafe impl Sync for SendPtr {}
// SAFETY: as above; reads only.
unsafe impl Sync for SendConstPtr {}
