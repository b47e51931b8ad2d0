//! A `Linear` layer that folds all leading dimensions into one matrix before multiplying.
//!
//! candle's `Linear` runs a (b, t, in) input as b separate (t, in) products against a
//! broadcast weight, which reads the weight b times; during decoding t = 1 and b is the number
//! of rows (2 per image with CFG), so one (b·t, in) product is up to b× cheaper.
//!
//! On CPU, few-row products are computed as `W · xᵀ`: candle's CPU GEMM packs the right-hand
//! operand, and for 2–128 rows packing the weight costs more than the product itself
//! (2048×5632 weight, 2 rows: 3.2 ms as `W·xᵀ` against 5.5 ms as `x·Wᵀ`; equal at 1 row,
//! slower beyond ~128 rows, where the usual order is kept).
//!
//! A weight may be kept in bf16 on CPU while the activations stay f32 ([`WeightStorage::Bf16`]):
//! it is then packed into column panels at load time ([`super::packed`]); decode steps run the
//! packed micro-kernel and many-row products the GEMM on panels widened from it
//! ([`super::weight_matmul`]).
//!
//! Quantized weights are candle `QTensor`s. On CPU q4_K ones are multiplied in place by
//! [`super::q4k`] (candle's product would repack each into a second copy); the other formats,
//! and every format on CUDA, go through candle's `QMatMul`.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::packed::PackedBf16;
use super::q4k;
use super::weight_matmul::{matmul_packed_weight, matmul_q4k_weight, matmul_weight};

/// A block-quantized weight format (llama.cpp's, through candle's kernels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantFormat {
    Q8_0,
    Q6K,
    Q4K,
}

impl QuantFormat {
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "q8_0" => Some(Self::Q8_0),
            "q6_k" => Some(Self::Q6K),
            "q4_k" => Some(Self::Q4K),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Q8_0 => "q8_0",
            Self::Q6K => "q6_k",
            Self::Q4K => "q4_k",
        }
    }

    pub fn ggml(self) -> GgmlDType {
        match self {
            Self::Q8_0 => GgmlDType::Q8_0,
            Self::Q6K => GgmlDType::Q6K,
            Self::Q4K => GgmlDType::Q4K,
        }
    }

    /// Weights per block: the input width must be a multiple of it.
    pub fn block_size(self) -> usize {
        self.ggml().block_size()
    }
}

/// How a layer keeps its weight matrix. Activations (and biases) always use the
/// `VarBuilder`'s dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightStorage {
    /// In the `VarBuilder`'s dtype.
    #[default]
    Float,
    /// In bf16, for f32 activations on CPU (lossless for a bf16 checkpoint). On other devices,
    /// and for other activation dtypes, the same as `Float`.
    Bf16,
    /// Block-quantized; a matrix whose input width is not a multiple of the format's block
    /// stays as `otherwise` says.
    Quantized {
        format: QuantFormat,
        otherwise: FloatStorage,
    },
}

/// The float storages (what a quantized layer falls back to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FloatStorage {
    #[default]
    Float,
    Bf16,
}

impl From<FloatStorage> for WeightStorage {
    fn from(f: FloatStorage) -> Self {
        match f {
            FloatStorage::Float => Self::Float,
            FloatStorage::Bf16 => Self::Bf16,
        }
    }
}

impl WeightStorage {
    /// The dtype a float weight matrix is loaded in, for the `VarBuilder` `vb`.
    pub fn dtype(self, vb: &VarBuilder) -> DType {
        match self {
            Self::Bf16 if vb.device().is_cpu() && vb.dtype() == DType::F32 => DType::BF16,
            Self::Quantized { otherwise, .. } => WeightStorage::from(otherwise).dtype(vb),
            _ => vb.dtype(),
        }
    }

    /// This storage without quantization (for tensors that are never quantized).
    pub fn float(self) -> Self {
        match self {
            Self::Quantized { otherwise, .. } => otherwise.into(),
            other => other,
        }
    }
}

