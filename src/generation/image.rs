//! Janus-Pro text-to-image token sampling with classifier-free guidance, as the official loop
//! does it: for every image a conditional row (the prompt) and an unconditional row (BOS, pads,
//! `<begin_of_image>`; the pads are attended), one prefill, then one step per image token with
//! the KV cache; per step `logits = u + w·(c − u)`, softmax at the temperature, one draw per
//! image, and the drawn token is fed to both rows through `gen_embed` → `gen_aligner`.

use candle_core::{DType, Device, Tensor};

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
    let mut cache = llm.new_cache(prompt_len + num_tokens);
    let mut hidden = llm.forward_embeds(&llm.embed(&ids)?, &mut cache, Some(&pads))?;
    let mut sampler = Sampler::new(params.sampling(), params.seed)?;
    let mut out = vec![Vec::with_capacity(num_tokens); n_images];
    let w = params.cfg_weight as f32;
    for step in 0..num_tokens {
        let t = hidden.dim(1)?;
        let last = hidden.narrow(1, t - 1, 1)?.squeeze(1)?;
        let logits: Vec<Vec<f32>> = head.logits(&last)?.to_dtype(DType::F32)?.to_vec2()?;
        let mut tokens = Vec::with_capacity(n_images);
        for (img, pair) in logits.chunks_exact(2).enumerate() {
            let (c, u) = (&pair[0], &pair[1]);
            let guided: Vec<f32> = c.iter().zip(u).map(|(&c, &u)| u + w * (c - u)).collect();
            let token = sampler.sample(&guided, &[]);
            out[img].push(token);
            tokens.push(token);
        }
        on_step(step + 1, num_tokens)?;
        if step + 1 == num_tokens {
            break; // the official loop embeds the last token too, but never uses it
        }
        let both: Vec<u32> = tokens.iter().flat_map(|&t| [t, t]).collect();
        let x = head.embed(&Tensor::from_vec(both, (n_rows, 1), device)?)?;
        hidden = llm.forward_embeds(&x, &mut cache, Some(&pads))?;
    }
    Ok(out)
}
