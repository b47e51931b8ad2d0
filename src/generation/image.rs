//! Janus-Pro text-to-image token sampling with classifier-free guidance, as the official loop
//! does it: for every image a conditional row (the prompt) and an unconditional row (BOS, pads,
//! `<begin_of_image>`; the pads are attended), one prefill, then one step per image token with
//! the KV cache; per step `logits = u + w·(c − u)`, softmax at the temperature, one draw per
//! image, and the drawn token is fed to both rows through `gen_embed` → `gen_aligner`.

use candle_core::{DType, Device, Tensor, D};

use super::sampler::{Sampler, SamplingConfig};
use crate::error::{bail_input, Error, Result};
use crate::models::gen_head::ImageTokenHead;
use crate::models::llama::Llama;

#[derive(Debug, Clone)]
pub struct ImageGenerationParams {
    /// Images per prompt (the official `parallel_size`).
    pub num_images: usize,
    pub cfg_weight: f64,
    /// Softmax temperature; 0 takes the argmax of the guided logits.
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub seed: u64,
}

impl ImageGenerationParams {
    pub fn validate(&self, max_images: usize) -> Result<()> {
        if self.num_images == 0 {
            bail_input!("num_images must be >= 1, got 0");
        }
        if self.num_images > max_images {
            bail_input!(
                "num_images {} exceeds the limit of {max_images} images per call",
                self.num_images
            );
        }
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

/// Prompt token rows for CFG: for each prompt, `num_images` × [cond, uncond], left-padded to a
/// common length. Returns the rows and the left padding of each.
pub fn cfg_rows(
    prompts: &[Vec<u32>],
    num_images: usize,
    pad: u32,
) -> Result<(Vec<Vec<u32>>, Vec<usize>)> {
    let len = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut rows = Vec::new();
    let mut pads = Vec::new();
    for p in prompts {
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
    let (rows, pads) = cfg_rows(prompts, params.num_images, pad)?;
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
    let on_device = samples_on_device(device, params);
    let mut sampler = Sampler::new(params.sampling(), params.seed)?;
    if on_device {
        device.set_seed(params.seed)?;
    }
    let mut steps = Vec::with_capacity(num_tokens); // (images,) u32 per step
    for step in 0..num_tokens {
        let tokens = {
            let _t = crate::profile::stage("gen_head + sample", device);
            let t = hidden.dim(1)?;
            let last = hidden.narrow(1, t - 1, 1)?.squeeze(1)?;
            let guided = guided_logits(&head.logits(&last)?, n_images, params.cfg_weight)?;
            if on_device {
                sample_rows_on_device(&guided, params.temperature)?
            } else {
                let rows: Vec<Vec<f32>> = guided.to_vec2()?;
                let tokens: Vec<u32> = rows.iter().map(|r| sampler.sample(r, &[])).collect();
                Tensor::from_vec(tokens, n_images, device)?
            }
        };
        steps.push(tokens.clone());
        on_step(step + 1, num_tokens)?;
        if step + 1 == num_tokens {
            break; // the official loop embeds the last token too, but never uses it
        }
        let _t = crate::profile::stage("image decode step", device);
        let both = tokens.unsqueeze(1)?.repeat((1, 2))?.reshape((n_rows, 1))?;
        let x = head.embed(&both)?;
        hidden = llm.forward_embeds(&x, &mut cache, Some(&pads))?;
    }
    // On a GPU the only device-to-host copy of the loop.
    Ok(Tensor::stack(&steps, 1)?.to_vec2::<u32>()?)
}

/// CFG on (rows, V) logits whose rows come in (conditional, unconditional) pairs:
/// `u + w·(c − u)` per image, as f32 (images, V).
fn guided_logits(logits: &Tensor, n_images: usize, w: f64) -> Result<Tensor> {
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
    let u = Tensor::rand(0f32, 1f32, logits.shape(), logits.device())?;
    // U = 0 gives −ln(−ln 0) = −∞: that entry is never chosen, which is harmless.
    let gumbel = u.log()?.neg()?.log()?.neg()?;
    Ok((logits.affine(1.0 / temperature, 0.0)? + gumbel)?.argmax(D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

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