#[derive(Debug, Clone)]
enum Weight {
    Dense(Tensor),
    /// A bf16 weight on the CPU, packed for [`matmul_packed_weight`].
    Packed(Arc<PackedBf16>),
    /// `name`: the checkpoint tensor it was made from (the quantized-weights cache's key).
    Quantized {
        q: Arc<QTensor>,
        matmul: QMatMul,
        name: String,
    },
}

#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
}

impl Linear {
    /// A layer with `weight` (out × in). A bf16 weight on the CPU is packed for the CPU
    /// kernels (it must be two-dimensional; it is checked by [`Linear::try_from_weights`]).
    pub fn from_weights(weight: Tensor, bias: Option<Tensor>) -> Self {
        match Self::packed(&weight) {
            Ok(Some(p)) => Self {
                weight: Weight::Packed(Arc::new(p)),
                bias,
            },
            _ => Self {
                weight: Weight::Dense(weight),
                bias,
            },
        }
    }

    /// As [`Linear::from_weights`], with an error for a bf16 CPU weight that cannot be packed.
    pub fn try_from_weights(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        Self::packed(&weight)?;
        Ok(Self::from_weights(weight, bias))
    }

    fn packed(weight: &Tensor) -> Result<Option<PackedBf16>> {
        if !weight.device().is_cpu() || weight.dtype() != DType::BF16 {
            return Ok(None);
        }
        let (n, k) = weight.dims2()?;
        let weight = weight.contiguous()?;
        let (storage, layout) = weight.storage_and_layout();
        let candle_core::Storage::Cpu(storage) = &*storage else {
            unreachable!("checked: a CPU tensor")
        };
        let values = &storage.as_slice::<half::bf16>()?[layout.start_offset()..][..n * k];
        Ok(Some(PackedBf16::pack(values, n, k)))
    }

    /// A layer with `weight` (out × in, any float dtype, on any device) quantized to `format`
    /// on `weight`'s device.
    pub fn quantized(weight: &Tensor, bias: Option<Tensor>, format: QuantFormat) -> Result<Self> {
        Self::quantized_onto(weight, bias, format, &weight.device().clone())
    }

    /// A layer with an already quantized weight (checkpoint tensor `name`).
    pub fn from_qtensor(q: Arc<QTensor>, bias: Option<Tensor>, name: String) -> Result<Self> {
        let matmul = QMatMul::from_arc(q.clone())?;
        Ok(Self {
            weight: Weight::Quantized { q, matmul, name },
            bias,
        })
    }

    /// The quantized weight and the checkpoint tensor it came from, if quantized.
    pub fn quantized_weight(&self) -> Option<(&str, Arc<QTensor>)> {
        match &self.weight {
            Weight::Quantized { q, name, .. } => Some((name.as_str(), q.clone())),
            Weight::Dense(_) | Weight::Packed(_) => None,
        }
    }

    /// `weight` quantized on the CPU and the blocks moved to `device`.
    pub fn quantized_onto(
        weight: &Tensor,
        bias: Option<Tensor>,
        format: QuantFormat,
        device: &candle_core::Device,
    ) -> Result<Self> {
        let cpu = weight.to_device(&candle_core::Device::Cpu)?;
        let q = QTensor::quantize_onto(&cpu, format.ggml(), device)?;
        Self::from_qtensor(Arc::new(q), bias, String::new())
    }

