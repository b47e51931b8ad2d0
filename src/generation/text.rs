//! Autoregressive text decoding over the shared LLM, KV cache and sampler.

use candle_core::Tensor;

use super::sampler::{Sampler, SamplingConfig};
use crate::error::{Error, Result};
use crate::models::llama::Llama;

#[derive(Debug, Clone)]
pub struct TextGenerationParams {
    pub max_new_tokens: usize,
    pub sampling: SamplingConfig,
    pub seed: u64,
    /// Generation stops after emitting any of these (the EOS id for Janus).
    pub stop_tokens: Vec<u32>,
}

/// Called with each new token as it is produced; an error stops the generation.
pub type OnToken<'a> = dyn FnMut(u32) -> Result<()> + 'a;

/// The number of new tokens a request may produce: `max_new_tokens`, capped so that the prompt
/// plus the new tokens fit in the context window.
pub fn new_token_budget(llm: &Llama, prompt_len: usize, max_new_tokens: usize) -> Result<usize> {
    let ctx = llm.config().max_position_embeddings;
    if prompt_len >= ctx {
        return Err(Error::ContextLength(format!(
            "the prompt is {prompt_len} tokens long but the model's context holds {ctx} \
             (max_position_embeddings), leaving no room for an answer; shorten the prompt or use fewer images"
        )));
    }
    Ok(max_new_tokens.min(ctx - prompt_len))
}

/// Decode from `inputs_embeds` (1, T, hidden); returns the new token ids (the stop token, if
/// reached, included).
pub fn generate_text(
    llm: &Llama,
    inputs_embeds: &Tensor,
    params: &TextGenerationParams,
    on_token: &mut OnToken,
) -> Result<Vec<u32>> {
    let (b, prompt_len, _) = inputs_embeds.dims3()?;
    if b != 1 {
        return Err(Error::input(format!(
            "text generation takes one sequence, got a batch of {b}"
        )));
    }
    let budget = new_token_budget(llm, prompt_len, params.max_new_tokens)?;
    let mut sampler = Sampler::new(params.sampling.clone(), params.seed)?;
    let mut generated = Vec::with_capacity(budget);
    if budget == 0 {
        return Ok(generated);
    }
    let device = inputs_embeds.device();
    super::limits::check_kv_cache(llm, 1, prompt_len + budget, device)?;
    let mut cache = llm.new_cache(prompt_len + budget);
    let on_device_argmax = !device.is_cpu() && params.sampling.is_plain_argmax();
    let mut hidden = {
        let _t = crate::profile::stage("text prefill", device);
        llm.forward_embeds(inputs_embeds, &mut cache, None)?
    };
    loop {
        let token = {
            let _t = crate::profile::stage("lm_head + sample", device);
            let logits = llm.last_logits(&hidden)?.squeeze(0)?;
            if on_device_argmax {
                // One u32 crosses to the host instead of the vocabulary's logits.
                logits.argmax(0)?.to_scalar::<u32>()?
            } else {
                sampler.sample(&logits.to_vec1::<f32>()?, &generated)
            }
        };
        generated.push(token);
        on_token(token)?;
        if params.stop_tokens.contains(&token) || generated.len() == budget {
            return Ok(generated);
        }
        let _t = crate::profile::stage("text decode step", device);
        let ids = Tensor::new(&[[token]], device)?;
        hidden = llm.forward_embeds(&llm.embed(&ids)?, &mut cache, None)?;
    }
}

/// Decode several prompts as one left-padded, masked batch: `rows[i]` is (1, T_i, hidden)
/// embeddings, `params[i]` its parameters (own seed, budget and stop tokens). Each row stops at
/// its own stop token or budget (a finished row keeps riding along, its outputs ignored) and
/// gets what [`generate_text`] alone would give: the same positions (RoPE counts from each
/// row's first real token), its padding hidden by the mask, its own sampler.
/// `on_token(row, token)` is called for every new token of an unfinished row.
pub fn generate_text_batch(
    llm: &Llama,
    rows: &[Tensor],
    params: &[TextGenerationParams],
    on_token: &mut dyn FnMut(usize, u32) -> Result<()>,
) -> Result<Vec<Vec<u32>>> {
    if rows.len() != params.len() || rows.is_empty() {
        return Err(Error::input(format!(
            "{} prompts but {} parameter sets",
            rows.len(),
            params.len()
        )));
    }
    let lens = rows
        .iter()
        .map(|r| Ok(r.dims3()?.1))
        .collect::<Result<Vec<_>>>()?;
    let budgets = lens
        .iter()
        .zip(params)
        .map(|(&len, p)| new_token_budget(llm, len, p.max_new_tokens))
        .collect::<Result<Vec<_>>>()?;
    let longest = *lens.iter().max().expect("not empty");
    let most = *budgets.iter().max().expect("not empty");
    let ctx = llm.config().max_position_embeddings;
    if rows.len() == 1 || longest + most > ctx {
        // One row, or rows whose padded positions would not fit the context together.
        return rows
            .iter()
            .zip(params)
            .enumerate()
            .map(|(i, (r, p))| generate_text(llm, r, p, &mut |t| on_token(i, t)))
            .collect();
    }
    let device = rows[0].device();
    let hidden_size = rows[0].dim(2)?;
    let pads: Vec<usize> = lens.iter().map(|&l| longest - l).collect();
    let padded = rows
        .iter()
        .zip(&pads)
        .map(|(r, &p)| {
            if p == 0 {
                return Ok(r.clone());
            }
            let zeros = Tensor::zeros((1, p, hidden_size), r.dtype(), device)?;
            Ok(Tensor::cat(&[&zeros, r], 1)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let x = Tensor::cat(&padded, 0)?;
    let mut samplers = params
        .iter()
        .map(|p| Sampler::new(p.sampling.clone(), p.seed))
        .collect::<Result<Vec<_>>>()?;
    super::limits::check_kv_cache(llm, rows.len(), longest + most, device)?;
    let mut cache = llm.new_cache(longest + most);
    let mut hidden = {
        let _t = crate::profile::stage("text prefill", device);
        llm.forward_embeds(&x, &mut cache, Some(&pads))?
    };
    let mut generated: Vec<Vec<u32>> = budgets.iter().map(|&b| Vec::with_capacity(b)).collect();
    let mut done: Vec<bool> = budgets.iter().map(|&b| b == 0).collect();
    loop {
        let logits: Vec<Vec<f32>> = {
            let _t = crate::profile::stage("lm_head + sample", device);
            llm.last_logits(&hidden)?.to_vec2()?
        };
        let mut next = Vec::with_capacity(rows.len());
        for (i, row) in logits.iter().enumerate() {
            if done[i] {
                next.push(params[i].stop_tokens.first().copied().unwrap_or(0));
                continue;
            }
            let token = samplers[i].sample(row, &generated[i]);
            generated[i].push(token);
            on_token(i, token)?;
            done[i] = params[i].stop_tokens.contains(&token) || generated[i].len() == budgets[i];
            next.push(token);
        }
        if done.iter().all(|&d| d) {
            return Ok(generated);
        }
        let _t = crate::profile::stage("text decode step", device);
        let ids = Tensor::from_vec(next, (rows.len(), 1), device)?;
        hidden = llm.forward_embeds(&llm.embed(&ids)?, &mut cache, Some(&pads))?;
    }
}
