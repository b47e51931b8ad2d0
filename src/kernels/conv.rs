//! "Same" 2-D convolution (odd k×k kernel, stride 1, padding k/2) with a fast f32 CPU path.
//!
//! candle's CPU conv2d materialises the full im2col matrix (for the VQ decoder's last level,
//! 384·384 pixels × 128·9 values = 680 MB per conv) before its GEMM. Here the input is copied
//! once into a zero-padded channels-last buffer; because a padded image row is contiguous, the
//! k horizontally shifted taps of one kernel row are k·C_in *contiguous* values, so the whole conv
//! is k GEMMs (one per kernel row, K = k·C_in) over strided views of that buffer, accumulating
//! straight into the channels-first output. The output is computed over the padded width (the
//! extra k-1 columns per row are discarded), which is what makes every view a plain strided
//! matrix. Other devices and dtypes use candle's conv2d.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};

use super::gemm::{gemm_f32, Strided};

pub struct SameConv2d {
    kernel: Kernel,
    cin: usize,
    cout: usize,
}

/// One form of the weights per conv: the CPU kernels keep only their rearranged copy.
enum Kernel {
    /// candle's conv (CUDA, non-f32).
    Candle(candle_nn::Conv2d),
    /// CPU f32, 3×3: Winograd-transformed weights (see `winograd.rs`).
    Winograd { u: Vec<f32>, bias: Option<Vec<f32>> },
    /// CPU f32, other odd k: k blocks of (k·C_in × C_out), index `((dy·k + dx)·C_in + ci)·C_out + co`.
    ShiftedGemm {
        w: Vec<f32>,
        bias: Option<Vec<f32>>,
        k: usize,
    },
}

/// candle's conv2d, widened to f32 on the CPU when the model is not f32: candle's CPU
/// convolutions have no bf16/f16 GEMM (they fail on such input), so there the weights are kept
/// in f32 and the input is widened, convolved and rounded back to its dtype.
pub struct Conv2d {
    conv: candle_nn::Conv2d,
    widen: bool,
}

impl Conv2d {
    pub fn from_candle(conv: candle_nn::Conv2d) -> Result<Self> {
        let w = conv.weight();
        if !(w.device().is_cpu() && w.dtype() != DType::F32) {
            return Ok(Self { conv, widen: false });
        }
        let weight = w.to_dtype(DType::F32)?;
        let bias = conv.bias().map(|b| b.to_dtype(DType::F32)).transpose()?;
        Ok(Self {
            conv: candle_nn::Conv2d::new(weight, bias, *conv.config()),
            widen: true,
        })
    }
}

/// `candle_nn::conv2d` (checkpoint keys `weight`, `bias`), as a [`Conv2d`].
pub fn conv2d(
    cin: usize,
    cout: usize,
    k: usize,
    config: Conv2dConfig,
    vb: VarBuilder,
) -> Result<Conv2d> {
    Conv2d::from_candle(candle_nn::conv2d(cin, cout, k, config, vb)?)
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.widen && x.dtype() != DType::F32 {
            self.conv
                .forward(&x.to_dtype(DType::F32)?)?
                .to_dtype(x.dtype())
        } else {
            self.conv.forward(x)
        }
    }
}

pub fn same_conv2d(cin: usize, cout: usize, k: usize, vb: VarBuilder) -> Result<SameConv2d> {
    let config = Conv2dConfig {
        padding: k / 2,
        ..Default::default()
    };
    let conv = candle_nn::conv2d(cin, cout, k, config, vb)?;
    from_candle_conv(conv, cin, cout, k)
}

/// A 1×1 conv from `nn.Linear` weights `weight` (cout, cin) and `bias` (cout): the linear map
/// applied to every pixel of an NCHW tensor (diffusers' attention projections, which act on
/// the (b, h·w, c) sequence of the same pixels).
pub fn same_conv2d_from_linear(cin: usize, cout: usize, vb: VarBuilder) -> Result<SameConv2d> {
    let weight = vb.get((cout, cin), "weight")?.reshape((cout, cin, 1, 1))?;
    let bias = vb.get(cout, "bias")?;
    let conv = candle_nn::Conv2d::new(weight, Some(bias), Conv2dConfig::default());
    from_candle_conv(conv, cin, cout, 1)
}