    /// The format the weight is kept in: a dtype name ("float32", "bfloat16", ...) or a
    /// quantized format's ("q4_k", ...).
    pub fn format_name(&self) -> &'static str {
        match &self.weight {
            Weight::Packed(_) => "bfloat16",
            Weight::Dense(w) => match w.dtype() {
                DType::F32 => "float32",
                DType::BF16 => "bfloat16",
                DType::F16 => "float16",
                _ => "other",
            },
            Weight::Quantized { q, .. } => match q.dtype() {
                GgmlDType::Q8_0 => "q8_0",
                GgmlDType::Q6K => "q6_k",
                GgmlDType::Q4K => "q4_k",
                _ => "quantized",
            },
        }
    }

    /// The dense weight (out × in); quantized weights are dequantized (f32).
    pub fn weight(&self) -> Result<Tensor> {
        match &self.weight {
            Weight::Dense(w) => Ok(w.clone()),
            Weight::Packed(p) => {
                let (n, k) = p.dims();
                Tensor::from_vec(p.unpack(), (n, k), &candle_core::Device::Cpu)
            }
            Weight::Quantized { q, .. } => q.dequantize(&q.device()),
        }
    }

    /// One layer computing the outputs of `parts` (same input width) side by side: their
    /// weights (and biases) stacked along the output dimension, in order. Dense layers only.
    pub fn concat_outputs(parts: &[Linear]) -> Result<Self> {
        if parts
            .iter()
            .any(|l| matches!(l.weight, Weight::Quantized { .. }))
        {
            candle_core::bail!("cannot fuse quantized linear layers");
        }
        let biases: Option<Vec<&Tensor>> = parts.iter().map(|l| l.bias.as_ref()).collect();
        let bias = match biases {
            Some(b) => Some(Tensor::cat(&b, 0)?),
            None if parts.iter().all(|l| l.bias.is_none()) => None,
            None => candle_core::bail!("cannot fuse linear layers with and without bias"),
        };
        let packed: Option<Vec<&PackedBf16>> = parts
            .iter()
            .map(|l| match &l.weight {
                Weight::Packed(p) => Some(&**p),
                _ => None,
            })
            .collect();
        if let Some(p) = packed.as_deref().and_then(PackedBf16::concat) {
            return Ok(Self {
                weight: Weight::Packed(Arc::new(p)),
                bias,
            });
        }
        let weights: Vec<Tensor> = parts.iter().map(|l| l.weight()).collect::<Result<_>>()?;
        Self::try_from_weights(Tensor::cat(&weights, 0)?, bias)
    }
}

pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    linear_stored(in_dim, out_dim, true, vb, WeightStorage::Float)
}

pub fn linear_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    linear_stored(in_dim, out_dim, false, vb, WeightStorage::Float)
}

/// `weight` (out × in) kept as `storage` says, and `bias` (out) if `bias`.
pub fn linear_stored(
    in_dim: usize,
    out_dim: usize,
    bias: bool,
    vb: VarBuilder,
    storage: WeightStorage,
) -> Result<Linear> {
    let bias = if bias {
        Some(vb.get(out_dim, "bias")?)
    } else {
        None
    };
    let get = |dtype| {
        vb.get_with_hints_dtype(
            (out_dim, in_dim),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
            dtype,
        )
    };
    match storage {
        WeightStorage::Quantized { format, .. } if in_dim.is_multiple_of(format.block_size()) => {
            // Read on the CPU, where the quantizer runs: a GPU would only hold a transient
            // f32 copy (kept by its memory pool).
            let cpu_weight = vb
                .clone()
                .set_device(candle_core::Device::Cpu)
                .get_with_hints_dtype(
                    (out_dim, in_dim),
                    "weight",
                    candle_nn::init::DEFAULT_KAIMING_NORMAL,
                    DType::F32,
                )?;
            let mut layer = Linear::quantized_onto(&cpu_weight, bias, format, vb.device())?;
            if let Weight::Quantized { name, .. } = &mut layer.weight {
                *name = format!("{}.weight", vb.prefix());
            }
            Ok(layer)
        }
        _ => Ok(Linear::from_weights(get(storage.dtype(&vb))?, bias)),
    }
}

/// Up to this many rows, CPU products of weights candle multiplies (float16; f32 and bf16 go to
/// [`matmul_weight`]) are computed as `W · xᵀ`.
const WEIGHT_LEFT_MAX_ROWS: usize = 128;

