//! Janus-Pro text-to-image token sampling with classifier-free guidance, as the official loop
//! does it: for every image a conditional row (the prompt) and an unconditional row (BOS, pads,
//! `<begin_of_image>`; the pads are attended), one prefill, then one step per image token with
//! the KV cache; per step `logits = u + w·(c − u)`, softmax at the temperature, one draw per
//! image, and the drawn token is fed to both rows through `gen_embed` → `gen_aligner`.

use candle_core::{DType, Device, Tensor, D};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::image_static::StaticImageDecode;
use super::sampler::{image_stream, Sampler, SamplingConfig};
use crate::error::{bail_input, Error, Result};
use crate::models::gen_head::ImageTokenHead;
use crate::models::llama::Llama;

/// The images one prompt asks for: how many (the official `parallel_size`), and the seed of
/// their random streams (image `i` of the prompt draws from stream `i` of that seed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptImages {
    pub count: usize,
    pub seed: u64,
}

/// Check a request's images per prompt against the per-call limit; the total.
pub fn check_image_counts(images: &[PromptImages], max_images: usize) -> Result<usize> {
    if images.is_empty() {
        bail_input!("no prompts given");
    }
    if let Some(p) = images.iter().find(|p| p.count == 0) {
        bail_input!("num_images must be >= 1, got {}", p.count);
    }
    let total = images
        .iter()
        .fold(0usize, |sum, p| sum.saturating_add(p.count));
    if total > max_images {
        if images.len() == 1 {
            bail_input!("num_images {total} exceeds the limit of {max_images} images per call");
        }
        let first = images[0].count;
        if images.iter().all(|p| p.count == first) {
            bail_input!(
                "{} prompts × {first} images = {total} images exceeds the limit of {max_images} per call",
                images.len()
            );
        }
        bail_input!("{total} images in all exceeds the limit of {max_images} per call");
    }
    Ok(total)
}

/// Every image's (seed, index within its prompt), prompt-major.
pub fn image_streams(images: &[PromptImages]) -> Vec<(u64, u64)> {
    images
        .iter()
        .flat_map(|p| (0..p.count as u64).map(move |i| (p.seed, i)))
        .collect()
}

#[derive(Debug, Clone)]
pub struct ImageGenerationParams {
    /// Per prompt: how many images, and their seed.
    pub images: Vec<PromptImages>,
    pub cfg_weight: f64,
    /// Softmax temperature; 0 takes the argmax of the guided logits.
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
}

impl ImageGenerationParams {
    pub fn validate(&self, max_images: usize) -> Result<()> {
        check_image_counts(&self.images, max_images)?;
        if !self.cfg_weight.is_finite() || self.cfg_weight < 0.0 {
            bail_input!(
                "cfg_weight must be a finite number >= 0, got {}",
                self.cfg_weight
            );
        }
        self.sampling().validate()
    }

    fn sampling(&self) -> SamplingConfig {
        SamplingConfig {
            do_sample: true,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: None,
        }
    }
}

/// Called after each image-token step with (step, total steps); an error stops the work.
pub type OnStep<'a> = dyn FnMut(usize, usize) -> Result<()> + 'a;

/// Prompt token rows for CFG: for each prompt, `counts[i]` × [cond, uncond], left-padded to a
/// common length. Returns the rows and the left padding of each.
pub fn cfg_rows(
    prompts: &[Vec<u32>],
    counts: &[usize],
    pad: u32,
) -> Result<(Vec<Vec<u32>>, Vec<usize>)> {
    if prompts.len() != counts.len() {
        return Err(Error::input(format!(
            "{} prompts but {} image counts",
            prompts.len(),
            counts.len()
        )));
    }
    let len = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut rows = Vec::new();
    let mut pads = Vec::new();
    for (p, &num_images) in prompts.iter().zip(counts) {
        if p.len() < 2 {
            return Err(Error::input(
                "a generation prompt needs at least BOS and <begin_of_image>",
            ));
        }
        let mut uncond = p.clone();
        let last = uncond.len() - 1;
        uncond[1..last].iter_mut().for_each(|t| *t = pad);
        let lead = len - p.len();
        for _ in 0..num_images {
            for row in [p, &uncond] {
                let mut r = vec![pad; lead];
                r.extend_from_slice(row);
                rows.push(r);
                pads.push(lead);
            }
        }
    }
    Ok((rows, pads))
}

