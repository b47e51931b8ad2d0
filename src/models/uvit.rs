//! JanusFlow's generation encoder and decoder around the LLM (`janus/janusflow/models/uvit.py`):
//! `ShallowUViTEncoder` (time embedding, patchify conv, ConvNeXt blocks) and
//! `ShallowUViTDecoder` (input RMSNorm, skip concat, ConvNeXt blocks, Unpatchify).
//!
//! The public `forward`s take and return NCHW tensors like the official modules. Internally
//! everything runs channels-last (B, H, W, C), where the official code permutes to anyway for
//! its norms and linears; `*_nhwc` variants skip the layout changes at the boundaries.
//!
//! Official semantics reproduced here:
//! * time embedding: diffusers `Timesteps(C, flip_sin_to_cos=True, downscale_freq_shift=0)`,
//!   `f_j = exp(−ln(1e4)·j / (C/2))`, `[cos(t·f), sin(t·f)]` in f32, then `TimestepEmbedding`
//!   `linear_2(silu(linear_1(·)))`;
//! * ConvNextBlock: depthwise 7×7 → RMSNorm over channels (LlamaRMSNorm, weight only) →
//!   Linear C→4C → exact GELU → GRN (`g = ‖x‖₂ over (H, W)`, `n = g / (mean_c g + 1e-6)`,
//!   `x = bias + (weight·n + 1)·x`) → Linear 4C→C → `+ residual` → FiLM
//!   `x·(1 + scale) + shift` with `(scale, shift) = Linear(hidden → 2C)(silu(t_emb))` split in
//!   that order.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, DType, Layout, Module, Result, Shape, Tensor, D,
};
use candle_nn::{rms_norm, Conv2dConfig, RmsNorm, VarBuilder};
use rayon::prelude::*;

use crate::kernels::activation::gelu_erf;
use crate::kernels::depthwise::{depthwise_conv2d, DepthwiseConv2d};
use crate::kernels::linear::{linear, linear_no_bias, Linear};

mod convnext;

pub use crate::loading::flow_config::{UViTDecoderParams, UViTEncoderParams};
pub use convnext::ConvNextBlock;

fn width(block_out_channels: &[usize]) -> Result<(usize, usize)> {
    match (block_out_channels.first(), block_out_channels.last()) {
        (Some(&first), Some(&last)) => Ok((first, last)),
        _ => candle_core::bail!("uvit: block_out_channels is empty"),
    }
}

fn linear_b(i: usize, o: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    if bias {
        linear(i, o, vb)
    } else {
        linear_no_bias(i, o, vb)
    }
}

/// diffusers `get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0)`,
/// in f32 with the official operation order: `[cos(t·f_j), sin(t·f_j)]`,
/// `f_j = exp((−ln 1e4 · j) / (dim/2))`, zero-padded by one column when `dim` is odd.
/// Returns (t.len(), dim) row-major.
pub fn timestep_sinusoid(t: &[f32], dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|j| ((-(10000f64.ln()) as f32 * j as f32) / half as f32).exp())
        .collect();
    let mut out = vec![0f32; t.len() * dim];
    for (row, &t) in out.chunks_exact_mut(dim).zip(t) {
        for (j, &f) in freqs.iter().enumerate() {
            let a = t * f;
            row[j] = a.cos();
            row[half + j] = a.sin();
        }
    }
    out
}

/// `time_proj` + `time_embed` (keys `time_embed.linear_{1,2}.*`): (B,) timesteps → (B, hidden).
pub struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
    channels: usize,
    dtype: DType,
}

