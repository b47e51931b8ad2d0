//! What Janus-Pro and JanusFlow share around the networks: the processing files of a checkpoint
//! folder (image processor, processor config, tokenizer) and the splicing of image rows into the
//! token embeddings of a prompt.

use candle_core::{DType, Tensor};

use super::llama::Llama;
use crate::error::{Error, Result};
use crate::generation::text::{generate_text, new_token_budget, OnToken, TextGenerationParams};
use crate::loading::{CheckpointFiles, ImageProcessorConfig, ProcessorConfig, SiglipConfig};
use crate::preprocess::RgbImage;
use crate::preprocess::{ImageProcessor, JanusTokenizer};

/// The preprocessing state of one checkpoint.
pub struct Processing {
    pub image_processor: ImageProcessor,
    pub processor: ProcessorConfig,
    pub tokenizer: JanusTokenizer,
    /// Image tokens per image in a prompt: (image_size / patch_size)².
    pub num_image_tokens: usize,
}

impl Processing {
    /// Read `preprocessor_config.json` (or the settings nested in `processor_config.json`, or
    /// defaults sized for `vision`), `processor_config.json` and `tokenizer.json`, and check them
    /// against the vision tower and the LLM vocabulary of `vocab` ids. With `add_missing_tags`
    /// the processor's tags (image, generation, begin/end of image, in that order) are added to
    /// the tokenizer when it lacks them, as JanusFlow's `VLChatProcessor` does.
    pub fn load(
        files: &CheckpointFiles,
        vision: &SiglipConfig,
        vocab: usize,
        add_missing_tags: bool,
    ) -> Result<Self> {
        let image_cfg = if files.preprocessor_config.is_file() {
            ImageProcessorConfig::from_file(&files.preprocessor_config)?
        } else if let Some(cfg) = ImageProcessorConfig::nested_in(&files.processor_config)? {
            cfg
        } else {
            let mut cfg: ImageProcessorConfig = serde_json::from_str("{}")
                .map_err(|e| Error::config(&files.preprocessor_config, e.to_string()))?;
            cfg.image_size = vision.image_size;
            cfg
        };
        if image_cfg.image_size != vision.image_size {
            return Err(Error::config(
                &files.preprocessor_config,
                format!(
                    "image_size {} differs from the vision tower's image_size {} in config.json",
                    image_cfg.image_size, vision.image_size
                ),
            ));
        }
        let processor = if files.processor_config.is_file() {
            ProcessorConfig::from_file(&files.processor_config)?
        } else {
            ProcessorConfig::default()
        };
        let num_image_tokens = vision.num_patches();
        if let Some(n) = processor.num_image_tokens {
            if n != num_image_tokens {
                return Err(Error::config(
                    &files.processor_config,
                    format!("num_image_tokens {n} differs from (image_size / patch_size)² = {num_image_tokens}"),
                ));
            }
        }
        let tags: Vec<&str> = if add_missing_tags {
            vec![
                &processor.image_tag,
                &processor.image_gen_tag,
                &processor.image_start_tag,
                &processor.image_end_tag,
            ]
        } else {
            Vec::new()
        };
        let tokenizer = JanusTokenizer::from_file_adding(&files.tokenizer, &processor, &tags)?;
        for (name, id) in tokenizer.special.named() {
            check_in_vocab(name, id, vocab)?;
        }
        Ok(Self {
            image_processor: ImageProcessor::new(&image_cfg),
            processor,
            tokenizer,
            num_image_tokens,
        })
    }
}

/// A weight-loading failure as [`Error::Weights`], with the innermost candle message (the
/// missing tensor or the shape mismatch) and without candle's context wrapping.
pub fn weights_err(e: candle_core::Error) -> Error {
    fn root(e: &candle_core::Error) -> String {
        match e {
            candle_core::Error::WithPath { inner, .. }
            | candle_core::Error::Context { inner, .. } => root(inner),
            candle_core::Error::WithBacktrace { inner, .. } => root(inner),
            other => other.to_string(),
        }
    }
    Error::Weights(root(&e))
}

/// A special token's id must index the LLM's embedding table.
pub fn check_in_vocab(name: &str, id: u32, vocab: usize) -> Result<()> {
    if id as usize >= vocab {
        return Err(Error::Tokenizer(format!(
            "{name} token id {id} is outside the LLM vocabulary of {vocab} (language_config.vocab_size)"
        )));
    }
    Ok(())
}