/// Sample `num_tokens` image tokens for each prompt × `num_images`. `prompts` are full token
/// ids (BOS … `<begin_of_image>`). Returns (prompts·num_images, num_tokens) ids, prompt-major.
#[allow(clippy::too_many_arguments)]
pub fn generate_image_tokens(
    llm: &Llama,
    head: &ImageTokenHead,
    prompts: &[Vec<u32>],
    pad: u32,
    num_tokens: usize,
    params: &ImageGenerationParams,
    device: &Device,
    on_step: &mut OnStep,
) -> Result<Vec<Vec<u32>>> {
    let mode = DecodeMode::from_env()?;
    let counts: Vec<usize> = params.images.iter().map(|p| p.count).collect();
    let (rows, pads) = cfg_rows(prompts, &counts, pad)?;
    let n_rows = rows.len();
    let n_images = n_rows / 2;
    let prompt_len = rows[0].len();
    let ctx = llm.config().max_position_embeddings;
    if prompt_len + num_tokens > ctx {
        return Err(Error::ContextLength(format!(
            "the generation prompt is {prompt_len} tokens long; with {num_tokens} image tokens that exceeds \
             the model's context of {ctx}"
        )));
    }
    let flat: Vec<u32> = rows.concat();
    let ids = Tensor::from_vec(flat, (n_rows, prompt_len), device)?;
    super::limits::check_kv_cache(llm, n_rows, prompt_len + num_tokens, device)?;
    let mut cache = llm.new_cache(prompt_len + num_tokens);
    let mut hidden = {
        let _t = crate::profile::stage("image prefill", device);
        llm.forward_embeds(&llm.embed(&ids)?, &mut cache, Some(&pads))?
    };
    let mut draw = Draw::new(device, params, num_tokens)?;
    // The tokens of `step` from the hidden states of the last position.
    let sample = |hidden: &Tensor, step: usize, draw: &mut Draw| -> Result<Tensor> {
        let _t = crate::profile::stage("gen_head + sample", device);
        let t = hidden.dim(1)?;
        let last = hidden.narrow(1, t - 1, 1)?.squeeze(1)?;
        let guided = guided_logits(&head.logits(&last)?, n_images, params.cfg_weight)?;
        draw.tokens(&guided, step)
    };
    let first = sample(&hidden, 0, &mut draw)?;
    on_step(1, num_tokens)?;
    if num_tokens > 1 {
        match mode {
            DecodeMode::Eager => {
                let mut tokens = first;
                for step in 1..num_tokens {
                    hidden = {
                        let _t = crate::profile::stage("image decode step", device);
                        let both = tokens.unsqueeze(1)?.repeat((1, 2))?.reshape((n_rows, 1))?;
                        llm.forward_embeds(&head.embed(&both)?, &mut cache, Some(&pads))?
                    };
                    tokens = sample(&hidden, step, &mut draw)?;
                    on_step(step + 1, num_tokens)?;
                }
            }
            mode => {
                let decode = StaticImageDecode::new(
                    llm, head, &cache, &pads, prompt_len, &first, params, &draw,
                )?;
                decode.run(mode, &cache, &mut draw, num_tokens, on_step)?;
            }
        }
    }
    draw.finish()
}

/// How image tokens after the first are decoded (`JANUS_RS_DECODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeMode {
    /// candle ops, shapes growing with the cache (the reference path; the default).
    Eager,
    /// Fixed shapes, positions on the device, attention over the cache's whole capacity: the
    /// same launches every step.
    Static,
    /// `Static` with each step captured once as a CUDA graph and replayed (CUDA only; on the
    /// CPU it runs as `Static`). Experimental.
    Graph,
}

