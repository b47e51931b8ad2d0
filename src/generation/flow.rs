//! JanusFlow text-to-image: rectified-flow Euler sampling with classifier-free guidance, as the
//! official README `generate()` loop does it (spec §7.3).
//!
//! Rows come in block layout `[cond × B; uncond × B]`. The LLM input of a step is
//! `[prompt embeddings (P − 1), t_emb, z tokens (N)]` at positions 0.., with a 2-D mask that
//! hides the unconditional rows' prompt (columns 1..P−2; BOS stays visible). Per step:
//! `enc(cat[z, z], t)` → `enc_aligner` → LLM → the last N hidden states → `dec_aligner_norm` →
//! `dec_aligner` → `dec(·, skip, t_emb)` → `v = w·v_c − (w − 1)·v_u` → `z += dt·v`, with
//! `t = bf16(s/S·1000)` and `dt = bf16(1/S)` (the official sampler rounds both to bf16).
//!
//! The prompt prefix is the same at every step and, under the causal mask, independent of z and
//! t, so it is run once into the KV cache; each step feeds only the 1 + N new positions into a
//! fork of that cache (the official code re-runs the whole sequence: its cache copy is empty).
//! [`FlowSampler::sample`] can also recompute the full sequence every step, which tests use to
//! show that both give the same latents.
//!
//! The latent is integrated in f32 whatever the model dtype (the official loop keeps it in bf16).

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::RmsNorm;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::image::{check_image_counts, image_streams, PromptImages};
use super::sampler::image_stream;
use crate::error::{bail_input, Error, Result};
use crate::kernels::linear::Linear;
use crate::models::llama::{causal_mask_hiding_keys, Llama};
use crate::models::uvit::{ShallowUViTDecoder, ShallowUViTEncoder};
use crate::models::KvCache;

#[derive(Debug, Clone)]
pub struct FlowParams {
    /// Per prompt: how many images (the official `batch_size`) and the seed of their initial
    /// noise, when it is not given (image `i` of a prompt takes stream `i` of its seed).
    pub images: Vec<PromptImages>,
    /// Guidance weight w in `w·v_c − (w − 1)·v_u` (official default 2; 1 disables guidance).
    pub cfg_weight: f64,
    /// Euler steps S (official default 30).
    pub num_steps: usize,
}

impl FlowParams {
    /// Checks the parameters; returns the number of images in all.
    pub fn validate(&self, max_images: usize) -> Result<usize> {
        let total = check_image_counts(&self.images, max_images)?;
        if !self.cfg_weight.is_finite() {
            bail_input!(
                "cfg_weight must be a finite number, got {}",
                self.cfg_weight
            );
        }
        if self.num_steps == 0 {
            bail_input!("num_steps must be >= 1, got 0");
        }
        if self.num_steps > MAX_STEPS {
            bail_input!("num_steps must be <= {MAX_STEPS}, got {}", self.num_steps);
        }
        Ok(total)
    }
}

/// More steps than this is certainly a mistake (the official default is 30).
pub const MAX_STEPS: usize = 10_000;

fn bf16_round(x: f64) -> f32 {
    half::bf16::from_f64(x).to_f32()
}

/// The official timesteps: `t_s = bf16(s / S · 1000)` for s in 0..S (0, 33.25, 66.5, 100, …
/// for S = 30).
pub fn timesteps(num_steps: usize) -> Vec<f32> {
    (0..num_steps)
        .map(|s| bf16_round(s as f64 / num_steps as f64 * 1000.0))
        .collect()
}

/// The official step size: `dt = bf16(1 / S)` (0.033447265625 for S = 30, so the steps add up
/// to 1.0034, not 1).
pub fn step_size(num_steps: usize) -> f32 {
    bf16_round(1.0 / num_steps as f64)
}

/// `n` standard normal values from `seed` (ChaCha8, Box–Muller). The official code draws
/// `torch.randn(..., dtype=bfloat16)`, whose stream cannot be reproduced here; pass the noise
/// explicitly to reproduce an official run.
pub fn gaussian_noise(seed: u64, n: usize) -> Vec<f32> {
    gaussian_from(ChaCha8Rng::seed_from_u64(seed), n)
}