/// Wrap a stride-1, padding-k/2 candle conv, preparing the CPU kernel when the weights are f32
/// on the CPU.
fn from_candle_conv(
    conv: candle_nn::Conv2d,
    cin: usize,
    cout: usize,
    k: usize,
) -> Result<SameConv2d> {
    // On the CPU the f32 kernels serve every model dtype (weights widened here, input in
    // `forward`): candle's CPU conv has no bf16/f16 GEMM.
    let fast = conv.weight().device().is_cpu() && k % 2 == 1;
    let conv = if fast && conv.weight().dtype() != DType::F32 {
        let weight = conv.weight().to_dtype(DType::F32)?;
        let bias = conv.bias().map(|b| b.to_dtype(DType::F32)).transpose()?;
        candle_nn::Conv2d::new(weight, bias, *conv.config())
    } else {
        conv
    };
    let kernel = if !fast {
        Kernel::Candle(conv)
    } else {
        let bias = conv.bias().map(|b| b.to_vec1::<f32>()).transpose()?;
        if k == 3 {
            let w = conv.weight().flatten_all()?.to_vec1::<f32>()?;
            let u = super::winograd::transform_weights(&w, cin, cout);
            Kernel::Winograd { u, bias }
        } else {
            // (cout, cin, ky, kx) -> (ky, kx, cin, cout)
            let w = conv
                .weight()
                .permute((2, 3, 1, 0))?
                .flatten_all()?
                .to_vec1::<f32>()?;
            Kernel::ShiftedGemm { w, bias, k }
        }
    };
    Ok(SameConv2d { kernel, cin, cout })
}

impl Module for SameConv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.kernel {
            Kernel::Candle(conv) => conv.forward(x),
            _ if x.dtype() == DType::F32 => x.apply_op1_no_bwd(self),
            _ => x
                .to_dtype(DType::F32)?
                .apply_op1_no_bwd(self)?
                .to_dtype(x.dtype()),
        }
    }
}

impl CustomOp1 for SameConv2d {
    fn name(&self) -> &'static str {
        "same-conv2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("same-conv2d: expects f32 input")
        };
        let (b, c, h, w) = layout.shape().dims4()?;
        if c != self.cin {
            candle_core::bail!("same-conv2d: {c} input channels, expected {}", self.cin)
        }
        let x = match layout.contiguous_offsets() {
            Some((start, end)) => &data[start..end],
            None => candle_core::bail!("same-conv2d: input must be contiguous"),
        };
        let mut out = vec![0f32; b * self.cout * h * w];
        let plane_in = c * h * w;
        let plane_out = self.cout * h * w;
        for i in 0..b {
            let (src, dst) = (
                &x[i * plane_in..(i + 1) * plane_in],
                &mut out[i * plane_out..(i + 1) * plane_out],
            );
            match &self.kernel {
                Kernel::Winograd { u, bias } => {
                    super::winograd::conv3x3(src, dst, u, bias.as_deref(), (c, h, w), self.cout)
                }
                Kernel::ShiftedGemm { w: weight, bias, k } => {
                    conv_one(src, dst, weight, bias.as_deref(), (c, h, w), self.cout, *k)
                }
                Kernel::Candle(_) => candle_core::bail!("same-conv2d: no CPU kernel prepared"),
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((b, self.cout, h, w))))
    }
}

