//! GroupNorm (optionally followed by swish) with a fused, multi-threaded f32 CPU path.
//!
//! candle's GroupNorm is a chain of single-threaded tensor ops (mean, subtract, square, mean,
//! divide, scale, shift), each a full pass over the activation; at the VQ decoder's 384×384×128
//! level that is most of a second per decode. Here each (image, group) slice is reduced in two
//! passes (mean, then centred variance, accumulated in f64) and normalised, scaled, shifted and
//! passed through swish in a third, with groups spread over threads. Other devices and dtypes
//! use candle's ops.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

pub struct GroupNorm {
    inner: candle_nn::GroupNorm,
    /// CPU f32 only: gamma and beta as host vectors.
    cpu_affine: Option<(Vec<f32>, Vec<f32>)>,
    groups: usize,
    eps: f64,
}

pub fn group_norm(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> Result<GroupNorm> {
    let inner = candle_nn::group_norm(groups, channels, eps, vb.clone())?;
    let cpu_affine = if vb.device().is_cpu() && vb.dtype() == DType::F32 {
        let w = vb.get(channels, "weight")?.to_vec1::<f32>()?;
        let b = vb.get(channels, "bias")?.to_vec1::<f32>()?;
        Some((w, b))
    } else {
        None
    };
    Ok(GroupNorm {
        inner,
        cpu_affine,
        groups,
        eps,
    })
}

struct Fused<'a> {
    norm: &'a GroupNorm,
    swish: bool,
}

impl GroupNorm {
    fn fast_path(&self, x: &Tensor) -> bool {
        self.cpu_affine.is_some() && x.device().is_cpu() && x.dtype() == DType::F32
    }

    /// swish(GroupNorm(x)).
    pub fn forward_swish(&self, x: &Tensor) -> Result<Tensor> {
        if self.fast_path(x) {
            x.apply_op1_no_bwd(&Fused {
                norm: self,
                swish: true,
            })
        } else {
            self.inner.forward(x)?.silu()
        }
    }
}

impl Module for GroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.fast_path(x) {
            x.apply_op1_no_bwd(&Fused {
                norm: self,
                swish: false,
            })
        } else {
            self.inner.forward(x)
        }
    }
}

impl CustomOp1 for Fused<'_> {
    fn name(&self) -> &'static str {
        "group-norm"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (Some((gamma, beta)), CpuStorage::F32(data)) = (&self.norm.cpu_affine, storage) else {
            candle_core::bail!("group-norm: expects f32 input")
        };
        let dims = layout.shape().dims();
        if dims.len() < 2 || dims[1] != gamma.len() {
            candle_core::bail!(
                "group-norm: input {dims:?} does not have {} channels",
                gamma.len()
            )
        }
        let x = match layout.contiguous_offsets() {
            Some((start, end)) => &data[start..end],
            None => candle_core::bail!("group-norm: input must be contiguous"),
        };
        let channels = dims[1];
        let groups = self.norm.groups;
        let per_channel: usize = dims[2..].iter().product();
        let per_group = channels / groups * per_channel;
        let eps = self.norm.eps;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(per_group)
            .zip(x.par_chunks(per_group))
            .enumerate()
            .for_each(|(i, (dst, src))| {
                let mean = sum(src.iter().copied()) / src.len() as f64;
                let m = mean as f32;
                let var = sum(src.iter().map(|&v| (v - m) * (v - m))) / src.len() as f64;
                let inv_std = 1.0 / (var + eps).sqrt();
                let first_channel = (i % groups) * (channels / groups);
                for (j, (d, s)) in dst
                    .chunks_mut(per_channel)
                    .zip(src.chunks(per_channel))
                    .enumerate()
                {
                    let c = first_channel + j;
                    let scale = (f64::from(gamma[c]) * inv_std) as f32;
                    let shift = (f64::from(beta[c]) - mean * f64::from(gamma[c]) * inv_std) as f32;
                    if self.swish {
                        for (d, &s) in d.iter_mut().zip(s) {
                            let y = s * scale + shift;
                            *d = y / (1.0 + (-y).exp());
                        }
                    } else {
                        for (d, &s) in d.iter_mut().zip(s) {
                            *d = s * scale + shift;
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Sum in f32 blocks of 256 (vectorisable), blocks accumulated in f64.
fn sum(values: impl Iterator<Item = f32>) -> f64 {
    let mut total = 0f64;
    let mut block = 0f32;
    for (i, v) in values.enumerate() {
        block += v;
        if i % 256 == 255 {
            total += f64::from(block);
            block = 0.0;
        }
    }
    total + f64::from(block)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::max_abs;
    use candle_core::Device;
    use candle_nn::VarMap;

    #[test]
    fn matches_candle_group_norm_and_swish() {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        group_norm(4, 8, 1e-6, vb.pp("gn")).unwrap(); // creates the variables
        for var in varmap.all_vars() {
            let n = var.elem_count();
            var.set(&Tensor::randn(0.5f32, 1.0, n, &dev).unwrap())
                .unwrap();
        }
        let gn = group_norm(4, 8, 1e-6, vb.pp("gn")).unwrap(); // reads the random ones
        let x = Tensor::randn(3f32, 2.0, (2, 8, 5, 7), &dev).unwrap();
        let reference = gn.inner.forward(&x).unwrap();
        for (fast, expected) in [
            (gn.forward(&x).unwrap(), reference.clone()),
            (gn.forward_swish(&x).unwrap(), reference.silu().unwrap()),
        ] {
            let err = max_abs(&(fast - &expected).unwrap());
            assert!(err < 1e-5, "max err {err}");
        }
    }
}
