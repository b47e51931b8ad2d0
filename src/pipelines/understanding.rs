//! What Janus-Pro and JanusFlow share around the networks: the processing files of a checkpoint
//! folder (image processor, processor config, tokenizer) and the splicing of image rows into the
//! token embeddings of a prompt.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::generation::text::{
    generate_text, generate_text_batch, new_token_budget, OnToken, TextGenerationParams,
};
use crate::kernels::linear::{FloatStorage, QuantFormat, WeightStorage};
use crate::loading::quant_cache::QuantizedWeights;
use crate::loading::{CheckpointFiles, ImageProcessorConfig, ProcessorConfig, SiglipConfig};
use crate::models::llama::Llama;
use crate::models::siglip::SiglipVisionTower;
use crate::preprocess::chat::expand_image_tokens;
use crate::preprocess::{ChatTemplate, Message, RgbImage};
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
    Error::Weights(crate::error::candle_message(&e))
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

/// What the shared understanding methods read from a model.
pub struct UnderstandingParts<'a> {
    pub tokenizer: &'a JanusTokenizer,
    pub image_processor: &'a ImageProcessor,
    pub template: &'a ChatTemplate,
    /// Image tokens per image in a prompt: (image_size / patch_size)².
    pub num_image_tokens: usize,
    pub vision: &'a SiglipVisionTower,
    pub llm: &'a Llama,
    pub device: &'a Device,
    /// The dtype the networks compute in.
    pub dtype: DType,
    pub hidden_size: usize,
}

/// The understanding path both models share: prompts, preprocessing, SigLIP, the LLM forward
/// and the reply loop. Each model supplies its parts, its aligner and its embedding splice
/// (JanusFlow puts `beg_of_und_embed` at `<begin_of_image>`).
pub trait Understanding {
    fn parts(&self) -> UnderstandingParts<'_>;
    /// The understanding aligner on SigLIP features: (…, width) → (…, hidden).
    fn align_image_features(&self, features: &Tensor) -> Result<Tensor>;
    /// Input embeddings (1, T, hidden) of `ids` with the image positions filled from the rows
    /// of `image_embeds` (n, tokens, hidden), in order.
    fn inputs_embeds(&self, ids: &[u32], image_embeds: Option<&Tensor>) -> Result<Tensor>;

    /// Token ids of a rendered prompt (BOS first), each `<image_placeholder>` expanded to
    /// `<begin_of_image>` + N placeholders + `<end_of_image>`, and the number of images.
    fn prompt_ids(&self, prompt: &str) -> Result<(Vec<u32>, usize)> {
        let p = self.parts();
        let ids = p.tokenizer.encode_with_bos(prompt)?;
        let s = p.tokenizer.special;
        Ok(expand_image_tokens(
            &ids,
            s.image,
            s.begin_of_image,
            s.end_of_image,
            p.num_image_tokens,
        ))
    }

    /// The SFT prompt for `messages`, ending with an empty assistant turn.
    fn render_prompt(&self, system_prompt: &str, messages: &[Message]) -> String {
        self.parts()
            .template
            .render_for_reply(system_prompt, messages)
    }

    /// Preprocessed pixel values (n, 3, S, S) in the model dtype, on the model device.
    fn pixel_values(&self, images: &[RgbImage]) -> Result<Tensor> {
        let p = self.parts();
        let s = p.image_processor.image_size;
        let mut data = Vec::with_capacity(images.len() * 3 * s * s);
        for img in images {
            data.extend(p.image_processor.preprocess(img)?);
        }
        Ok(Tensor::from_vec(data, (images.len(), 3, s, s), p.device)?.to_dtype(p.dtype)?)
    }

    /// SigLIP output (n, tokens, width): all blocks and the final LayerNorm.
    fn vision_features(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let p = self.parts();
        let s = p.image_processor.image_size;
        match pixel_values.dims() {
            [_, 3, h, w] if *h == s && *w == s => {}
            other => {
                return Err(Error::input(format!(
                    "pixel_values must have shape (n, 3, {s}, {s}), got {other:?}"
                )))
            }
        }
        let _t = crate::profile::stage("siglip", p.device);
        Ok(p.vision.forward(&pixel_values.to_dtype(p.dtype)?)?)
    }

