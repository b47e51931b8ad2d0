//! Depthwise k×k convolution (groups = channels, stride 1, "same" padding k/2) on channels-last
//! (NHWC) activations, with a direct multi-threaded f32 CPU kernel.
//!
//! candle's grouped conv2d splits the input into one conv per group (768–1536 small im2col
//! convs for JanusFlow's ConvNeXt blocks). Here, channels-last, every tap is a contiguous
//! multiply-add over all channels (it vectorises), and output rows are spread over threads.
//! Other devices and dtypes go through candle's grouped conv2d in NCHW.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};
use rayon::prelude::*;

pub struct DepthwiseConv2d {
    conv: candle_nn::Conv2d,
    /// CPU f32: weights as (k·k, C) (tap-major, channel contiguous) and the bias.
    cpu: Option<(Vec<f32>, Option<Vec<f32>>)>,
    channels: usize,
    k: usize,
}

/// Checkpoint keys `weight` (C, 1, k, k) and, with `bias`, `bias` (C).
pub fn depthwise_conv2d(
    channels: usize,
    k: usize,
    bias: bool,
    vb: VarBuilder,
) -> Result<DepthwiseConv2d> {
    if k.is_multiple_of(2) {
        candle_core::bail!("depthwise conv: odd kernel size expected, got {k}")
    }
    let weight = vb.get((channels, 1, k, k), "weight")?;
    let bias = if bias {
        Some(vb.get(channels, "bias")?)
    } else {
        None
    };
    // The CPU kernel serves every model dtype (f32 weights here, input widened in forward).
    let cpu = if vb.device().is_cpu() {
        // (C, 1, k, k) -> (k·k, C)
        let w = weight
            .to_dtype(DType::F32)?
            .reshape((channels, k * k))?
            .t()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let b = bias
            .as_ref()
            .map(|b| b.to_dtype(DType::F32)?.to_vec1::<f32>())
            .transpose()?;
        Some((w, b))
    } else {
        None
    };
    let config = Conv2dConfig {
        padding: k / 2,
        groups: channels,
        ..Default::default()
    };
    Ok(DepthwiseConv2d {
        conv: candle_nn::Conv2d::new(weight, bias, config),
        cpu,
        channels,
        k,
    })
}

impl DepthwiseConv2d {
    /// candle's grouped conv2d on NCHW (the generic path; timing comparisons).
    #[cfg(test)]
    pub(crate) fn forward_candle_nchw(&self, x: &Tensor) -> Result<Tensor> {
        self.conv.forward(x)
    }

    /// Tests: drop the CPU kernel so `forward_nhwc` takes candle's grouped conv.
    #[cfg(test)]
    pub(crate) fn disable_cpu_kernel(&mut self) {
        self.cpu = None;
    }

    /// (B, H, W, C) -> (B, H, W, C).
    pub fn forward_nhwc(&self, x: &Tensor) -> Result<Tensor> {
        if self.cpu.is_some() && x.device().is_cpu() {
            if x.dtype() == DType::F32 {
                x.contiguous()?.apply_op1_no_bwd(self)
            } else {
                x.to_dtype(DType::F32)?
                    .apply_op1_no_bwd(self)?
                    .to_dtype(x.dtype())
            }
        } else {
            self.conv
                .forward(&x.permute((0, 3, 1, 2))?)?
                .permute((0, 2, 3, 1))?
                .contiguous()
        }
    }
}

impl CustomOp1 for DepthwiseConv2d {
    fn name(&self) -> &'static str {
        "depthwise-conv2d-nhwc"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (Some((weight, bias)), CpuStorage::F32(data)) = (&self.cpu, storage) else {
            candle_core::bail!("depthwise-conv2d: expects f32 input and CPU weights")
        };
        let (b, h, w, c) = layout.shape().dims4()?;
        if c != self.channels {
            candle_core::bail!("depthwise-conv2d: {c} channels, expected {}", self.channels)
        }
        let x = match layout.contiguous_offsets() {
            Some((start, end)) => &data[start..end],
            None => candle_core::bail!("depthwise-conv2d: input must be contiguous"),
        };
        let mut out = vec![0f32; b * h * w * c];
        let (k, p) = (self.k, self.k / 2);
        let row = w * c;
        // One output image row per task.
        out.par_chunks_mut(row).enumerate().for_each(|(r, dst)| {
            let (img, y) = (r / h, r % h);
            match bias {
                Some(bias) => dst
                    .chunks_exact_mut(c)
                    .for_each(|px| px.copy_from_slice(bias)),
                None => dst.fill(0.0),
            }
            for dy in 0..k {
                let sy = y + dy;
                if sy < p || sy - p >= h {
                    continue;
                }
                let src = &x[(img * h + sy - p) * row..][..row];
                for dx in 0..k {
                    let taps = &weight[(dy * k + dx) * c..][..c];
                    // Output columns whose input column x + dx - p lies inside the image.
                    let x0 = p.saturating_sub(dx);
                    let x1 = (w + p).saturating_sub(dx).min(w);
                    for ox in x0..x1 {
                        let s = &src[(ox + dx - p) * c..][..c];
                        let d = &mut dst[ox * c..][..c];
                        for ((d, s), t) in d.iter_mut().zip(s).zip(taps) {
                            *d += s * t;
                        }
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, h, w, c))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::max_abs;
    use candle_core::Device;
    use candle_nn::VarMap;

    fn check(b: usize, c: usize, k: usize, h: usize, w: usize, bias: bool) {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        // The first build creates the variables; randomise them, then build the layer again so
        // its CPU copy holds the random values.
        depthwise_conv2d(c, k, bias, vb.pp("d")).unwrap();
        for var in varmap.all_vars() {
            var.set(&Tensor::randn(0f32, 1.0, var.shape(), &dev).unwrap())
                .unwrap();
        }
        let conv = depthwise_conv2d(c, k, bias, vb.pp("d")).unwrap();
        assert!(conv.cpu.is_some());
        let x = Tensor::randn(0f32, 1.0, (b, h, w, c), &dev).unwrap();
        let fast = conv.forward_nhwc(&x).unwrap();
        let reference = conv
            .conv
            .forward(&x.permute((0, 3, 1, 2)).unwrap())
            .unwrap()
            .permute((0, 2, 3, 1))
            .unwrap();
        let err = max_abs(&(fast - &reference).unwrap());
        let scale = max_abs(&reference);
        assert!(
            err <= 1e-5 * scale,
            "k={k} {h}x{w}: max err {err} (scale {scale})"
        );
    }

    #[test]
    fn matches_candle_grouped_conv2d() {
        check(2, 8, 7, 6, 6, true);
        check(1, 5, 7, 3, 2, true); // image smaller than the kernel
        check(2, 16, 7, 9, 13, false);
        check(1, 3, 3, 5, 4, true);
        check(1, 1, 1, 2, 3, true);
    }
}