impl TimestepEmbedding {
    pub fn new(channels: usize, hidden: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            linear_1: linear_b(channels, hidden, bias, vb.pp("linear_1"))?,
            linear_2: linear_b(hidden, hidden, bias, vb.pp("linear_2"))?,
            channels,
            dtype: vb.dtype(),
        })
    }

    /// `t`: any shape with one value per row (flattened). The sampler's timesteps are already
    /// bf16-rounded by the caller (`bf16(s/S·1000)`); this module does not round them.
    pub fn forward(&self, t: &Tensor) -> Result<Tensor> {
        let ts = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let emb = timestep_sinusoid(&ts, self.channels);
        let emb =
            Tensor::from_vec(emb, (ts.len(), self.channels), t.device())?.to_dtype(self.dtype)?;
        self.linear_2.forward(&self.linear_1.forward(&emb)?.silu()?)
    }
}

/// `UVitBlock` without down/upsampling (keys `res_blocks.N`).
fn mid_block(
    n: usize,
    c: usize,
    hidden: usize,
    eps: f64,
    bias: bool,
    vb: VarBuilder,
) -> Result<Vec<ConvNextBlock>> {
    (0..n)
        .map(|i| ConvNextBlock::new(c, hidden, eps, bias, vb.pp(format!("res_blocks.{i}"))))
        .collect()
}

fn nchw_to_nhwc(x: &Tensor) -> Result<Tensor> {
    x.permute((0, 2, 3, 1))?.contiguous()
}

fn nhwc_to_nchw(x: &Tensor) -> Result<Tensor> {
    x.permute((0, 3, 1, 2))?.contiguous()
}

pub struct ShallowUViTEncoder {
    time_embed: TimestepEmbedding,
    in_conv: crate::kernels::conv::Conv2d,
    blocks: Vec<ConvNextBlock>,
}

impl ShallowUViTEncoder {
    /// `vb`: `vision_gen_enc_model`.
    pub fn new(p: &UViTEncoderParams, vb: VarBuilder) -> Result<Self> {
        let (c0, c) = width(&p.block_out_channels)?;
        let padding = p.padding.unwrap_or(p.kernel_size.saturating_sub(p.stride));
        let config = Conv2dConfig {
            padding,
            stride: p.stride,
            ..Default::default()
        };
        let blocks = if p.use_mid_block {
            mid_block(
                p.layers_in_middle,
                c,
                p.hidden_size,
                p.norm_eps,
                p.use_bias,
                vb.pp("mid_block"),
            )?
        } else {
            Vec::new()
        };
        Ok(Self {
            time_embed: TimestepEmbedding::new(c0, p.hidden_size, p.use_bias, vb.pp("time_embed"))?,
            // The official in_conv always has a bias (it is not given `use_bias`).
            in_conv: crate::kernels::conv::conv2d(
                p.input_channels,
                c0,
                p.kernel_size,
                config,
                vb.pp("in_conv"),
            )?,
            blocks,
        })
    }

    /// `t_emb` for (B,) timesteps, or a single timestep repeated over `batch` rows.
    pub fn time_embedding(&self, t: &Tensor, batch: usize) -> Result<Tensor> {
        let t = t.flatten_all()?;
        let t = match t.dim(0)? {
            1 if batch != 1 => t.repeat(batch)?,
            n if n == batch => t,
            n => candle_core::bail!("uvit encoder: {n} timesteps for a batch of {batch}"),
        };
        self.time_embed.forward(&t)
    }

    /// `z`: (B, 4, H, W) latents; `t`: (B,) timesteps (or one). Returns `(x_emb, t_emb, skip)`
    /// with `x_emb` = `skip` (the official `hs = [x_emb]`), (B, C, H/s, W/s), and `t_emb`
    /// (B, hidden).
    pub fn forward(&self, z: &Tensor, t: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (x, t_emb) = self.forward_nhwc(z, t)?;
        let x = nhwc_to_nchw(&x)?;
        Ok((x.clone(), t_emb, x))
    }

    /// As `forward`, with `x_emb` (= the skip) channels-last, (B, H/s, W/s, C): flattened to
    /// (B, H·W/s², C) it is the LLM's latent-token input in raster order.
    pub fn forward_nhwc(&self, z: &Tensor, t: &Tensor) -> Result<(Tensor, Tensor)> {
        let t_emb = self.time_embedding(t, z.dim(0)?)?;
        let silu = t_emb.silu()?;
        let mut x = nchw_to_nhwc(&self.in_conv.forward(z)?)?;
        for block in &self.blocks {
            x = block.forward_nhwc(&x, &silu)?;
        }
        Ok((x, t_emb))
    }
}

