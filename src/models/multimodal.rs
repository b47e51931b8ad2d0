//! What Janus-Pro and JanusFlow share around the networks: the processing files of a checkpoint
//! folder (image processor, processor config, tokenizer) and the splicing of image rows into the
//! token embeddings of a prompt.

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::loading::{CheckpointFiles, ImageProcessorConfig, ProcessorConfig, SiglipConfig};
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
