//! JanusFlow's generation entry points: the flow network's parts step by step (encode,
//! decode, velocity), the rectified-flow sampler over whole prompts, and the VAE decode.

use super::*;

/// What the sampler should hand back.
#[derive(Debug, Clone, Copy)]
pub struct SampleOptions {
    /// Run the prompt once into the KV cache (default) rather than recomputing the whole
    /// sequence at every step; both give the same latents.
    pub cache_prefix: bool,
    /// Return every latent (z₀ and after each step) instead of only the final one.
    pub keep_all: bool,
}

impl Default for SampleOptions {
    fn default() -> Self {
        Self {
            cache_prefix: true,
            keep_all: false,
        }
    }
}

impl JanusFlow {
    fn net(&self) -> FlowNet<'_> {
        FlowNet {
            llm: &self.llm,
            enc: &self.gen_enc,
            enc_aligner: &self.gen_enc_aligner,
            dec_aligner_norm: &self.gen_dec_aligner_norm,
            dec_aligner: &self.gen_dec_aligner,
            dec: &self.gen_dec,
        }
    }

    fn sampler(&self, prompt: &str, batch: usize) -> Result<FlowSampler<'_>> {
        let ids = self.generation_prompt_ids(prompt)?;
        let g = self.latent_token_grid();
        FlowSampler::new(
            self.net(),
            &ids,
            self.tokenizer.special.pad,
            batch,
            g * g,
            &self.device,
        )
    }

    /// Check that `z` is a batch of latents (B, C, h, w) with finite values; returns B.
    pub fn check_latents(&self, z: &Tensor, what: &str) -> Result<usize> {
        let (c, h, w) = self.latent_shape();
        let b = match z.dims() {
            &[b, zc, zh, zw] if b > 0 && zc == c && zh == h && zw == w => b,
            other => {
                return Err(Error::input(format!(
                    "{what} must have shape (n, {c}, {h}, {w}) with n >= 1, got {other:?}"
                )))
            }
        };
        Self::check_finite(z, what)?;
        Ok(b)
    }

    fn check_finite(z: &Tensor, what: &str) -> Result<()> {
        let finite = z
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .all(|v| v.is_finite());
        if !finite {
            return Err(Error::input(format!(
                "{what} contains NaN or infinite values"
            )));
        }
        Ok(())
    }

    /// The generation encoder and its aligner at timestep `t` for latents (R, C, h, w):
    /// `x_emb` (R, C', h/2, w/2) NCHW, `t_emb` (R, hidden) and the LLM's latent tokens
    /// `enc_aligner(x_emb)` (R, N, hidden).
    pub fn flow_encode(&self, z: &Tensor, t: f32) -> Result<(Tensor, Tensor, Tensor)> {
        self.check_latents(z, "latents")?;
        let e = self.net().encode(z, t)?;
        let x_emb = e.skip.permute((0, 3, 1, 2))?.contiguous()?;
        Ok((x_emb, e.t_emb, e.z_emb))
    }

    /// From the LLM's final-norm hidden states of the latent tokens (R, N, hidden), the
    /// encoder's `x_emb` (R, C', g, g) and `t_emb` (R, hidden): the decoder input
    /// `dec_aligner(dec_aligner_norm(h))` as NCHW (R, C_in, g, g) and the velocity
    /// (R, C, 2g, 2g).
    pub fn flow_decode(
        &self,
        hidden: &Tensor,
        x_emb: &Tensor,
        t_emb: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (r, _, g, g2) = x_emb.dims4()?;
        let h = self.config.hidden_size();
        if hidden.dims() != [r, g * g2, h] || t_emb.dims() != [r, h] {
            return Err(Error::input(format!(
                "hidden must be (R, {}, {h}) and t_emb (R, {h}) for x_emb {:?}; got {:?} and {:?}",
                g * g2,
                x_emb.dims(),
                hidden.dims(),
                t_emb.dims()
            )));
        }
        let enc = Encoded {
            skip: x_emb
                .to_dtype(self.weights.compute_dtype)?
                .permute((0, 2, 3, 1))?
                .contiguous()?,
            t_emb: t_emb.to_dtype(self.weights.compute_dtype)?,
            z_emb: hidden.clone(),
        };
        let (y, v) = self
            .net()
            .decode(&hidden.to_dtype(self.weights.compute_dtype)?, &enc)?;
        Ok((y.permute((0, 3, 1, 2))?.contiguous()?, v))
    }

    /// One velocity evaluation of the sampler for `prompt`: latents `z` (B, C, h, w) at
    /// timestep `t`. Returns the rows' velocities before guidance (2B: conditional then
    /// unconditional) and the guided `w·v_c − (w − 1)·v_u` (B), f32.
    pub fn velocity(
        &self,
        prompt: &str,
        z: &Tensor,
        t: f32,
        cfg_weight: f64,
    ) -> Result<(Tensor, Tensor)> {
        let b = self.check_latents(z, "latents")?;
        if !cfg_weight.is_finite() || !t.is_finite() {
            return Err(Error::input("cfg_weight and t must be finite numbers"));
        }
        let sampler = self.sampler(prompt, b)?;
        crate::generation::limits::check_kv_cache(
            &self.llm,
            2 * b,
            sampler.seq_len(),
            &self.device,
        )?;
        let v = sampler.velocity_rows(&z.to_dtype(DType::F32)?, t, None)?;
        let (vc, vu) = (v.narrow(0, 0, b)?, v.narrow(0, b, b)?);
        let guided = (vc.affine(cfg_weight, 0.0)? - vu.affine(cfg_weight - 1.0, 0.0)?)?;
        Ok((v, guided))
    }

    /// Sample latents for each prompt × `params.num_images` (prompt-major). `initial_noise`
    /// (images, C, h, w) replaces the seeded noise. Returns (images, C, h, w), or with
    /// `opts.keep_all` (steps + 1, images, C, h, w), f32. Prompts run one after another, each
    /// with its own CFG batch; `on_step(done, total)` counts steps over all of them.
    pub fn generate_latents(
        &self,
        prompts: &[String],
        params: &FlowParams,
        initial_noise: Option<&Tensor>,
        max_images: usize,
        opts: SampleOptions,
        on_step: &mut OnFlowStep,
    ) -> Result<Tensor> {
        if prompts.is_empty() {
            return Err(Error::input("no prompts given"));
        }
        if prompts.len() != params.images.len() {
            return Err(Error::input(format!(
                "{} prompts but image counts and seeds for {}",
                prompts.len(),
                params.images.len()
            )));
        }
        let total = params.validate(max_images)?;
        let samplers = prompts
            .iter()
            .zip(&params.images)
            .map(|(p, images)| self.sampler(p, images.count))
            .collect::<Result<Vec<_>>>()?;
        let (c, h, w) = self.latent_shape();
        let noise = match initial_noise {
            Some(z) => {
                let n = self.check_latents(z, "initial_noise")?;
                if n != total {
                    return Err(Error::input(format!(
                        "initial_noise has {n} latents but {total} images were asked for"
                    )));
                }
                z.to_device(&self.device)?.to_dtype(DType::F32)?
            }
            None => Tensor::from_vec(
                image_noise(&params.images, c * h * w),
                (total, c, h, w),
                &self.device,
            )?,
        };
        let steps_total = prompts.len() * params.num_steps;
        let mut done = 0;
        let mut per_prompt = Vec::with_capacity(prompts.len());
        let mut first = 0;
        for (sampler, images) in samplers.iter().zip(&params.images) {
            let b = images.count;
            crate::generation::limits::check_kv_cache(
                &self.llm,
                2 * b,
                sampler.seq_len(),
                &self.device,
            )?;
            let z0 = noise.narrow(0, first, b)?;
            first += b;
            let latents = sampler.sample(
                &z0,
                params.cfg_weight,
                params.num_steps,
                opts.cache_prefix,
                opts.keep_all,
                &mut || {
                    done += 1;
                    on_step(done, steps_total)
                },
            )?;
            per_prompt.push(latents);
        }
        crate::profile::report("flow sampling");
        let out = if opts.keep_all {
            let steps = (0..=params.num_steps)
                .map(|s| {
                    let zs: Vec<&Tensor> = per_prompt.iter().map(|l| &l[s]).collect();
                    Tensor::cat(&zs, 0)
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            Tensor::stack(&steps, 0)?
        } else {
            let zs: Vec<&Tensor> = per_prompt.iter().map(|l| &l[0]).collect();
            Tensor::cat(&zs, 0)?
        };
        Ok(out)
    }

    /// The VAE: latents (n, C, h, w) in the sampler's scaled space, any h and w →
    /// `vae.decode(z / scaling_factor).sample` (n, 3, 8h, 8w), f32, unclipped.
    pub fn decode_latents(&self, z: &Tensor) -> Result<Tensor> {
        let vae = self.vae.as_ref().ok_or_else(|| {
            Error::input(
                "no VAE is loaded; load the model with a VAE (vae=\"stabilityai/sdxl-vae\" or a local \
                 diffusers AutoencoderKL folder) to decode latents to images",
            )
        })?;
        let c = self.config.latent_channels();
        if !matches!(z.dims(), &[n, zc, h, w] if n > 0 && zc == c && h > 0 && w > 0) {
            return Err(Error::input(format!(
                "latents must have shape (n, {c}, h, w), got {:?}",
                z.dims()
            )));
        }
        Self::check_finite(z, "latents")?;
        let images = {
            let _t = crate::profile::stage("vae decode", &self.device);
            vae.decode_scaled(&z.to_device(vae.device())?)?
                .to_dtype(DType::F32)?
        };
        crate::profile::report("vae decode");
        Ok(images)
    }
}