/// The initial noise of every image, prompt-major: image `i` of a prompt is `n_per_image`
/// values from [`image_stream`]`(seed, i)`, whatever else the batch holds (a prompt's first
/// image is `gaussian_noise(seed, n)`).
pub fn image_noise(images: &[PromptImages], n_per_image: usize) -> Vec<f32> {
    image_streams(images)
        .into_iter()
        .flat_map(|(seed, index)| gaussian_from(image_stream(seed, index), n_per_image))
        .collect()
}

fn gaussian_from(mut rng: ChaCha8Rng, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        // u1 in (0, 1] so ln(u1) is finite.
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let a = std::f64::consts::TAU * u2;
        out.push((r * a.cos()) as f32);
        out.push((r * a.sin()) as f32);
    }
    out.truncate(n);
    out
}

/// The modules of one velocity evaluation, borrowed from the model.
pub struct FlowNet<'a> {
    pub llm: &'a Llama,
    pub enc: &'a ShallowUViTEncoder,
    pub enc_aligner: &'a Linear,
    pub dec_aligner_norm: &'a RmsNorm,
    pub dec_aligner: &'a Linear,
    pub dec: &'a ShallowUViTDecoder,
}

/// Encoder outputs of one step for R rows.
pub struct Encoded {
    /// `x_emb` channels-last (R, h, w, C): the decoder's skip input.
    pub skip: Tensor,
    /// (R, hidden)
    pub t_emb: Tensor,
    /// `enc_aligner(x_emb)` in raster order (R, h·w, hidden): the LLM's latent tokens.
    pub z_emb: Tensor,
}

impl FlowNet<'_> {
    /// `enc(z, t)` and `enc_aligner`: z (R, 4, H, W) in any float dtype, t one timestep.
    pub fn encode(&self, z: &Tensor, t: f32) -> Result<Encoded> {
        let dtype = self.llm.dtype();
        let t = Tensor::new(&[t], z.device())?;
        let (x, t_emb) = self.enc.forward_nhwc(&z.to_dtype(dtype)?, &t)?;
        let (r, h, w, c) = x.dims4()?;
        let z_emb = self.enc_aligner.forward(&x.reshape((r, h * w, c))?)?;
        Ok(Encoded {
            skip: x,
            t_emb,
            z_emb,
        })
    }

    /// The last N final-norm hidden states (R, N, hidden) → `dec_aligner_norm` →
    /// `dec_aligner` → `dec(·, skip, t_emb)`. Returns the decoder input channels-last
    /// (R, h, w, C_in) and the velocity (R, 4, H, W) in f32.
    pub fn decode(&self, hidden: &Tensor, enc: &Encoded) -> Result<(Tensor, Tensor)> {
        let (r, h, w, _) = enc.skip.dims4()?;
        let y = self
            .dec_aligner
            .forward(&self.dec_aligner_norm.forward(hidden)?)?;
        let c_in = y.dim(2)?;
        let y = y.reshape((r, h, w, c_in))?;
        let v = self.dec.forward_nhwc(&y, &enc.skip, &enc.t_emb)?;
        let v = v
            .permute((0, 3, 1, 2))?
            .to_dtype(DType::F32)?
            .contiguous()?;
        Ok((y, v))
    }
}

/// Called after each Euler step with (steps done, total steps); an error stops the work.
pub type OnFlowStep<'a> = dyn FnMut(usize, usize) -> Result<()> + 'a;

/// Sampling for one prompt: its CFG prompt embeddings and the mask that goes with them.
pub struct FlowSampler<'a> {
    net: FlowNet<'a>,
    /// `embed(tokens)[:, :-1]`, (2B, P − 1, hidden), block layout.
    prefix: Tensor,
    /// B: images (conditional rows).
    batch: usize,
    /// Latent tokens per image (N = h·w of the token grid).
    num_tokens: usize,
}