    /// Image embeddings (n, tokens, hidden) for the LLM: SigLIP then the aligner.
    fn image_embeddings(&self, pixel_values: &Tensor) -> Result<Tensor> {
        self.align_image_features(&self.vision_features(pixel_values)?)
    }

    /// The LLM on input embeddings (b, T, hidden) from position 0, causal: final-norm hidden
    /// states and `lm_head` logits, both (b, T, ·).
    fn forward(&self, inputs_embeds: &Tensor) -> Result<(Tensor, Tensor)> {
        let p = self.parts();
        let (_, t, h) = inputs_embeds.dims3()?;
        if h != p.hidden_size {
            return Err(Error::input(format!(
                "inputs_embeds width {h} differs from the hidden size {}",
                p.hidden_size
            )));
        }
        new_token_budget(p.llm, t.saturating_sub(1), 0)?;
        let mut cache = p.llm.new_cache(t);
        let hidden = p
            .llm
            .forward_embeds(&inputs_embeds.to_dtype(p.dtype)?, &mut cache, None)?;
        let logits = p.llm.logits(&hidden)?;
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
        let llm = self.parts().llm;
        new_token_budget(llm, ids.len(), params.max_new_tokens)?;
        let image_embeds = if images.is_empty() {
            None
        } else {
            Some(self.image_embeddings(&self.pixel_values(images)?)?)
        };
        let embeds = self.inputs_embeds(&ids, image_embeds.as_ref())?;
        let reply = generate_text(llm, &embeds, params, on_token);
        crate::profile::report("understand");
        reply
    }

    /// Answer several rendered prompts, each about its own images, as one batch: the images of
    /// all prompts go through SigLIP together, the prompts through the LLM as one left-padded
    /// batch ([`generate_text_batch`]); each reply is what [`Self::generate_reply_ids`] gives.
    /// `on_token(row, id)` is called after each token of an unfinished row.
    fn generate_replies_ids(
        &self,
        requests: &[(String, Vec<RgbImage>)],
        params: &[TextGenerationParams],
        on_token: &mut dyn FnMut(usize, u32) -> Result<()>,
    ) -> Result<Vec<Vec<u32>>> {
        let llm = self.parts().llm;
        let mut prompts = Vec::with_capacity(requests.len());
        for (i, ((prompt, images), p)) in requests.iter().zip(params).enumerate() {
            let (ids, n_placeholders) = self.prompt_ids(prompt)?;
            if n_placeholders != images.len() {
                return Err(Error::input(format!(
                    "request {i}: the conversation has {n_placeholders} <image_placeholder> tags but {} images were given",
                    images.len()
                )));
            }
            new_token_budget(llm, ids.len(), p.max_new_tokens)
                .map_err(|e| Error::ContextLength(format!("request {i}: {e}")))?;
            prompts.push(ids);
        }
        let all_images: Vec<RgbImage> = requests.iter().flat_map(|(_, im)| im.clone()).collect();
        let embeds = if all_images.is_empty() {
            None
        } else {
            Some(self.image_embeddings(&self.pixel_values(&all_images)?)?)
        };
        let mut first = 0;
        let mut rows = Vec::with_capacity(requests.len());
        for (ids, (_, images)) in prompts.iter().zip(requests) {
            let mine = match (&embeds, images.len()) {
                (Some(e), n) if n > 0 => Some(e.narrow(0, first, n)?),
                _ => None,
            };
            first += images.len();
            rows.push(self.inputs_embeds(ids, mine.as_ref())?);
        }
        let replies = generate_text_batch(llm, &rows, params, on_token);
        crate::profile::report("understand (batch)");
        replies
    }
}

/// The quantized-weights cache for one load: what was found, and where to write what is made.
pub struct QuantCache {
    pub path: Option<PathBuf>,
    pub weights: Option<QuantizedWeights>,
    /// "off", "hit", "miss" (then "written" after loading), or why the cache could not be used.
    pub status: String,
}