impl Linear {
    fn forward_2d(&self, x: &Tensor) -> Result<Tensor> {
        let rows = x.dim(0)?;
        let w = match &self.weight {
            Weight::Quantized { q, .. } if x.device().is_cpu() && q.dtype() == GgmlDType::Q4K => {
                // Our kernels over candle's blocks: candle's own product would keep a repacked
                // second copy of every matrix (see `kernels::q4k`).
                let (n, k) = q.shape().dims2()?;
                let data = q.data()?;
                let y = matmul_q4k_weight(&x.to_dtype(DType::F32)?, q4k::blocks(&data, n, k)?, n)?;
                return self.add_bias(y.to_dtype(x.dtype())?);
            }
            Weight::Quantized { matmul, .. } => {
                // candle's quantized products take f32 inputs on every path (on CUDA the
                // dequantize-then-GEMM path refuses bf16 ones): bf16 activations are widened.
                let y = match x.dtype() {
                    DType::F32 => matmul.forward(&x.contiguous()?)?,
                    dt => matmul
                        .forward(&x.to_dtype(DType::F32)?.contiguous()?)?
                        .to_dtype(dt)?,
                };
                return self.add_bias(y);
            }
            Weight::Packed(p) => {
                let y = matmul_packed_weight(&x.to_dtype(DType::F32)?, p)?;
                return self.add_bias(y.to_dtype(x.dtype())?);
            }
            Weight::Dense(w) => w,
        };
        let y = if x.device().is_cpu()
            && x.dtype() == DType::F32
            && matches!(w.dtype(), DType::F32 | DType::BF16)
        {
            matmul_weight(x, w)?
        } else if x.device().is_cpu() && (2..=WEIGHT_LEFT_MAX_ROWS).contains(&rows) {
            w.matmul(&x.t()?)?.t()?.contiguous()?
        } else {
            x.matmul(&w.t()?)?
        };
        self.add_bias(y)
    }

