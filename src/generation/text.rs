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