impl DecodeMode {
    pub fn from_env() -> Result<Self> {
        match std::env::var("JANUS_RS_DECODE").as_deref() {
            Err(_) | Ok("") | Ok("eager") => Ok(Self::Eager),
            Ok("static") => Ok(Self::Static),
            Ok("graph") => Ok(Self::Graph),
            Ok(other) => Err(Error::input(format!(
                "JANUS_RS_DECODE={other:?} is not a decode mode: use \"eager\", \"static\" or \"graph\""
            ))),
        }
    }
}

/// Draws each step's image tokens from the guided logits and keeps them: on a device by the
/// Gumbel-max trick into one (images, num_tokens) buffer copied to the host once at the end;
/// otherwise with one host sampler per image. Either way each image draws from its own
/// [`image_stream`], so its tokens don't depend on what else is in the batch.
pub(super) struct Draw {
    temperature: f64,
    samplers: Option<Vec<Sampler>>,
    noise: GumbelNoise,
    device_tokens: Option<Tensor>,
    host_tokens: Vec<Vec<u32>>,
    device: Device,
}

impl Draw {
    fn new(device: &Device, params: &ImageGenerationParams, num_tokens: usize) -> Result<Self> {
        let on_device = samples_on_device(device, params);
        let streams: Vec<ChaCha8Rng> = image_streams(&params.images)
            .into_iter()
            .map(|(seed, index)| image_stream(seed, index))
            .collect();
        let n_images = streams.len();
        let (samplers, noise) = if on_device {
            (None, GumbelNoise::per_row(NOISE_CHUNK_STEPS, streams))
        } else {
            let samplers = streams
                .into_iter()
                .map(|rng| Sampler::from_rng(params.sampling(), rng))
                .collect::<Result<Vec<_>>>()?;
            (Some(samplers), GumbelNoise::new(NOISE_CHUNK_STEPS))
        };
        Ok(Self {
            temperature: params.temperature,
            samplers,
            noise,
            device_tokens: if on_device {
                Some(Tensor::zeros((n_images, num_tokens), DType::U32, device)?)
            } else {
                None
            },
            host_tokens: vec![Vec::with_capacity(num_tokens); n_images],
            device: device.clone(),
        })
    }

    pub(super) fn on_device(&self) -> bool {
        self.samplers.is_none()
    }

    pub(super) fn temperature(&self) -> f64 {
        self.temperature
    }

    /// The tokens buffer of the on-device draw, (images, num_tokens) u32.
    pub(super) fn device_buffer(&self) -> Option<&Tensor> {
        self.device_tokens.as_ref()
    }

    /// The Gumbel noise for the next on-device draw, (images, vocab) f32.
    pub(super) fn next_noise(&mut self, shape: (usize, usize)) -> Result<Tensor> {
        self.noise.next(shape, &self.device)
    }

    /// Draw step `step`'s tokens (images,) u32 from `guided` (images, vocab) f32 and keep them.
    pub(super) fn tokens(&mut self, guided: &Tensor, step: usize) -> Result<Tensor> {
        match &mut self.samplers {
            None => {
                let tokens = if self.temperature == 0.0 {
                    guided.argmax(D::Minus1)?
                } else {
                    let gumbel = self.noise.next(guided.dims2()?, &self.device)?;
                    sample_rows_with_noise(guided, self.temperature, &gumbel)?
                };
                if let Some(buffer) = &self.device_tokens {
                    buffer.slice_set(&tokens.unsqueeze(1)?, 1, step)?;
                }
                Ok(tokens)
            }
            Some(samplers) => {
                let rows: Vec<Vec<f32>> = guided.to_vec2()?;
                let tokens: Vec<u32> = rows
                    .iter()
                    .zip(samplers.iter_mut())
                    .map(|(r, sampler)| sampler.sample(r, &[]))
                    .collect();
                for (image, &token) in self.host_tokens.iter_mut().zip(&tokens) {
                    image.push(token);
                }
                Ok(Tensor::from_vec(tokens, rows.len(), &self.device)?)
            }
        }
    }

    /// Every image's tokens, (images, num_tokens).
    fn finish(self) -> Result<Vec<Vec<u32>>> {
        match self.device_tokens {
            // On a GPU the only device-to-host copy of the loop.
            Some(buffer) => Ok(buffer.to_vec2::<u32>()?),
            None => Ok(self.host_tokens),
        }
    }
}