impl<'a> FlowSampler<'a> {
    /// `prompt_ids`: BOS … generation tag (P ids, P ≥ 2). Builds the rows
    /// `[cond × B; uncond × B]`, the unconditional ones `[BOS, pad × (P − 1)]`, and embeds all
    /// but the last id of each.
    pub fn new(
        net: FlowNet<'a>,
        prompt_ids: &[u32],
        pad: u32,
        batch: usize,
        num_tokens: usize,
        device: &Device,
    ) -> Result<Self> {
        let p = prompt_ids.len();
        if p < 2 {
            return Err(Error::input(
                "a generation prompt needs at least BOS and the generation tag",
            ));
        }
        if batch == 0 {
            bail_input!("the batch is empty");
        }
        let ctx = net.llm.config().max_position_embeddings;
        if p + num_tokens > ctx {
            return Err(Error::ContextLength(format!(
                "the generation prompt is {p} tokens long; with {num_tokens} latent tokens that exceeds \
                 the model's context of {ctx}"
            )));
        }
        let cond = &prompt_ids[..p - 1];
        let mut uncond = vec![pad; p - 1];
        uncond[0] = prompt_ids[0];
        let mut rows = Vec::with_capacity(2 * batch * (p - 1));
        for _ in 0..batch {
            rows.extend_from_slice(cond);
        }
        for _ in 0..batch {
            rows.extend_from_slice(&uncond);
        }
        let ids = Tensor::from_vec(rows, (2 * batch, p - 1), device)?;
        let prefix = net.llm.embed(&ids)?;
        Ok(Self {
            net,
            prefix,
            batch,
            num_tokens,
        })
    }

    /// The prompt prefix length P − 1.
    pub fn prefix_len(&self) -> usize {
        self.prefix.dims()[1]
    }

    /// Total LLM positions of a step: (P − 1) + 1 + N.
    pub fn seq_len(&self) -> usize {
        self.prefix_len() + 1 + self.num_tokens
    }

    /// The 2-D mask as hidden key ranges: none for the conditional rows, the prompt after BOS
    /// (columns 1..P−1) for the unconditional ones.
    fn hidden_keys(&self) -> Vec<std::ops::Range<usize>> {
        let hide = 1..self.prefix_len();
        (0..2 * self.batch)
            .map(|r| if r < self.batch { 0..0 } else { hide.clone() })
            .collect()
    }

    fn mask(&self, t: usize, past: usize) -> Result<Tensor> {
        let llm = self.net.llm;
        let dev = self.prefix.device();
        Ok(causal_mask_hiding_keys(
            &self.hidden_keys(),
            t,
            past,
            llm.dtype(),
            dev,
        )?)
    }

    /// The LLM input of a step, `[prefix, t_emb, z tokens]` (2B, P + N, hidden), as the
    /// official loop builds it.
    pub fn step_inputs(&self, enc: &Encoded) -> Result<Tensor> {
        let t_emb = enc.t_emb.unsqueeze(1)?.to_dtype(self.prefix.dtype())?;
        let z_emb = enc.z_emb.to_dtype(self.prefix.dtype())?;
        Ok(Tensor::cat(&[&self.prefix, &t_emb, &z_emb], 1)?)
    }

    /// The LLM over the prompt prefix alone, cached (capacity for one step's new positions).
    pub fn prefix_cache(&self) -> Result<KvCache> {
        let llm = self.net.llm;
        let mut cache = llm.new_cache(self.seq_len());
        let p = self.prefix_len();
        llm.forward_embeds_masked(&self.prefix, &mut cache, &self.mask(p, 0)?)?;
        Ok(cache)
    }

    /// Final-norm hidden states of the latent-token positions (2B, N, hidden) at one step:
    /// with `prefix` (from [`prefix_cache`](Self::prefix_cache)) only the 1 + N new positions
    /// are run, on a fork of that cache; without it the whole sequence is.
    pub fn latent_hidden(&self, enc: &Encoded, prefix: Option<&KvCache>) -> Result<Tensor> {
        let llm = self.net.llm;
        let p = self.prefix_len();
        let hidden = match prefix {
            Some(cache) => {
                let mut cache = cache.fork();
                let t_emb = enc.t_emb.unsqueeze(1)?.to_dtype(self.prefix.dtype())?;
                let z_emb = enc.z_emb.to_dtype(self.prefix.dtype())?;
                let new = Tensor::cat(&[&t_emb, &z_emb], 1)?;
                llm.forward_embeds_masked(&new, &mut cache, &self.mask(1 + self.num_tokens, p)?)?
            }
            None => {
                let seq = self.step_inputs(enc)?;
                let mut cache = llm.new_cache(self.seq_len());
                llm.forward_embeds_masked(&seq, &mut cache, &self.mask(self.seq_len(), 0)?)?
            }
        };
        let t = hidden.dim(1)?;
        Ok(hidden.narrow(1, t - self.num_tokens, self.num_tokens)?)
    }