    fn add_bias(&self, y: Tensor) -> Result<Tensor> {
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        if dims.len() == 1 {
            return self.forward_2d(&x.unsqueeze(0)?)?.squeeze(0);
        }
        let (lead, last) = dims.split_at(dims.len() - 1);
        let y = self.forward_2d(&x.reshape(((), last[0]))?)?;
        let mut out = lead.to_vec();
        out.push(y.dim(1)?);
        y.reshape(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn fused_outputs_are_the_parts_side_by_side() -> Result<()> {
        let dev = Device::Cpu;
        let part = |out: usize, bias: bool| -> Result<Linear> {
            let w = Tensor::randn(0f32, 1.0, (out, 48), &dev)?;
            let b = if bias {
                Some(Tensor::randn(0f32, 1.0, out, &dev)?)
            } else {
                None
            };
            Ok(Linear::from_weights(w, b))
        };
        for bias in [false, true] {
            let parts = [part(40, bias)?, part(24, bias)?, part(24, bias)?];
            let fused = Linear::concat_outputs(&parts)?;
            for rows in [1, 2, 3, 130] {
                let x = Tensor::randn(0f32, 1.0, (rows, 48), &dev)?;
                let separate: Vec<Tensor> =
                    parts.iter().map(|p| p.forward(&x)).collect::<Result<_>>()?;
                let expected = Tensor::cat(&separate, 1)?;
                let got = fused.forward(&x)?;
                assert_eq!(got.dims(), &[rows, 88]);
                let err = (got - &expected)?.abs()?.max_all()?.to_scalar::<f32>()?;
                let scale = expected.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(
                    err <= 1e-6 * scale,
                    "rows {rows}, bias {bias}: {err} vs {scale}"
                );
            }
        }
        let mixed = [part(8, true)?, part(8, false)?];
        assert!(Linear::concat_outputs(&mixed).is_err());
        Ok(())
    }

    /// A bf16 weight on the CPU is packed: its products equal the f32 layer's closely (same
    /// weights, another summation order), its fused outputs are its parts side by side, and the
    /// weight reads back unchanged.
    #[test]
    fn bf16_layers_are_packed_and_match_f32() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (70, 300), &dev)?.to_dtype(DType::BF16)?;
        let b = Tensor::randn(0f32, 1.0, 70, &dev)?;
        let packed = Linear::from_weights(w.clone(), Some(b.clone()));
        assert!(matches!(packed.weight, Weight::Packed(_)));
        assert_eq!(packed.format_name(), "bfloat16");
        let back = packed.weight()?;
        assert_eq!(back.dtype(), DType::BF16);
        assert_eq!(
            back.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
            w.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?
        );
        let float = Linear::from_weights(w.to_dtype(DType::F32)?, Some(b));
        for rows in [1, 3, 16, 40] {
            let x = Tensor::randn(0f32, 1.0, (2, rows, 300), &dev)?;
            let (y, want) = (packed.forward(&x)?, float.forward(&x)?);
            assert_eq!(y.dims(), &[2, rows, 70]);
            assert!(rel_rms(&y, &want)? < 1e-6, "rows {rows}");
        }
        // 64 + 64 + 70 outputs: whole panels concatenate as they are, the rest repacks.
        let part = |n: usize| -> Result<Linear> {
            let w = Tensor::randn(0f32, 1.0, (n, 32), &dev)?.to_dtype(DType::BF16)?;
            Ok(Linear::from_weights(w, None))
        };
        let parts = [part(64)?, part(64)?, part(70)?];
        for order in [[0, 1, 2], [2, 0, 1]] {
            let chosen: Vec<Linear> = order.iter().map(|&i| parts[i].clone()).collect();
            let fused = Linear::concat_outputs(&chosen)?;
            let x = Tensor::randn(0f32, 1.0, (5, 32), &dev)?;
            let separate: Vec<Tensor> = chosen
                .iter()
                .map(|p| p.forward(&x))
                .collect::<Result<_>>()?;
            let got = fused.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
            let want = Tensor::cat(&separate, 1)?.flatten_all()?.to_vec1::<f32>()?;
            assert_eq!(got, want, "order {order:?}");
        }
        let x = Tensor::zeros((2, 31), DType::F32, &dev)?;
        let err = packed.forward(&x).unwrap_err().to_string();
        assert!(err.contains("70 × 300"), "{err}");
        Ok(())
    }

    fn rel_rms(a: &Tensor, b: &Tensor) -> Result<f32> {
        let num = (a - b)?.sqr()?.sum_all()?.to_scalar::<f32>()?;
        let den = b.sqr()?.sum_all()?.to_scalar::<f32>()?;
        Ok((num / den).sqrt())
    }

    /// Each format against the f32 product on its own dequantized weights (only the activation
    /// rounding inside candle's kernels differs: tight) and against the original weights (the
    /// format's loss, documented in docs/performance.md), for 1, 2 and 16 rows, with a bias.
    #[test]
    fn q4k_products_agree_with_candles_and_do_not_depend_on_the_other_rows() -> Result<()> {
        // 61 rows take the GEMM on dequantized panels; one row at a time, the q8_K dot products;
        // candle's own product (QMatMul) is the yardstick for both.
        let dev = Device::Cpu;
        let (n, k, rows) = (64, 256, 61);
        let w = (Tensor::randn(0f32, 1.0, (n, k), &dev)? * 0.05)?;
        let q = Linear::quantized(&w, None, QuantFormat::Q4K)?;
        let Weight::Quantized { matmul, .. } = &q.weight else {
            panic!("not quantized")
        };
        let x = Tensor::randn(0f32, 1.0, (rows, k), &dev)?;
        let all = q.forward(&x)?;
        assert_eq!(all.dims(), &[rows, n]);
        let one_by_one = (0..rows)
            .map(|r| q.forward(&x.narrow(0, r, 1)?))
            .collect::<Result<Vec<_>>>()?;
        let one_by_one = Tensor::cat(&one_by_one, 0)?;
        let candle = (0..rows)
            .map(|r| matmul.forward(&x.narrow(0, r, 1)?))
            .collect::<Result<Vec<_>>>()?;
        let candle = Tensor::cat(&candle, 0)?;
        // The same q8_K rounding of the activations: equal up to summation order.
        let err = rel_rms(&one_by_one, &candle)?;
        assert!(err < 1e-5, "few rows vs candle: {err}");
        // Unrounded activations: about the size of the q8_K rounding (0.4-0.6 %).
        let err = rel_rms(&all, &candle)?;
        assert!(err < 0.011, "many rows vs candle: {err}");
        Ok(())
    }

