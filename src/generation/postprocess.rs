//! Float images from the VQ decoder → uint8, as the official code does it.

use candle_core::Tensor;

use crate::error::Result;

/// (n, 3, H, W) float images ≈ [−1, 1] → (n, H, W, 3) uint8 with
/// `clip((x + 1) / 2 · 255, 0, 255)` truncated (numpy's float → uint8 assignment).
pub fn to_uint8_nhwc(images: &Tensor) -> Result<(Vec<u8>, [usize; 4])> {
    let (n, c, h, w) = images.dims4()?;
    let data: Vec<f32> = images.permute((0, 2, 3, 1))?.flatten_all()?.to_vec1()?;
    let out = data
        .iter()
        .map(|&x| ((x + 1.0) / 2.0 * 255.0).clamp(0.0, 255.0) as u8)
        .collect();
    Ok((out, [n, h, w, c]))
}
