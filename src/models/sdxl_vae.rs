//! The SDXL VAE decoder that turns JanusFlow latents into images (diffusers `AutoencoderKL`,
//! decode path only; `stabilityai/sdxl-vae` for JanusFlow-1.3B).
//!
//! `decode(z)` is diffusers' `AutoencoderKL.decode(z).sample`: `post_quant_conv` (1×1) → decoder:
//! `conv_in` → mid block (resnet, single-head attention, resnet) → up blocks, deepest first
//! (`layers_per_block + 1` resnets each, nearest ×2 + 3×3 conv on all but the last) →
//! GroupNorm → SiLU → `conv_out`. Every GroupNorm (resnets, attention, output) has
//! `norm_num_groups` groups and eps 1e-6; attention is one head over all channels with scale
//! 1/√C, residual connection, output factor 1. Scaling is *not* part of diffusers' `decode`:
//! pipelines divide by `scaling_factor` first, which [`VaeDecoder::decode_scaled`] does.
//!
//! The resnet and attention blocks are the ones of the Janus VQ decoder (`vq.rs`; same
//! arithmetic, other tensor names), so the CPU path uses the fast f32 convolutions of
//! `conv.rs` and the fused GroupNorm of `group_norm.rs`. Encoder weights are never read.
//!
//! The VAE overflows in float16 (diffusers' `force_upcast`); it runs in f32, or in bf16 on
//! GPUs (what the official JanusFlow code uses).

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;

use super::vq::{AttnBlock, ResnetBlock};
use crate::error::{Error, Result};
use crate::kernels::conv::{same_conv2d, same_conv2d_from_linear, SameConv2d};
use crate::kernels::group_norm::{group_norm, GroupNorm};
pub use crate::loading::vae_config::VaeConfig;

/// diffusers hard-codes eps 1e-6 for every GroupNorm of the VAE decoder.
const EPS: f64 = 1e-6;
/// Profile stage names of the up blocks (`JANUS_RS_PROFILE=1`).
const UP_STAGES: [&str; 5] = [
    "vae up_blocks.0",
    "vae up_blocks.1",
    "vae up_blocks.2",
    "vae up_blocks.3",
    "vae up_blocks.4+",
];

/// Weight file names diffusers' `from_pretrained` looks for, in order.
const WEIGHT_FILES: [&str; 2] = [
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
];

/// The dtypes the VAE may run in: f32 anywhere, bf16 on GPUs; never f16 (it overflows).
fn check_dtype(dtype: DType, device: &Device) -> Result<()> {
    match dtype {
        DType::F32 => Ok(()),
        DType::BF16 if !device.is_cpu() => Ok(()),
        DType::BF16 => Err(Error::input(
            "the SDXL VAE runs in float32 on the CPU (bfloat16 convolutions are very slow there); \
             use dtype float32",
        )),
        DType::F16 => Err(Error::input(
            "the SDXL VAE overflows in float16 (NaN images); use bfloat16 or float32",
        )),
        other => Err(Error::input(format!(
            "the SDXL VAE cannot run in {other:?}; use float32 (or bfloat16 on a GPU)"
        ))),
    }
}

/// The innermost candle message, as a weight-loading error.
fn weights_err(e: candle_core::Error) -> Error {
    Error::Weights(format!("SDXL VAE: {}", crate::error::candle_message(&e)))
}

/// diffusers `UNetMidBlock2D` as the VAE builds it: resnet, attention (optional), resnet.
struct MidBlock {
    res1: ResnetBlock,
    attn: Option<AttnBlock>,
    res2: ResnetBlock,
}

/// diffusers `UpDecoderBlock2D`: resnets, then nearest ×2 and a 3×3 conv (`upsamplers.0.conv`).
struct UpBlock {
    resnets: Vec<ResnetBlock>,
    upsample: Option<SameConv2d>,
}

impl UpBlock {
    fn forward(&self, mut h: Tensor) -> candle_core::Result<Tensor> {
        for res in &self.resnets {
            h = res.forward(&h)?;
        }
        if let Some(conv) = &self.upsample {
            let (_, _, hh, ww) = h.dims4()?;
            h = conv.forward(&h.upsample_nearest2d(2 * hh, 2 * ww)?)?;
        }
        Ok(h)
    }
}