impl QuantCache {
    /// Look up the cache file of `weight_files` quantized to `quantize` (nothing when not
    /// quantizing or when the cache is off). A file that can't be read is ignored (and
    /// rewritten after quantizing).
    pub fn open(weight_files: &[PathBuf], quantize: Option<QuantFormat>, device: &Device) -> Self {
        let off = |status: &str| Self {
            path: None,
            weights: None,
            status: status.into(),
        };
        let Some(format) = quantize else {
            return off("off");
        };
        let Some(dir) = crate::loading::quant_cache::cache_dir() else {
            return off("off");
        };
        let path = match crate::loading::quant_cache::cache_file(&dir, weight_files, format.name())
        {
            Ok(p) => p,
            Err(e) => return off(&format!("unusable: {e}")),
        };
        if !path.exists() {
            return Self {
                path: Some(path),
                weights: None,
                status: "miss".into(),
            };
        }
        match QuantizedWeights::read(&path, format.name(), device) {
            Ok(w) => Self {
                path: Some(path),
                weights: Some(w),
                status: "hit".into(),
            },
            Err(e) => Self {
                path: Some(path),
                weights: None,
                status: format!("unreadable: {e}"),
            },
        }
    }

    /// After a load that quantized: write what `llm` holds, unless it came from the cache.
    pub fn fill(&mut self, llm: &Llama, quantize: Option<QuantFormat>) {
        let (Some(path), Some(format)) = (&self.path, quantize) else {
            return;
        };
        if self.weights.is_some() {
            return;
        }
        let tensors = llm.quantized_weights();
        if tensors.is_empty() {
            self.status = "nothing quantized".into();
            return;
        }
        self.status = match QuantizedWeights::write(path, format.name(), &tensors) {
            Ok(()) if self.status.starts_with("unreadable") => {
                format!("rewritten; the old file was {}", self.status)
            }
            Ok(()) => "written".into(),
            Err(e) => format!("not written: {e}"),
        };
        // The blocks live in the model now; the cache file is only for the next load.
        self.weights = None;
    }
}

/// How a load keeps its weights: the dtype asked, the dtype activations run in, how weight
/// matrices are stored, and what the quantized-weights cache did. One per loaded model.
///
/// On CPU, bfloat16 means bf16 *storage*: the weight matrices (LLM, SigLIP, projectors, image
/// head) stay bf16 — exact for the official bf16 checkpoints, half the bytes of f32 — while
/// activations, norms and accumulation stay f32 (candle has no fast bf16 CPU matmul, and f32
/// activations keep the f32 path's parity). Elsewhere the dtype is used as asked.
pub struct WeightPlan {
    /// As asked; by default bf16 on GPUs, and on CPU bf16 (storage) for checkpoints stored in
    /// bf16 — exact, and measured at least as fast as f32 at every stage — else f32.
    pub dtype: DType,
    /// Of the activations.
    pub compute_dtype: DType,
    pub quantize: Option<QuantFormat>,
    /// For every float weight matrix (SigLIP, projectors, image head, token embeddings).
    pub storage: WeightStorage,
    /// For the LLM's projections and `lm_head`: quantized if asked (with `storage` for the
    /// matrices a format can't take), else `storage`.
    pub llm_storage: WeightStorage,
    /// What the quantized-weights cache did ("off", "hit", "written", ...) and its file.
    pub cache_status: String,
    pub cache_path: Option<PathBuf>,
}

impl WeightPlan {
    /// `stored`: the dtype the checkpoint holds most of its parameters in, if known.
    pub fn new(
        asked: Option<DType>,
        quantize: Option<QuantFormat>,
        device: &Device,
        stored: Option<DType>,
    ) -> Self {
        let dtype = asked.unwrap_or(if !device.is_cpu() || stored == Some(DType::BF16) {
            DType::BF16
        } else {
            DType::F32
        });
        let (compute_dtype, float) = if device.is_cpu() && dtype == DType::BF16 {
            (DType::F32, FloatStorage::Bf16)
        } else {
            (dtype, FloatStorage::Float)
        };
        let llm_storage = match quantize {
            Some(format) => WeightStorage::Quantized {
                format,
                otherwise: float,
            },
            None => float.into(),
        };
        Self {
            dtype,
            compute_dtype,
            quantize,
            storage: float.into(),
            llm_storage,
            cache_status: "off".into(),
            cache_path: None,
        }
    }

    /// Record what the cache did, once the model is loaded.
    pub fn record_cache(&mut self, cache: QuantCache) {
        self.cache_status = cache.status;
        self.cache_path = cache.path;
    }
}