/// RMSNorm → 1×1 conv (C → out·p²) → PixelShuffle(p), p = 2 (keys `norm`, `unpatch_conv`).
struct Unpatchify {
    norm: RmsNorm,
    conv: Linear,
    out: usize,
}

const PATCH: usize = 2;

impl Unpatchify {
    fn new(cin: usize, out: usize, eps: f64, bias: bool, vb: VarBuilder) -> Result<Self> {
        let rows = out * PATCH * PATCH;
        let cv = vb.pp("unpatch_conv");
        let weight = cv.get((rows, cin, 1, 1), "weight")?.reshape((rows, cin))?;
        let bias = if bias {
            Some(cv.get(rows, "bias")?)
        } else {
            None
        };
        Ok(Self {
            norm: rms_norm(cin, eps, vb.pp("norm"))?,
            conv: Linear::from_weights(weight, bias),
            out,
        })
    }

    /// (B, H, W, C) -> (B, 2H, 2W, out). PixelShuffle maps conv channel `c·4 + i·2 + j` to
    /// channel c at offset (i, j).
    fn forward_nhwc(&self, x: &Tensor) -> Result<Tensor> {
        let (b, h, w, _) = x.dims4()?;
        let y = self.conv.forward(&self.norm.forward(x)?)?;
        y.reshape((b, h, w, self.out, PATCH, PATCH))?
            .permute((0, 1, 4, 2, 5, 3))?
            .contiguous()?
            .reshape((b, h * PATCH, w * PATCH, self.out))
    }
}

pub struct ShallowUViTDecoder {
    input_norm: RmsNorm,
    blocks: Vec<ConvNextBlock>,
    out_convs: Vec<Unpatchify>,
}

impl ShallowUViTDecoder {
    /// `vb`: `vision_gen_dec_model`.
    pub fn new(p: &UViTDecoderParams, vb: VarBuilder) -> Result<Self> {
        let (_, c) = width(&p.block_out_channels)?;
        let wide = p.in_channels + c;
        let blocks = if p.use_mid_block {
            mid_block(
                p.layers_in_middle,
                wide,
                p.hidden_size,
                p.norm_eps,
                p.use_bias,
                vb.pp("mid_block"),
            )?
        } else {
            Vec::new()
        };
        let out_convs = (0..p.upsamples)
            .map(|rank| {
                let cout = if rank + 1 == p.upsamples {
                    p.out_channels
                } else {
                    c
                };
                let cin = if rank == 0 { wide } else { c };
                Unpatchify::new(
                    cin,
                    cout,
                    p.norm_eps,
                    p.use_bias,
                    vb.pp(format!("out_convs.{rank}")),
                )
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            input_norm: rms_norm(p.in_channels, p.norm_eps, vb.pp("input_norm"))?,
            blocks,
            out_convs,
        })
    }

    /// `x`: (B, C_in, H, W) (the dec-aligner output as an image), `skip`: the encoder's x_emb
    /// (B, C, H, W), `t_emb`: (B, hidden). Returns the velocity (B, out, 2H, 2W) for upsamples 1.
    pub fn forward(&self, x: &Tensor, skip: &Tensor, t_emb: &Tensor) -> Result<Tensor> {
        let v = self.forward_nhwc(&nchw_to_nhwc(x)?, &nchw_to_nhwc(skip)?, t_emb)?;
        nhwc_to_nchw(&v)
    }