    /// Velocities of every row (2B, 4, H, W), f32, before guidance: `z` (B, 4, H, W) is
    /// duplicated for the conditional and unconditional rows.
    pub fn velocity_rows(&self, z: &Tensor, t: f32, prefix: Option<&KvCache>) -> Result<Tensor> {
        let zin = Tensor::cat(&[z, z], 0)?;
        let enc = self.net.encode(&zin, t)?;
        let (_, gh, gw, _) = enc.skip.dims4()?;
        if gh * gw != self.num_tokens {
            bail_input!(
                "the latent gives a {gh}×{gw} token grid but the sampler was set up for {} tokens",
                self.num_tokens
            );
        }
        let hidden = self.latent_hidden(&enc, prefix)?;
        Ok(self.net.decode(&hidden, &enc)?.1)
    }

    /// Integrate from `z0` (B, 4, H, W): S Euler steps with guidance weight `cfg_weight`.
    /// Returns every latent (z₀ first, S + 1 tensors) when `keep_all`, else only the last.
    /// `cache_prefix`: run the prompt once into the KV cache (the default path) instead of
    /// recomputing the whole sequence at every step (same result).
    pub fn sample(
        &self,
        z0: &Tensor,
        cfg_weight: f64,
        num_steps: usize,
        cache_prefix: bool,
        keep_all: bool,
        on_step: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Vec<Tensor>> {
        let device = z0.device();
        let b = self.batch;
        let dt = step_size(num_steps) as f64;
        let w = cfg_weight;
        let prefix = if cache_prefix {
            let _t = crate::profile::stage("flow prefix", device);
            Some(self.prefix_cache()?)
        } else {
            None
        };
        let mut z = z0.to_dtype(DType::F32)?;
        let mut all = Vec::with_capacity(if keep_all { num_steps + 1 } else { 1 });
        if keep_all {
            all.push(z.clone());
        }
        for t in timesteps(num_steps) {
            let _t = crate::profile::stage("flow step", device);
            let v = self.velocity_rows(&z, t, prefix.as_ref())?;
            let (vc, vu) = (v.narrow(0, 0, b)?, v.narrow(0, b, b)?);
            let v = (vc.affine(w, 0.0)? - vu.affine(w - 1.0, 0.0)?)?;
            z = (z + v.affine(dt, 0.0)?)?;
            if keep_all {
                all.push(z.clone());
            }
            on_step()?;
        }
        if !keep_all {
            all.push(z);
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_matches_the_official_bf16_values() {
        let t = timesteps(30);
        assert_eq!(&t[..6], &[0.0, 33.25, 66.5, 100.0, 133.0, 167.0]);
        assert_eq!(t[29], 968.0);
        assert_eq!(step_size(30), 137.0 / 4096.0); // 0.033447265625
        assert_eq!(step_size(1), 1.0);
        assert_eq!(timesteps(1), vec![0.0]);
    }

    #[test]
    fn noise_is_seeded_and_standard_normal() {
        let a = gaussian_noise(7, 20_001);
        assert_eq!(a.len(), 20_001);
        assert_eq!(a, gaussian_noise(7, 20_001));
        assert_ne!(a, gaussian_noise(8, 20_001));
        let n = a.len() as f64;
        let mean = a.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
        // A prefix of a longer draw is the shorter draw.
        assert_eq!(&gaussian_noise(7, 10)[..], &a[..10]);
    }

    /// One sampling step of a full-size JanusFlow-1.3B with random weights (LLM 24 layers,
    /// 2048 wide, 16 heads, FFN 5632, vocab 102400; ConvNeXt C = 768; latent 4×48×48, one image,
    /// so 2 CFG rows of 15 + 1 + 576 positions), f32 on CPU, weights built in memory (~6.6 GB).
    /// `cargo test --release --lib timing_janusflow_step -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn timing_janusflow_step() {
        use crate::kernels::linear::linear;
        use crate::models::uvit::{UViTDecoderParams, UViTEncoderParams};
        use candle_nn::{VarBuilder, VarMap};
        use std::time::Instant;

        let dev = Device::Cpu;
        let lang: crate::loading::LlamaConfig = serde_json::from_str(
            r#"{"hidden_size": 2048, "intermediate_size": 5632, "max_position_embeddings": 16384,
                "num_attention_heads": 16, "num_hidden_layers": 24, "num_key_value_heads": 16,
                "vocab_size": 102400}"#,
        )
        .unwrap();
        let enc_p: UViTEncoderParams = serde_json::from_str(
            r#"{"block_out_channels":[768],"hidden_size":2048,"input_channels":4,"kernel_size":2,
                "layers_in_middle":2,"norm_eps":1e-06,"padding":0,"stride":2}"#,
        )
        .unwrap();
        let dec_p: UViTDecoderParams = serde_json::from_str(
            r#"{"block_out_channels":[768],"hidden_size":2048,"in_channels":768,"layers_in_middle":2,
                "norm_eps":1e-06,"out_channels":4,"upsamples":1}"#,
        )
        .unwrap();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let s = Instant::now();
        let llm = Llama::new(&lang, vb.pp("language_model"), Default::default()).unwrap();
        let enc = ShallowUViTEncoder::new(&enc_p, vb.pp("vision_gen_enc_model")).unwrap();
        let dec = ShallowUViTDecoder::new(&dec_p, vb.pp("vision_gen_dec_model")).unwrap();
        let enc_aligner = linear(768, 2048, vb.pp("vision_gen_enc_aligner")).unwrap();
        let norm = candle_nn::rms_norm(2048, 1e-6, vb.pp("vision_gen_dec_aligner_norm")).unwrap();
        let dec_aligner = linear(2048, 768, vb.pp("vision_gen_dec_aligner")).unwrap();
        eprintln!("random weights built in {:.1} s", s.elapsed().as_secs_f64());
        let net = FlowNet {
            llm: &llm,
            enc: &enc,
            enc_aligner: &enc_aligner,
            dec_aligner_norm: &norm,
            dec_aligner: &dec_aligner,
            dec: &dec,
        };
        // BOS + a 14-token prompt + the generation tag ("a cozy cabin in the snow" is about that).
        let ids: Vec<u32> = (0..16).map(|i| 100_000 + i).collect();
        let sampler = FlowSampler::new(net, &ids, 100_001, 1, 576, &dev).unwrap();
        let z = Tensor::randn(0f32, 1.0, (1, 4, 48, 48), &dev).unwrap();
        let s = Instant::now();
        let cache = sampler.prefix_cache().unwrap();
        eprintln!(
            "prompt prefix (2 rows × 15 positions): {:.3} s",
            s.elapsed().as_secs_f64()
        );
        let mut steps = Vec::new();
        for (i, t) in timesteps(30).into_iter().take(4).enumerate() {
            let s = Instant::now();
            let zin = Tensor::cat(&[&z, &z], 0).unwrap();
            let e = sampler.net.encode(&zin, t).unwrap();
            let t_enc = s.elapsed().as_secs_f64();
            let h = sampler.latent_hidden(&e, Some(&cache)).unwrap();
            let t_llm = s.elapsed().as_secs_f64() - t_enc;
            let (_, v) = sampler.net.decode(&h, &e).unwrap();
            let total = s.elapsed().as_secs_f64();
            assert_eq!(v.dims(), &[2, 4, 48, 48]);
            eprintln!(
                "step {i}: {total:.3} s (encoder + aligner {t_enc:.3} s, LLM 577 new positions {t_llm:.3} s, \
                 aligner + decoder {:.3} s)",
                total - t_enc - t_llm
            );
            steps.push(total);
        }
        let s = Instant::now();
        sampler.velocity_rows(&z, 500.0, None).unwrap();
        eprintln!(
            "one step recomputing the prompt (official): {:.3} s",
            s.elapsed().as_secs_f64()
        );
        steps.sort_by(|a, b| a.partial_cmp(b).unwrap());
        eprintln!(
            "cached step: best {:.3} s, median {:.3} s ({} threads); 30 steps ≈ {:.0} s",
            steps[0],
            steps[steps.len() / 2],
            candle_core::utils::get_num_threads(),
            30.0 * steps[0]
        );
    }
}