/// Steps of Gumbel noise drawn at once for the on-device sampler: one cuRAND call and four
/// element-wise kernels per chunk instead of per step, at 64 KiB per image and step.
const NOISE_CHUNK_STEPS: usize = 32;

/// Gumbel noise `−ln(−ln U)` for `(rows, vocab)` draws, generated `chunk_steps` steps at a time
/// and handed out one step at a time (views into the chunk, no copies). The uniforms come from
/// the device's generator, or, with [`GumbelNoise::per_row`], from one host stream per row
/// (each row's noise then depends only on its own stream).
struct GumbelNoise {
    chunk_steps: usize,
    chunk: Option<Tensor>,
    next: usize,
    rows: Option<Vec<ChaCha8Rng>>,
}

impl GumbelNoise {
    fn new(chunk_steps: usize) -> Self {
        Self {
            chunk_steps,
            chunk: None,
            next: 0,
            rows: None,
        }
    }

    fn per_row(chunk_steps: usize, rows: Vec<ChaCha8Rng>) -> Self {
        Self {
            rows: Some(rows),
            ..Self::new(chunk_steps)
        }
    }

    /// `chunk_steps` steps of uniforms (steps, rows, vocab) on `device`.
    fn uniforms(&mut self, rows: usize, vocab: usize, device: &Device) -> Result<Tensor> {
        let steps = self.chunk_steps;
        let Some(streams) = self.rows.as_mut() else {
            return Ok(Tensor::rand(0f32, 1f32, (steps, rows, vocab), device)?);
        };
        if streams.len() != rows {
            return Err(Error::input(format!(
                "{rows} rows of noise asked for but {} streams set up",
                streams.len()
            )));
        }
        use rayon::prelude::*;
        // Each row fills its own (steps, vocab) block from its own stream, in step order.
        let mut host = vec![0f32; rows * steps * vocab];
        host.par_chunks_mut(steps * vocab)
            .zip(streams.par_iter_mut())
            .for_each(|(block, rng)| block.iter_mut().for_each(|u| *u = rng.random()));
        let by_row = Tensor::from_vec(host, (rows, steps, vocab), device)?;
        Ok(by_row.transpose(0, 1)?.contiguous()?)
    }

    fn next(&mut self, (rows, vocab): (usize, usize), device: &Device) -> Result<Tensor> {
        let stale = match &self.chunk {
            Some(c) => {
                self.next == self.chunk_steps || c.dims3()? != (self.chunk_steps, rows, vocab)
            }
            None => true,
        };
        if stale {
            let u = self.uniforms(rows, vocab, device)?;
            // U = 0 gives −ln(−ln 0) = −∞: that entry is never chosen, which is harmless.
            self.chunk = Some(u.log()?.neg()?.log()?.neg()?);
            self.next = 0;
        }
        let chunk = self.chunk.as_ref().expect("set above");
        let step = chunk.get(self.next)?;
        self.next += 1;
        Ok(step)
    }
}

/// CFG on (rows, V) logits whose rows come in (conditional, unconditional) pairs:
/// `u + w·(c − u)` per image, as f32 (images, V).
pub(super) fn guided_logits(logits: &Tensor, n_images: usize, w: f64) -> Result<Tensor> {
    let pairs = logits.to_dtype(DType::F32)?.reshape((n_images, 2, ()))?;
    let c = pairs.narrow(1, 0, 1)?.squeeze(1)?;
    let u = pairs.narrow(1, 1, 1)?.squeeze(1)?;
    Ok(((&c - &u)?.affine(w, 0.0)? + &u)?)
}

/// On a GPU the draw stays on the device (one copy of all tokens at the end instead of the
/// logits every step). top-k / top-p are only implemented by the host sampler.
pub fn samples_on_device(device: &Device, params: &ImageGenerationParams) -> bool {
    !device.is_cpu() && params.top_k.is_none() && params.top_p.is_none()
}