/// Check that every id of a prompt indexes the LLM's embedding table.
pub fn check_prompt_ids(ids: &[u32], vocab: usize) -> Result<()> {
    if ids.is_empty() {
        return Err(Error::input("the prompt has no tokens"));
    }
    if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
        return Err(Error::input(format!(
            "token id {bad} is outside the vocabulary of {vocab}"
        )));
    }
    Ok(())
}

/// `text` (T, hidden), the token embeddings of `ids`, with the positions where `is_slot(id)`
/// replaced, in order, by the rows of `rows` (n, hidden): the official
/// `inputs_embeds[images_seq_mask] = images_embeds`. The caller checks that there are as many
/// slots as rows.
pub fn splice_rows(
    text: &Tensor,
    ids: &[u32],
    is_slot: impl Fn(u32) -> bool,
    rows: &Tensor,
) -> Result<Tensor> {
    // Gather from [text rows; image rows]: position i takes text row i, or the next image row
    // when it is a slot.
    let table = Tensor::cat(&[text, &rows.to_dtype(text.dtype())?], 0)?;
    let mut next = ids.len() as u32;
    let index: Vec<u32> = ids
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            if is_slot(t) {
                next += 1;
                next - 1
            } else {
                i as u32
            }
        })
        .collect();
    Ok(table.index_select(&Tensor::new(index.as_slice(), text.device())?, 0)?)
}

/// The understanding path both models share: each supplies its prompt ids, image embeddings
/// and embedding splice; the LLM forward and the reply loop are the same.
pub trait Understanding {
    fn llm(&self) -> &Llama;
    /// The dtype the LLM computes in.
    fn compute_dtype(&self) -> DType;
    fn hidden_size(&self) -> usize;
    fn prompt_ids(&self, prompt: &str) -> Result<(Vec<u32>, usize)>;
    fn pixel_values(&self, images: &[RgbImage]) -> Result<Tensor>;
    fn image_embeddings(&self, pixel_values: &Tensor) -> Result<Tensor>;
    fn inputs_embeds(&self, ids: &[u32], image_embeds: Option<&Tensor>) -> Result<Tensor>;

    /// The LLM on input embeddings (b, T, hidden) from position 0, causal: final-norm hidden
    /// states and `lm_head` logits, both (b, T, ·).
    fn forward(&self, inputs_embeds: &Tensor) -> Result<(Tensor, Tensor)> {
        let (_, t, h) = inputs_embeds.dims3()?;
        if h != self.hidden_size() {
            return Err(Error::input(format!(
                "inputs_embeds width {h} differs from the hidden size {}",
                self.hidden_size()
            )));
        }
        let llm = self.llm();
        new_token_budget(llm, t.saturating_sub(1), 0)?;
        let mut cache = llm.new_cache(t);
        let x = inputs_embeds.to_dtype(self.compute_dtype())?;
        let hidden = llm.forward_embeds(&x, &mut cache, None)?;
        let logits = llm.logits(&hidden)?;
        Ok((hidden, logits))
    }

    /// Answer a rendered prompt about `images` (one per `<image_placeholder>`, in order).
    /// Returns the new token ids (EOS included if reached).
    fn generate_reply_ids(
        &self,
        prompt: &str,
        images: &[RgbImage],
        params: &TextGenerationParams,
        on_token: &mut OnToken,
    ) -> Result<Vec<u32>> {
        let (ids, n_placeholders) = self.prompt_ids(prompt)?;
        if n_placeholders != images.len() {
            return Err(Error::input(format!(
                "the conversation has {n_placeholders} <image_placeholder> tags but {} images were given",
                images.len()
            )));
        }
        new_token_budget(self.llm(), ids.len(), params.max_new_tokens)?;
        let image_embeds = if images.is_empty() {
            None
        } else {
            Some(self.image_embeddings(&self.pixel_values(images)?)?)
        };
        let embeds = self.inputs_embeds(&ids, image_embeds.as_ref())?;
        let reply = generate_text(self.llm(), &embeds, params, on_token);
        crate::profile::report("understand");
        reply
    }
}