/// One image: `x` (C, H, W) -> `out` (C_out, H, W).
fn conv_one(
    x: &[f32],
    out: &mut [f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    (c, h, w): (usize, usize, usize),
    cout: usize,
    k: usize,
) {
    let p = k / 2;
    let wp = w + 2 * p;
    let hp = h + 2 * p;
    // Output pixels computed: k-1 junk columns per image row. The last kernel row reads up to
    // pixel (rows - 1) + (k-1)·wp + (k-1) = hp·wp + k - 2.
    let rows = h * wp;
    let mut padded = vec![0f32; (hp * wp + k) * c];
    // (C, H, W) -> (H+2p, W+2p, C), in blocks of pixels so reads and writes both stay in cache.
    const BLOCK: usize = 64;
    for y in 0..h {
        let dst_row = &mut padded[((y + p) * wp + p) * c..((y + p) * wp + p + w) * c];
        for x0 in (0..w).step_by(BLOCK) {
            let x1 = (x0 + BLOCK).min(w);
            for ci in 0..c {
                let src = &x[(ci * h + y) * w + x0..(ci * h + y) * w + x1];
                for (j, v) in src.iter().enumerate() {
                    dst_row[(x0 + j) * c + ci] = *v;
                }
            }
        }
    }
    // Output over the padded width, channels first: acc[co·rows + pixel].
    let mut acc = vec![0f32; cout * rows];
    if let Some(bias) = bias {
        for (co, chunk) in acc.chunks_mut(rows).enumerate() {
            chunk.fill(bias[co]);
        }
    }
    let kk = k * c;
    let threads = candle_core::utils::get_num_threads();
    for dy in 0..k {
        let lhs = &padded[dy * wp * c..];
        let rhs = &weight[dy * kk * cout..(dy + 1) * kk * cout];
        debug_assert!((rows - 1) * c + kk <= lhs.len());
        // SAFETY: dst is (rows × cout) with row stride 1 and column stride `rows` inside
        // `acc`; lhs is (rows × kk) with row stride c and column stride 1, and its last element
        // (rows-1)·c + kk - 1 is inside `lhs` (padded holds hp·wp + k pixels); rhs is
        // (kk × cout) row-major inside `rhs`. No two views alias `acc`.
        unsafe {
            gemm_f32(
                (rows, cout, kk),
                Strided {
                    ptr: acc.as_mut_ptr(),
                    col_stride: rows,
                    row_stride: 1,
                },
                Strided {
                    ptr: lhs.as_ptr(),
                    col_stride: 1,
                    row_stride: c,
                },
                Strided {
                    ptr: rhs.as_ptr(),
                    col_stride: 1,
                    row_stride: cout,
                },
                1.0,
                1.0,
                threads,
            );
        }
    }
    // Drop the junk columns.
    for co in 0..cout {
        let src = &acc[co * rows..(co + 1) * rows];
        let dst = &mut out[co * h * w..(co + 1) * h * w];
        for y in 0..h {
            dst[y * w..(y + 1) * w].copy_from_slice(&src[y * wp..y * wp + w]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::max_abs;
    use candle_core::Device;
    use candle_nn::VarMap;

    fn check(b: usize, cin: usize, cout: usize, k: usize, h: usize, w: usize) {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let conv = same_conv2d(cin, cout, k, vb.pp("c")).unwrap();
        assert!(!matches!(conv.kernel, Kernel::Candle(_)));
        // candle's conv over the same variables.
        let config = Conv2dConfig {
            padding: k / 2,
            ..Default::default()
        };
        let candle_conv = candle_nn::conv2d(cin, cout, k, config, vb.pp("c")).unwrap();
        let x = Tensor::randn(0f32, 1.0, (b, cin, h, w), &dev).unwrap();
        let fast = conv.forward(&x).unwrap();
        let reference = candle_conv.forward(&x).unwrap();
        let err = max_abs(&(fast - &reference).unwrap());
        let scale = max_abs(&reference);
        assert!(
            err <= 1e-5 * scale,
            "k={k} {h}x{w}: max err {err} (scale {scale})"
        );
    }

    #[test]
    fn from_linear_is_a_per_pixel_linear() {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let lin = candle_nn::linear(6, 5, vb.pp("l")).unwrap();
        let conv = same_conv2d_from_linear(6, 5, vb.pp("l")).unwrap();
        assert!(!matches!(conv.kernel, Kernel::Candle(_)));
        let x = Tensor::randn(0f32, 1.0, (2, 6, 3, 4), &dev).unwrap();
        let fast = conv.forward(&x).unwrap();
        // (b, c, h, w) -> (b, hw, c) -> linear -> back.
        let seq = x
            .flatten_from(2)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap();
        let reference = lin
            .forward(&seq)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((2, 5, 3, 4))
            .unwrap();
        let err = max_abs(&(fast - &reference).unwrap());
        assert!(err <= 1e-5 * max_abs(&reference), "max err {err}");
    }

    #[test]
    fn matches_candle_conv2d() {
        check(1, 8, 5, 3, 7, 9);
        check(2, 3, 16, 3, 1, 1);
        check(1, 4, 4, 1, 5, 3);
        check(2, 6, 7, 5, 6, 4);
        check(1, 32, 3, 3, 16, 16);
        check(1, 5, 6, 3, 9, 7); // odd sizes: partial Winograd tiles
        check(1, 64, 64, 3, 200, 24);
        check(1, 8, 8, 3, 21, 2000); // 4096 / 1000 tiles: several bands, the last one short
    }
}