    /// As `forward`, channels-last in and out: (B, H, W, C_in), (B, H, W, C) → (B, 2H, 2W, out).
    pub fn forward_nhwc(&self, x: &Tensor, skip: &Tensor, t_emb: &Tensor) -> Result<Tensor> {
        let x = self.input_norm.forward(&x.contiguous()?)?;
        let mut x = Tensor::cat(&[&x, &skip.contiguous()?], 3)?;
        let silu = t_emb.silu()?;
        for block in &self.blocks {
            x = block.forward_nhwc(&x, &silu)?;
        }
        for conv in &self.out_convs {
            x = conv.forward_nhwc(&x)?;
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::max_abs;
    use candle_core::Device;
    use std::collections::HashMap;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tiny-janusflow")
            .join(name)
    }

    struct Tiny {
        enc: ShallowUViTEncoder,
        dec: ShallowUViTDecoder,
        refs: HashMap<String, Tensor>,
    }

    fn tiny() -> Tiny {
        tiny_in(DType::F32)
    }

    fn tiny_in(dtype: DType) -> Tiny {
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture("config.json")).unwrap())
                .unwrap();
        let enc_p: UViTEncoderParams =
            serde_json::from_value(config["vision_gen_enc_config"]["params"].clone()).unwrap();
        let dec_p: UViTDecoderParams =
            serde_json::from_value(config["vision_gen_dec_config"]["params"].clone()).unwrap();
        assert_eq!(
            (enc_p.input_channels, enc_p.kernel_size, enc_p.stride),
            (4, 2, 2)
        );
        assert_eq!(
            (dec_p.in_channels, dec_p.out_channels, dec_p.upsamples),
            (48, 4, 1)
        );
        let vb = crate::loading::Checkpoint::open(&fixture("model.safetensors"))
            .unwrap()
            .var_builder(dtype, &Device::Cpu);
        let refs: HashMap<String, Tensor> =
            candle_core::safetensors::load(fixture("reference.safetensors"), &Device::Cpu).unwrap();
        Tiny {
            enc: ShallowUViTEncoder::new(&enc_p, vb.pp("vision_gen_enc_model")).unwrap(),
            dec: ShallowUViTDecoder::new(&dec_p, vb.pp("vision_gen_dec_model")).unwrap(),
            refs: refs
                .into_iter()
                .map(|(k, v)| match v.dtype() {
                    DType::F32 => (k, v.to_dtype(dtype).unwrap()),
                    _ => (k, v),
                })
                .collect(),
        }
    }

    /// max |a − b| / max |b|.
    fn rel(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        let (a, b) = (
            a.to_dtype(DType::F32).unwrap(),
            b.to_dtype(DType::F32).unwrap(),
        );
        max_abs(&(&a - &b).unwrap()) / max_abs(&b)
    }

    /// The 4 CFG rows `cat([z0, z0])` at step 0, and their timesteps.
    fn step0_inputs(m: &Tiny) -> (Tensor, Tensor) {
        let z0 = &m.refs["gen_init_noise"];
        let z = Tensor::cat(&[z0, z0], 0).unwrap();
        let t0 = m.refs["gen_timesteps"].narrow(0, 0, 1).unwrap();
        (z, t0.repeat(4).unwrap())
    }

    #[test]
    fn time_embedding_matches_reference() {
        let m = tiny();
        let (_, t) = step0_inputs(&m);
        let t_emb = m.enc.time_embedding(&t, 4).unwrap();
        let err = rel(&t_emb, &m.refs["gen_step0_t_emb"]);
        eprintln!("t_emb rel err {err:.2e}");
        assert!(err < 1e-4, "t_emb rel err {err}");
    }

    #[test]
    fn encoder_matches_reference() {
        let m = tiny();
        let (z, t) = step0_inputs(&m);
        let (x_emb, t_emb, skip) = m.enc.forward(&z, &t).unwrap();
        let err = rel(&x_emb, &m.refs["gen_step0_enc_out"]);
        eprintln!("enc_out rel err {err:.2e}");
        assert!(err < 1e-4, "enc_out rel err {err}");
        assert!(rel(&t_emb, &m.refs["gen_step0_t_emb"]) < 1e-4);
        assert_eq!(max_abs(&(skip - &x_emb).unwrap()), 0.0);
    }

    #[test]
    fn decoder_matches_reference() {
        let m = tiny();
        let v = m
            .dec
            .forward(
                &m.refs["gen_step0_dec_in"],
                &m.refs["gen_step0_enc_out"],
                &m.refs["gen_step0_t_emb"],
            )
            .unwrap();
        let err = rel(&v, &m.refs["gen_step0_velocity_cond_uncond"]);
        eprintln!("velocity rel err {err:.2e}");
        assert!(err < 1e-4, "velocity rel err {err}");
    }

    /// The generic path (candle's grouped conv and tensor ops, no CPU kernels), as other
    /// devices run it: f32 against the references, and f16 loosely (a half dtype end to end;
    /// candle has no CPU bf16 matmul).
    #[test]
    fn generic_path_matches_reference() {
        for (dtype, tol) in [(DType::F32, 1e-4), (DType::F16, 1e-2)] {
            let mut m = tiny_in(dtype);
            for block in m.enc.blocks.iter_mut().chain(m.dec.blocks.iter_mut()) {
                block.cpu_grn = None;
                block.depthwise.disable_cpu_kernel();
            }
            let (z, t) = step0_inputs(&m);
            let (x_emb, t_emb, _) = m.enc.forward(&z, &t).unwrap();
            let v = m
                .dec
                .forward(&m.refs["gen_step0_dec_in"], &x_emb, &t_emb)
                .unwrap();
            assert_eq!(v.dtype(), dtype);
            for (name, got) in [
                ("gen_step0_t_emb", &t_emb),
                ("gen_step0_enc_out", &x_emb),
                ("gen_step0_velocity_cond_uncond", &v),
            ] {
                let err = rel(got, &m.refs[name]);
                eprintln!("generic {dtype:?} {name} rel err {err:.2e}");
                assert!(err < tol, "{dtype:?} {name}: rel err {err}");
            }
        }
    }

    #[test]
    fn nonzero_timestep_and_sinusoid() {
        // The sinusoid against f64, for timesteps across the schedule.
        let ts = [0.0f32, 33.25, 500.0, 968.0, 1000.0];
        for dim in [48usize, 768, 7] {
            let s = timestep_sinusoid(&ts, dim);
            let half = dim / 2;
            for (i, &t) in ts.iter().enumerate() {
                for j in 0..half {
                    let a = t as f64 * (-(10000f64.ln()) * j as f64 / half as f64).exp();
                    // f32 rounding of t·f (|t·f| ≤ 1000) bounds the error at ~1e-4.
                    assert!(
                        (s[i * dim + j] as f64 - a.cos()).abs() < 1e-4,
                        "cos t={t} j={j}"
                    );
                    assert!(
                        (s[i * dim + half + j] as f64 - a.sin()).abs() < 1e-4,
                        "sin t={t} j={j}"
                    );
                }
                if dim % 2 == 1 {
                    assert_eq!(s[i * dim + dim - 1], 0.0);
                }
            }
        }
        // A later step on the same noise: runs, finite, and differs from step 0.
        let m = tiny();
        let (z, _) = step0_inputs(&m);
        let t = Tensor::new(&[500f32], &Device::Cpu).unwrap();
        let (x_emb, t_emb, skip) = m.enc.forward(&z, &t).unwrap();
        assert_eq!(t_emb.dims(), &[4, 64]);
        let v = m.dec.forward(&x_emb, &skip, &t_emb).unwrap();
        assert_eq!(v.dims(), &[4, 4, 8, 8]);
        for x in [&x_emb, &t_emb, &v] {
            let vals = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(vals.iter().all(|v| v.is_finite()));
        }
        assert!(rel(&t_emb, &m.refs["gen_step0_t_emb"]) > 1e-3);
    }

    /// Real JanusFlow-1.3B sizes, random weights: one CFG pair (batch 2), latent 4×48×48.
    /// `cargo test --release --lib uvit -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn timing_real_size() {
        use candle_nn::VarMap;
        use std::time::Instant;
        let dev = Device::Cpu;
        let enc_p: UViTEncoderParams = serde_json::from_str(
            r#"{"block_out_channels":[768],"elementwize_affine":true,"hidden_size":2048,"input_channels":4,
                "kernel_size":2,"layers_in_middle":2,"norm_eps":1e-06,"num_extra_tensors":5,"padding":0,
                "stride":2,"use_bias":true,"use_mid_block":true}"#,
        )
        .unwrap();
        let dec_p: UViTDecoderParams = serde_json::from_str(
            r#"{"block_out_channels":[768],"elementwise_affine":true,"hidden_size":2048,"in_channels":768,
                "layers_in_middle":2,"norm_eps":1e-06,"out_channels":4,"upsamples":1,"use_bias":true,
                "use_mid_block":true}"#,
        )
        .unwrap();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let build = || {
            (
                ShallowUViTEncoder::new(&enc_p, vb.pp("enc")).unwrap(),
                ShallowUViTDecoder::new(&dec_p, vb.pp("dec")).unwrap(),
            )
        };
        build();
        for var in varmap.all_vars() {
            var.set(&(Tensor::randn(0f32, 0.02, var.shape(), &dev).unwrap()))
                .unwrap();
        }
        let (enc, dec) = build();
        let z = Tensor::randn(0f32, 1.0, (2, 4, 48, 48), &dev).unwrap();
        let t = Tensor::new(&[500f32, 500.0], &dev).unwrap();
        let y = Tensor::randn(0f32, 1.0, (2, 768, 24, 24), &dev).unwrap();
        let x = nchw_to_nhwc(&Tensor::randn(0f32, 1.0, (2, 1536, 24, 24), &dev).unwrap()).unwrap();
        // Best of 5 (the machine may be shared), in ms.
        let best = |f: &mut dyn FnMut()| {
            (0..5)
                .map(|_| {
                    let s = Instant::now();
                    f();
                    s.elapsed().as_secs_f64() * 1e3
                })
                .fold(f64::INFINITY, f64::min)
        };
        let (x_emb, t_emb, skip) = enc.forward(&z, &t).unwrap();
        assert_eq!(x_emb.dims(), &[2, 768, 24, 24]);
        assert_eq!(
            dec.forward(&y, &skip, &t_emb).unwrap().dims(),
            &[2, 4, 48, 48]
        );
        let t_enc = best(&mut || drop(enc.forward(&z, &t).unwrap()));
        let t_dec = best(&mut || drop(dec.forward(&y, &skip, &t_emb).unwrap()));
        let block = &dec.blocks[0];
        let silu = t_emb.silu().unwrap();
        let t_block = best(&mut || drop(block.forward_nhwc(&x, &silu).unwrap()));
        let t_dw = best(&mut || drop(block.depthwise.forward_nhwc(&x).unwrap()));
        let x_nchw = nhwc_to_nchw(&x).unwrap();
        let t_dw_candle = best(&mut || drop(block.depthwise.forward_candle_nchw(&x_nchw).unwrap()));
        // The block's first linear alone: (1152 × 1536) · (1536 × 6144).
        let rows = x.reshape((1152, 1536)).unwrap();
        let t_lin1 = best(&mut || drop(block.linear_1.forward(&rows).unwrap()));
        let gflop = 2.0 * 1152.0 * 1536.0 * 6144.0 / 1e9;
        eprintln!(
            "{} threads: encoder {t_enc:.1} ms + decoder {t_dec:.1} ms = {:.1} ms per step; \
             decoder block (C=1536) {t_block:.1} ms, of which linear_1 {t_lin1:.1} ms \
             ({:.0} GFLOP/s; the block's two linears ≈ {:.0}%), depthwise 7×7 {t_dw:.2} ms \
             (candle grouped conv2d: {t_dw_candle:.1} ms)",
            candle_core::utils::get_num_threads(),
            t_enc + t_dec,
            gflop / t_lin1 * 1e3,
            200.0 * t_lin1 / t_block,
        );
    }
}