    #[test]
    fn quantized_layers_match_their_dequantized_weights() -> Result<()> {
        let dev = Device::Cpu;
        let (n, k) = (96, 512);
        let w = (Tensor::randn(0f32, 1.0, (n, k), &dev)? * 0.05)?;
        let b = Tensor::randn(0f32, 1.0, n, &dev)?;
        let original = Linear::from_weights(w, Some(b.clone()));
        // (format, vs dequantized, vs original): about twice the values measured here
        // (2026-11-29: 0.44-0.56% vs dequantized for every format; vs original q8_0 0.61-0.66%,
        // q6_k 1.4-1.5%, q4_k 4.9-5.8%).
        for (format, tight, loss) in [
            (QuantFormat::Q8_0, 0.011, 0.013),
            (QuantFormat::Q6K, 0.011, 0.03),
            (QuantFormat::Q4K, 0.011, 0.11),
        ] {
            let q = Linear::quantized(&original.weight()?, Some(b.clone()), format)?;
            assert_eq!(q.format_name(), format.name());
            let dequantized = Linear::from_weights(q.weight()?, Some(b.clone()));
            for rows in [1, 2, 16] {
                let x = Tensor::randn(0f32, 1.0, (rows, k), &dev)?;
                let y = q.forward(&x)?;
                let vs_deq = rel_rms(&y, &dequantized.forward(&x)?)?;
                let vs_orig = rel_rms(&y, &original.forward(&x)?)?;
                eprintln!(
                    "{format:?} rows {rows}: vs dequantized {vs_deq:.4}, vs original {vs_orig:.4}"
                );
                assert!(vs_deq < tight, "{format:?} rows {rows}: {vs_deq}");
                assert!(vs_orig < loss, "{format:?} rows {rows}: {vs_orig}");
                assert!(vs_orig > 1e-4, "{format:?} rows {rows}: no loss at all?");
            }
        }
        Ok(())
    }

    /// A matrix whose input width is not a multiple of the format's block stays float.
    #[test]
    fn widths_off_the_block_stay_float() -> Result<()> {
        let dev = Device::Cpu;
        let vars = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, &dev);
        let storage = |format| WeightStorage::Quantized {
            format,
            otherwise: FloatStorage::Float,
        };
        let fits = linear_stored(256, 8, false, vb.pp("a"), storage(QuantFormat::Q4K))?;
        assert_eq!(fits.format_name(), "q4_k");
        let off = linear_stored(64, 8, false, vb.pp("b"), storage(QuantFormat::Q4K))?;
        assert_eq!(off.format_name(), "float32");
        let q8 = linear_stored(64, 8, true, vb.pp("c"), storage(QuantFormat::Q8_0))?;
        assert_eq!(q8.format_name(), "q8_0");
        let x = Tensor::randn(0f32, 1.0, (2, 64), &dev)?;
        assert_eq!(q8.forward(&x)?.dims(), &[2, 8]);
        assert!(Linear::concat_outputs(&[q8.clone(), q8]).is_err());
        Ok(())
    }
}