/// One token per row of `logits` (rows, vocab), drawn from softmax(logits / temperature) on the
/// logits' device with the Gumbel-max trick: argmax(logits / T − ln(−ln U)), U ~ uniform(0, 1),
/// which is an exact draw from the softmax. Temperature 0 is the argmax. Returns u32 (rows,).
pub fn sample_rows_on_device(logits: &Tensor, temperature: f64) -> Result<Tensor> {
    let logits = logits.to_dtype(DType::F32)?;
    if temperature == 0.0 {
        return Ok(logits.argmax(D::Minus1)?);
    }
    let gumbel = GumbelNoise::new(1).next(logits.dims2()?, logits.device())?;
    sample_rows_with_noise(&logits, temperature, &gumbel)
}

/// The Gumbel-max draw with the noise given: argmax(logits / temperature + gumbel) per row.
pub(super) fn sample_rows_with_noise(
    logits: &Tensor,
    temperature: f64,
    gumbel: &Tensor,
) -> Result<Tensor> {
    Ok((logits.affine(1.0 / temperature, 0.0)? + gumbel)?.argmax(D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_row_noise_depends_only_on_each_rows_stream() {
        let dev = Device::Cpu;
        let streams = |keys: &[(u64, u64)]| -> Vec<ChaCha8Rng> {
            keys.iter().map(|&(s, i)| image_stream(s, i)).collect()
        };
        let mut a = GumbelNoise::per_row(3, streams(&[(1, 0), (2, 0), (1, 1)]));
        let mut b = GumbelNoise::per_row(3, streams(&[(1, 1), (1, 0)]));
        for _ in 0..7 {
            // crosses two chunk boundaries
            let na: Vec<Vec<f32>> = a.next((3, 8), &dev).unwrap().to_vec2().unwrap();
            let nb: Vec<Vec<f32>> = b.next((2, 8), &dev).unwrap().to_vec2().unwrap();
            assert_eq!(na[0], nb[1]);
            assert_eq!(na[2], nb[0]);
            assert_ne!(na[0], na[2]);
        }
    }

    #[test]
    fn image_counts_are_checked_against_the_limit() {
        let p = |count, seed| PromptImages { count, seed };
        assert_eq!(check_image_counts(&[p(2, 0), p(3, 0)], 5).unwrap(), 5);
        let err = |images: &[PromptImages]| check_image_counts(images, 4).unwrap_err().to_string();
        assert!(err(&[p(5, 0)]).contains("num_images 5 exceeds the limit of 4"));
        assert!(err(&[p(3, 0), p(3, 1)]).contains("2 prompts × 3 images = 6 images"));
        assert!(err(&[p(3, 0), p(2, 1)]).contains("5 images in all exceeds"));
        assert!(err(&[p(0, 0)]).contains("num_images must be >= 1"));
        assert!(err(&[]).contains("no prompts"));
        assert_eq!(
            image_streams(&[p(2, 7), p(1, 9)]),
            vec![(7, 0), (7, 1), (9, 0)]
        );
    }

    #[test]
    fn gumbel_max_draws_follow_the_softmax() {
        // probabilities 0.1, 0.2, 0.3, 0.4 at temperature 2 (logits are 2·ln p).
        let p = [0.1f32, 0.2, 0.3, 0.4];
        let row: Vec<f32> = p.iter().map(|x| 2.0 * x.ln()).collect();
        let rows = 20_000;
        let logits = Tensor::from_vec(row.repeat(rows), (rows, 4), &Device::Cpu).unwrap();
        let draws: Vec<u32> = sample_rows_on_device(&logits, 2.0)
            .unwrap()
            .to_vec1()
            .unwrap();
        for (k, &pk) in p.iter().enumerate() {
            let freq = draws.iter().filter(|&&d| d == k as u32).count() as f32 / rows as f32;
            // 5 standard deviations of a binomial proportion with n = 20000.
            let tol = 5.0 * (pk * (1.0 - pk) / rows as f32).sqrt();
            assert!((freq - pk).abs() < tol, "token {k}: {freq} vs {pk}");
        }
        let greedy: Vec<u32> = sample_rows_on_device(&logits.narrow(0, 0, 2).unwrap(), 0.0)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(greedy, vec![3, 3]);
    }
}