/// diffusers `Attention(residual_connection=True, _from_deprecated_attn_block=True)`:
/// `group_norm`, `to_q`/`to_k`/`to_v`/`to_out.0` linears (legacy files: `query`/`key`/`value`/
/// `proj_attn`, which diffusers renames on load).
fn attention(c: usize, groups: usize, vb: VarBuilder) -> candle_core::Result<AttnBlock> {
    let names = if !vb.contains_tensor("to_q.weight") && vb.contains_tensor("query.weight") {
        ["query", "key", "value", "proj_attn"]
    } else {
        ["to_q", "to_k", "to_v", "to_out.0"]
    };
    let [q, k, v, o] = names.map(|n| same_conv2d_from_linear(c, c, vb.pp(n)));
    Ok(AttnBlock::from_parts(
        group_norm(groups, c, EPS, vb.pp("group_norm"))?,
        [q?, k?, v?, o?],
        true,
    ))
}

pub struct VaeDecoder {
    post_quant_conv: Option<SameConv2d>,
    conv_in: SameConv2d,
    mid: MidBlock,
    up: Vec<UpBlock>,
    norm_out: GroupNorm,
    conv_out: SameConv2d,
    cfg: VaeConfig,
    dtype: DType,
    device: Device,
}

impl VaeDecoder {
    /// Load a diffusers VAE folder (`config.json` and `diffusion_pytorch_model.safetensors`,
    /// or `.bin`), e.g. a snapshot of `stabilityai/sdxl-vae`, in `dtype` on `device`.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        check_dtype(dtype, device)?;
        let cfg = VaeConfig::from_file(&dir.join("config.json"))?;
        let weights = WEIGHT_FILES
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                Error::not_found(
                    format!("VAE weights (one of {})", WEIGHT_FILES.join(", ")),
                    dir,
                )
            })?;
        let vb = crate::loading::Checkpoint::open(&weights)?.var_builder(dtype, device);
        Self::new(&cfg, vb)
    }

    /// Build from a `VarBuilder` at the root of the `AutoencoderKL` state dict (keys
    /// `post_quant_conv.*`, `decoder.*`); runs in `vb`'s dtype, on `vb`'s device.
    pub fn new(cfg: &VaeConfig, vb: VarBuilder) -> Result<Self> {
        check_dtype(vb.dtype(), vb.device())?;
        Self::build(cfg, &vb).map_err(weights_err)
    }

    fn build(cfg: &VaeConfig, vb: &VarBuilder) -> candle_core::Result<Self> {
        let groups = cfg.norm_num_groups;
        let lat = cfg.latent_channels;
        let post_quant_conv = if cfg.use_post_quant_conv {
            Some(same_conv2d(lat, lat, 1, vb.pp("post_quant_conv"))?)
        } else {
            None
        };
        let vb = vb.pp("decoder");
        let channels: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
        let top = channels[0];
        let conv_in = same_conv2d(lat, top, 3, vb.pp("conv_in"))?;
        let vbm = vb.pp("mid_block");
        let resnet =
            |cin, cout, vb| ResnetBlock::with_names(cin, cout, groups, "conv_shortcut", vb);
        let mid = MidBlock {
            res1: resnet(top, top, vbm.pp("resnets.0"))?,
            attn: if cfg.mid_block_add_attention {
                Some(attention(top, groups, vbm.pp("attentions.0"))?)
            } else {
                None
            },
            res2: resnet(top, top, vbm.pp("resnets.1"))?,
        };
        let mut up = Vec::with_capacity(channels.len());
        let mut cin = top;
        for (i, &cout) in channels.iter().enumerate() {
            let vbu = vb.pp(format!("up_blocks.{i}"));
            let resnets = (0..=cfg.layers_per_block)
                .map(|j| {
                    let c = if j == 0 { cin } else { cout };
                    resnet(c, cout, vbu.pp(format!("resnets.{j}")))
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            let upsample = if i + 1 < channels.len() {
                Some(same_conv2d(cout, cout, 3, vbu.pp("upsamplers.0.conv"))?)
            } else {
                None
            };
            up.push(UpBlock { resnets, upsample });
            cin = cout;
        }
        let bottom = cfg.block_out_channels[0];
        Ok(Self {
            post_quant_conv,
            conv_in,
            mid,
            up,
            norm_out: group_norm(groups, bottom, EPS, vb.pp("conv_norm_out"))?,
            conv_out: same_conv2d(bottom, cfg.out_channels, 3, vb.pp("conv_out"))?,
            cfg: cfg.clone(),
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    pub fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Output pixels per latent pixel along each axis (8 for SDXL).
    pub fn upscale(&self) -> usize {
        1 << (self.cfg.block_out_channels.len() - 1)
    }

    /// diffusers `AutoencoderKL.decode(z).sample`: latents (b, latent_channels, h, w), any float
    /// dtype and device, *already divided by the scaling factor*, → images
    /// (b, out_channels, h·s, w·s) in the VAE's dtype on its device, unclipped (≈ [−1, 1]).
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.check_latents(z)?;
        let z = z.to_device(&self.device)?.to_dtype(self.dtype)?;
        let z = match &self.post_quant_conv {
            Some(conv) => conv.forward(&z)?,
            None => z,
        };
        let dev = &self.device;
        let mut h = {
            let _t = crate::profile::stage("vae conv_in + mid", dev);
            let mid = &self.mid;
            let mut h = mid.res1.forward(&self.conv_in.forward(&z)?)?;
            if let Some(attn) = &mid.attn {
                h = attn.forward(&h)?;
            }
            mid.res2.forward(&h)?
        };
        for (i, block) in self.up.iter().enumerate() {
            let _t = crate::profile::stage(UP_STAGES[i.min(UP_STAGES.len() - 1)], dev);
            h = block.forward(h)?;
        }
        let _t = crate::profile::stage("vae norm + conv_out", dev);
        Ok(self.conv_out.forward(&self.norm_out.forward_swish(&h)?)?)
    }

    /// Decode latents in the scaled space the generator works in, as JanusFlow does
    /// (`vae.decode(z / vae.config.scaling_factor)`): `decode(z / scaling_factor + shift_factor)`
    /// (the diffusers pipelines' unscaling; sdxl-vae has no shift). The division is done in f32.
    pub fn decode_scaled(&self, z: &Tensor) -> Result<Tensor> {
        self.check_latents(z)?;
        let z = z.to_dtype(DType::F32)?;
        let sf = Tensor::new(self.cfg.scaling_factor as f32, z.device())?;
        let mut z = z.broadcast_div(&sf)?;
        if self.cfg.shift_factor != 0.0 {
            z = (z + self.cfg.shift_factor)?;
        }
        self.decode(&z)
    }

    fn check_latents(&self, z: &Tensor) -> Result<()> {
        let c = self.cfg.latent_channels;
        match z.dims() {
            &[b, zc, h, w] if zc == c && b > 0 && h > 0 && w > 0 && z.dtype().is_float() => Ok(()),
            dims => Err(Error::input(format!(
                "VAE latents must be a non-empty float tensor of shape (batch, {c}, height, \
                 width); got {dims:?} {:?}",
                z.dtype()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use super::*;
    use crate::kernels::gemm::max_abs;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-janusflow")
    }

    fn load_tensors(path: &Path) -> HashMap<String, Tensor> {
        candle_core::safetensors::load(path, &Device::Cpu).expect("reference tensors")
    }

    /// (max |a − b|, max |a − b| / max |b|).
    fn errors(a: &Tensor, b: &Tensor) -> (f32, f32) {
        assert_eq!(a.dims(), b.dims());
        let d = max_abs(&(a.to_dtype(DType::F32).unwrap() - b).unwrap());
        (d, d / max_abs(b))
    }

    fn tiny() -> VaeDecoder {
        VaeDecoder::load(&fixture().join("vae"), DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn sdxl_vae_config() {
        let cfg = VaeConfig::from_file(&fixture().join("vae/config.json")).unwrap();
        assert_eq!(cfg.block_out_channels, [32, 48, 64, 64]);
        assert_eq!(
            (
                cfg.norm_num_groups,
                cfg.layers_per_block,
                cfg.latent_channels
            ),
            (16, 2, 4)
        );
        assert_eq!((cfg.scaling_factor, cfg.shift_factor), (0.13025, 0.0));
        assert!(cfg.mid_block_add_attention && cfg.force_upcast && cfg.use_post_quant_conv);

        let file = Path::new("vae/config.json");
        let bad = |json: &str, field: &str| {
            let e = VaeConfig::from_json(json, file).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, Error::Config { .. }), "{msg}");
            assert!(
                msg.contains(field) && msg.contains("vae/config.json"),
                "{msg}"
            );
        };
        bad(r#"{"act_fn": "gelu"}"#, "act_fn");
        bad(r#"{"up_block_types": ["UpBlock2D"]}"#, "up_block_types");
        bad(
            r#"{"block_out_channels": [32, 64], "up_block_types": ["UpDecoderBlock2D"]}"#,
            "up_block_types",
        );
        bad(
            r#"{"block_out_channels": [48], "norm_num_groups": 32}"#,
            "norm_num_groups",
        );
        bad(r#"{"_class_name": "AutoencoderTiny"}"#, "_class_name");
        bad(r#"{"scaling_factor": 0}"#, "scaling_factor");
        bad(r#"{"block_out_channels": []}"#, "block_out_channels");
        // diffusers defaults and nulls.
        let d = VaeConfig::from_json(r#"{"shift_factor": null, "use_quant_conv": null}"#, file)
            .unwrap();
        assert_eq!(
            (d.block_out_channels.clone(), d.layers_per_block),
            (vec![64], 1)
        );
        assert_eq!((d.scaling_factor, d.shift_factor), (0.18215, 0.0));
        assert!(d.use_quant_conv);
        let s =
            VaeConfig::from_json(r#"{"shift_factor": 0.0609, "act_fn": "swish"}"#, file).unwrap();
        assert_eq!(s.shift_factor, 0.0609);
    }

    #[test]
    fn sdxl_vae_rejects_f16_and_bad_latents() {
        let dir = fixture().join("vae");
        for dtype in [DType::F16, DType::BF16, DType::U8] {
            let e = VaeDecoder::load(&dir, dtype, &Device::Cpu).err().unwrap();
            assert!(matches!(e, Error::Input(_)), "{e}");
        }
        let msg = VaeDecoder::load(&dir, DType::F16, &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("float16"), "{msg}");
        let vae = tiny();
        assert_eq!(vae.upscale(), 8);
        for shape in [(1, 3, 8, 8), (0, 4, 8, 8)] {
            let z = Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap();
            assert!(matches!(vae.decode(&z), Err(Error::Input(_))));
        }
        let z = Tensor::zeros((1, 4, 8), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(vae.decode_scaled(&z), Err(Error::Input(_))));
    }

    /// The fixture's `gen_decoded` = official JanusFlow `vae.decode(z / 0.13025).sample`.
    #[test]
    fn sdxl_vae_matches_janusflow_reference() {
        let reference = load_tensors(&fixture().join("reference.safetensors"));
        let vae = tiny();
        let out = vae.decode_scaled(&reference["gen_final_latent"]).unwrap();
        assert_eq!(out.dims(), [2, 3, 64, 64]);
        let (abs, rel) = errors(&out, &reference["gen_decoded"]);
        println!("gen_decoded: max abs {abs:.3e}, relative {rel:.3e}");
        assert!(rel < 1e-4, "max abs {abs}, relative {rel}");
    }

    /// diffusers' AutoencoderKL as a second oracle (scripts/make_janusflow_vae_reference.py).
    #[test]
    fn sdxl_vae_matches_diffusers() {
        let r = load_tensors(&fixture().join("vae_reference.safetensors"));
        let vae = tiny();
        // decode_scaled divides exactly like torch's `z / scaling_factor` in f32.
        let sf = Tensor::new(vae.config().scaling_factor as f32, &Device::Cpu).unwrap();
        let unscaled = r["latents_scaled"].broadcast_div(&sf).unwrap();
        assert_eq!(errors(&unscaled, &r["latents"]).0, 0.0);
        for (input, expected, dims) in [
            ("latents_scaled", "decoded", [3, 3, 64, 64]),
            (
                "latents_scaled_nonsquare",
                "decoded_nonsquare",
                [1, 3, 48, 80],
            ),
        ] {
            let out = vae.decode_scaled(&r[input]).unwrap();
            assert_eq!(out.dims(), dims);
            let (abs, rel) = errors(&out, &r[expected]);
            println!("{expected}: max abs {abs:.3e}, relative {rel:.3e}");
            assert!(rel < 1e-4, "{expected}: max abs {abs}, relative {rel}");
        }
        // decode() takes unscaled latents (diffusers `decode`).
        let out = vae.decode(&r["latents"]).unwrap();
        let (abs, rel) = errors(&out, &r["decoded"]);
        println!("decode(latents): max abs {abs:.3e}, relative {rel:.3e}");
        assert!(rel < 1e-4);
    }

    /// Files with the legacy attention names (`query`/`key`/`value`/`proj_attn`) decode the same.
    #[test]
    fn sdxl_vae_legacy_attention_names() {
        let dir = fixture().join("vae");
        let tensors = load_tensors(&dir.join("diffusion_pytorch_model.safetensors"));
        let renamed: HashMap<String, Tensor> = tensors
            .into_iter()
            .map(|(k, v)| {
                let mut k = k;
                for (new, old) in [
                    ("to_q", "query"),
                    ("to_k", "key"),
                    ("to_v", "value"),
                    ("to_out.0", "proj_attn"),
                ] {
                    k = k.replace(
                        &format!(".attentions.0.{new}."),
                        &format!(".attentions.0.{old}."),
                    );
                }
                (k, v)
            })
            .collect();
        assert!(renamed.contains_key("decoder.mid_block.attentions.0.proj_attn.weight"));
        let cfg = VaeConfig::from_file(&dir.join("config.json")).unwrap();
        let vb = VarBuilder::from_tensors(renamed, DType::F32, &Device::Cpu);
        let legacy = VaeDecoder::new(&cfg, vb).unwrap();
        let z = Tensor::randn(0f32, 1.0, (1, 4, 5, 7), &Device::Cpu).unwrap();
        let (a, b) = (
            legacy.decode_scaled(&z).unwrap(),
            tiny().decode_scaled(&z).unwrap(),
        );
        assert_eq!(errors(&a, &b).0, 0.0);
    }

    /// Timing of one (1, 4, 48, 48) → 384² decode through a full-size SDXL VAE decoder with
    /// random weights, f32 on the CPU:
    /// `cargo test --release --lib sdxl_vae_cpu_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn sdxl_vae_cpu_timing() {
        let cfg = VaeConfig::from_json(
            r#"{"_class_name": "AutoencoderKL", "block_out_channels": [128, 256, 512, 512],
                "layers_per_block": 2, "norm_num_groups": 32, "latent_channels": 4,
                "scaling_factor": 0.13025,
                "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D",
                                   "UpDecoderBlock2D", "UpDecoderBlock2D"]}"#,
            Path::new("sdxl-vae/config.json"),
        )
        .unwrap();
        let dev = Device::Cpu;
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let vae = VaeDecoder::new(&cfg, vb).unwrap();
        let n: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
        println!(
            "decoder parameters: {n}, threads: {}",
            candle_core::utils::get_num_threads()
        );
        let z = Tensor::randn(0f32, 1.0, (1, 4, 48, 48), &dev).unwrap();
        for run in 0..3 {
            let t = std::time::Instant::now();
            let out = vae.decode_scaled(&z).unwrap();
            assert_eq!(out.dims(), [1, 3, 384, 384]);
            let secs = t.elapsed().as_secs_f64();
            assert!(max_abs(&out).is_finite());
            println!("decode {run}: {secs:.2} s");
            crate::profile::report("vae decode");
        }
    }
}
