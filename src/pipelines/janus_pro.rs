//! Janus / Janus-Pro (`MultiModalityCausalLM`): SigLIP + aligner for understanding, the LLM,
//! and the chat/preprocessing state that belongs to one checkpoint.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;

use super::understanding::{
    check_prompt_ids, splice_rows, weights_err, Processing, QuantCache, Understanding,
    UnderstandingParts, WeightPlan,
};
use crate::error::{Error, Result};
use crate::generation::image::{generate_image_tokens, ImageGenerationParams, OnStep};
use crate::kernels::linear::{QuantFormat, WeightStorage};
use crate::loading::quant_cache::QuantizedWeights;
use crate::loading::{Checkpoint, CheckpointFiles, JanusConfig, WeightLayout};
use crate::models::gen_head::ImageTokenHead;
use crate::models::llama::Llama;
use crate::models::projector::MlpProjector;
use crate::models::siglip::SiglipVisionTower;
use crate::models::vq::VqModel;
use crate::preprocess::{ChatTemplate, ImageProcessor, JanusTokenizer, Message, RgbImage};

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    /// `None`: f32 on CPU, bf16 on CUDA.
    pub dtype: Option<DType>,
    /// Quantize the LLM's projections and `lm_head` (`None`: keep them as `dtype` says).
    pub quantize: Option<QuantFormat>,
    /// `None`: `<|User|>`/`<|Assistant|>` when the tokenizer has those tokens (Janus-Pro),
    /// otherwise plain `User`/`Assistant` (Janus-1.3B).
    pub template: Option<ChatTemplate>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: None,
            quantize: None,
            template: None,
        }
    }
}

pub struct JanusPro {
    pub config: JanusConfig,
    pub tokenizer: JanusTokenizer,
    pub image_processor: ImageProcessor,
    pub template: ChatTemplate,
    /// Image tokens per image in a prompt: (image_size / patch_size)².
    pub num_image_tokens: usize,
    vision: SiglipVisionTower,
    aligner: MlpProjector,
    llm: Llama,
    image_head: ImageTokenHead,
    vq: VqModel,
    device: Device,
    weights: WeightPlan,
    dir: PathBuf,
    weight_files: Vec<PathBuf>,
    num_parameters: usize,
}

impl JanusPro {
    /// Load a checkpoint folder in the official deepseek-ai layout.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        let files = CheckpointFiles::in_dir(dir)?;
        let config = JanusConfig::from_file(&files.config)?;
        let Processing {
            image_processor,
            tokenizer,
            num_image_tokens,
            ..
        } = Processing::load(&files, &config.vision, config.language.vocab_size, false)?;
        let template = match &opts.template {
            Some(t) => t.clone(),
            None if tokenizer.token_to_id("<|User|>").is_some() => ChatTemplate::janus_pro(),
            None => ChatTemplate::plain(),
        };

        let device = opts.device.clone();
        let checkpoint = Checkpoint::open_dir(dir)?.with_layout(config.layout);
        let mut weights = WeightPlan::new(
            opts.dtype,
            opts.quantize,
            &device,
            checkpoint.stored_float_dtype(),
        );
        let mut config = config;
        if config.layout == WeightLayout::Transformers {
            // save_pretrained drops lm_head.weight when it is tied to the token embeddings.
            config.language.tie_word_embeddings = checkpoint.shape("lm_head.weight").is_none();
        }
        let weight_files = checkpoint.files().to_vec();
        let mut quant_cache = QuantCache::open(&weight_files, opts.quantize, &device);
        let num_parameters = checkpoint.num_parameters();
        let vb = checkpoint.var_builder(weights.compute_dtype, &device);
        let (vision, aligner, llm) = Self::build_modules(
            &config,
            &vb,
            weights.storage,
            weights.llm_storage,
            quant_cache.weights.as_ref(),
        )
        .map_err(weights_err)?;
        quant_cache.fill(&llm, opts.quantize);
        weights.record_cache(quant_cache);
        let image_head = ImageTokenHead::new(&config, &vb, weights.storage).map_err(weights_err)?;
        // The VQ tokenizer runs in f32 whatever the LLM dtype: bf16 convs are slow or missing
        // on CPU, and on a GPU bf16 through its ~30 conv/norm layers put the pixels 4.5% (of
        // their range) off the f32 decode (measured on an H200, tests/test_cuda_bf16.py) for a
        // few milliseconds saved per image.
        let vq_dtype = DType::F32;
        let vq = VqModel::new(
            &config.gen_vision,
            vb.pp("gen_vision_model").to_dtype(vq_dtype),
        )
        .map_err(weights_err)?;
        if config.vision.image_size % config.gen_vision.downsample() != 0 {
            return Err(Error::config(
                &files.config,
                format!(
                    "image_size {} is not a multiple of the VQ down-sampling factor {}",
                    config.vision.image_size,
                    config.gen_vision.downsample()
                ),
            ));
        }
        Ok(Self {
            config,
            tokenizer,
            image_processor,
            template,
            num_image_tokens,
            vision,
            aligner,
            llm,
            image_head,
            vq,
            device,
            weights,
            dir: dir.to_path_buf(),
            weight_files,
            num_parameters,
        })
    }

    fn build_modules(
        cfg: &JanusConfig,
        vb: &VarBuilder,
        storage: WeightStorage,
        llm_storage: WeightStorage,
        cache: Option<&QuantizedWeights>,
    ) -> candle_core::Result<(SiglipVisionTower, MlpProjector, Llama)> {
        let vision =
            SiglipVisionTower::new(&cfg.vision, vb.pp("vision_model.vision_tower"), storage)?;
        let a = &cfg.aligner;
        let aligner =
            MlpProjector::new(a.input_dim, a.n_embed, a.depth, vb.pp("aligner"), storage)?;
        let llm =
            Llama::new_with_cache(&cfg.language, vb.pp("language_model"), llm_storage, cache)?;
        Ok((vision, aligner, llm))
    }

    pub fn device(&self) -> &Device {
        &self.device
    }
    /// The dtype asked for: of the weight matrices (and, except on CPU, of the activations).
    pub fn dtype(&self) -> DType {
        self.weights.dtype
    }
    /// How the weights are kept (dtypes, quantization, the quantized-weights cache).
    pub fn weights(&self) -> &WeightPlan {
        &self.weights
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn weight_files(&self) -> &[PathBuf] {
        &self.weight_files
    }
    pub fn llm(&self) -> &Llama {
        &self.llm
    }

    /// The understanding aligner applied to SigLIP features: (…, width) → (…, hidden).
    pub fn align_image_features(&self, features: &Tensor) -> Result<Tensor> {
        let width = self.config.vision.width;
        if features.dims().last() != Some(&width) {
            return Err(Error::input(format!(
                "image features must end in dimension {width}, got {:?}",
                features.dims()
            )));
        }
        let _t = crate::profile::stage("aligner", &self.device);
        Ok(self
            .aligner
            .forward(&features.to_dtype(self.weights.compute_dtype)?)?)
    }

    /// Input embeddings (1, T, hidden): token embeddings with the image-placeholder positions
    /// replaced, in order, by the rows of `image_embeds` (n, tokens, hidden).
    pub fn inputs_embeds(&self, ids: &[u32], image_embeds: Option<&Tensor>) -> Result<Tensor> {
        check_prompt_ids(ids, self.config.language.vocab_size)?;
        let id_tensor = Tensor::new(ids, &self.device)?;
        let text = self.llm.embed(&id_tensor)?; // (T, H)
        let image = self.tokenizer.special.image;
        let slots = ids.iter().filter(|&&t| t == image).count();
        let rows = match image_embeds {
            Some(e) => {
                let (n, tokens, h) = e.dims3()?;
                if h != self.config.language.hidden_size {
                    return Err(Error::input(format!(
                        "image embeddings have width {h}, expected {}",
                        self.config.language.hidden_size
                    )));
                }
                n * tokens
            }
            None => 0,
        };
        if slots != rows {
            return Err(Error::input(format!(
                "the prompt has {slots} image-token positions ({} images) but {rows} image embedding rows were given ({} images)",
                slots / self.num_image_tokens.max(1),
                rows / self.num_image_tokens.max(1)
            )));
        }
        let embeds = match image_embeds {
            Some(e) if rows > 0 => splice_rows(&text, ids, |t| t == image, &e.flatten_to(1)?)?,
            _ => text,
        };
        Ok(embeds.unsqueeze(0)?)
    }

    /// Side of the generated image-token grid: image_size / VQ down-sampling (24 for 384 px).
    pub fn image_token_grid(&self) -> usize {
        self.config.vision.image_size / self.config.gen_vision.downsample()
    }

    /// Number of distinct image tokens (the VQ codebook / `gen_head` output size).
    pub fn image_vocab_size(&self) -> usize {
        self.image_head
            .vocab_size
            .min(self.config.gen_vision.codebook_size)
    }

    /// The official generation prompt: the SFT template with an empty system prompt, then
    /// `<begin_of_image>`; BOS first. A prompt already in that form (the official README passes
    /// `sft_format + image_start_tag`) is tokenized as it is instead of being wrapped again.
    pub fn generation_prompt_ids(&self, prompt: &str) -> Result<Vec<u32>> {
        if prompt.trim().is_empty() {
            return Err(Error::input("the prompt is empty"));
        }
        let tag = self
            .tokenizer
            .decode(&[self.tokenizer.special.begin_of_image], false)?;
        if let Some(body) = self.template.pre_rendered_generation_prompt(prompt, &tag) {
            let mut ids = self.tokenizer.encode_with_bos(body)?;
            ids.push(self.tokenizer.special.begin_of_image);
            return Ok(ids);
        }
        let text = self.template.render_for_reply(
            "",
            &[Message {
                role: crate::preprocess::Role::User,
                content: prompt.to_string(),
            }],
        );
        let mut ids = self.tokenizer.encode_with_bos(&text)?;
        ids.push(self.tokenizer.special.begin_of_image);
        Ok(ids)
    }

    /// Sample image tokens for each prompt × its `params.images` count (prompt-major).
    pub fn generate_image_tokens(
        &self,
        prompts: &[String],
        params: &ImageGenerationParams,
        max_images: usize,
        on_step: &mut OnStep,
    ) -> Result<Vec<Vec<u32>>> {
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
        params.validate(max_images)?;
        let ids = prompts
            .iter()
            .map(|p| self.generation_prompt_ids(p))
            .collect::<Result<Vec<_>>>()?;
        let grid = self.image_token_grid();
        let tokens = generate_image_tokens(
            &self.llm,
            &self.image_head,
            &ids,
            self.tokenizer.special.pad,
            grid * grid,
            params,
            &self.device,
            on_step,
        );
        crate::profile::report("image tokens");
        tokens
    }

    /// Image-token logits (…, image_vocab) of final-norm hidden states, through `gen_head`.
    pub fn image_token_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let h = self.config.language.hidden_size;
        if hidden.dims().last() != Some(&h) {
            return Err(Error::input(format!(
                "hidden states must end in dimension {h}, got {:?}",
                hidden.dims()
            )));
        }
        Ok(self
            .image_head
            .logits(&hidden.to_dtype(self.weights.compute_dtype)?)?)
    }

    /// LLM input embeddings (…, hidden) of image tokens, through `gen_embed` → `gen_aligner`.
    pub fn image_token_embeddings(&self, tokens: &[u32]) -> Result<Tensor> {
        self.check_image_tokens(tokens)?;
        Ok(self.image_head.embed(&Tensor::new(tokens, &self.device)?)?)
    }

    fn check_image_tokens(&self, tokens: &[u32]) -> Result<()> {
        let n = self.image_vocab_size();
        if let Some(bad) = tokens.iter().find(|&&t| t as usize >= n) {
            return Err(Error::input(format!(
                "image token {bad} is outside the codebook of {n} codes"
            )));
        }
        Ok(())
    }

    /// VQ-decode image tokens (n rows of grid² codes, raster order) to float images
    /// (n, 3, H, W), roughly in [−1, 1].
    pub fn decode_image_tokens(&self, tokens: &[u32], n: usize) -> Result<Tensor> {
        let grid = self.image_token_grid();
        if n == 0 || tokens.len() != n * grid * grid {
            return Err(Error::input(format!(
                "expected tokens of shape (n, {}) with n >= 1, got {} tokens for {n} images",
                grid * grid,
                tokens.len()
            )));
        }
        self.check_image_tokens(tokens)?;
        let codes = Tensor::from_vec(tokens.to_vec(), (n, grid * grid), &self.device)?;
        let images = {
            let _t = crate::profile::stage("vq decode", &self.device);
            self.vq.decode_codes(&codes, grid)?.to_dtype(DType::F32)?
        };
        crate::profile::report("vq decode");
        Ok(images)
    }

    /// VQ codes (n, g·g) of pixel values (n, 3, S, S) in [−1, 1] (official L2-normalised search).
    pub fn encode_pixels(&self, pixels: &Tensor) -> Result<Tensor> {
        let s = self.config.vision.image_size;
        match pixels.dims() {
            [_, 3, h, w] if *h == s && *w == s => {}
            other => {
                return Err(Error::input(format!(
                    "pixels must have shape (n, 3, {s}, {s}), got {other:?}"
                )))
            }
        }
        if !self.vq.has_encoder() {
            return Err(Error::Weights(
                "this checkpoint has no VQ encoder weights (gen_vision_model.encoder.*)".into(),
            ));
        }
        let latent = self.vq.encode_latent(&pixels.to_dtype(self.vq_dtype())?)?;
        Ok(self.vq.quantize(&latent)?)
    }

    /// The continuous VQ latent `quant_conv(encoder(x))` (n, embed_dim, g, g).
    pub fn encode_latent(&self, pixels: &Tensor) -> Result<Tensor> {
        Ok(self
            .vq
            .encode_latent(&pixels.to_dtype(self.vq_dtype())?)?
            .to_dtype(DType::F32)?)
    }

    fn vq_dtype(&self) -> DType {
        DType::F32
    }

    /// Images resized (bicubic, aspect not kept) to S×S and scaled to [−1, 1], as VQ input.
    pub fn vq_pixels(&self, images: &[RgbImage]) -> Result<Tensor> {
        let s = self.config.vision.image_size;
        let mut data = Vec::with_capacity(images.len() * 3 * s * s);
        for img in images {
            let r = img.resize_bicubic(s as u32, s as u32)?;
            let n = s * s;
            let mut chw = vec![0f32; 3 * n];
            for (i, px) in r.data.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    chw[c * n + i] = px[c] as f32 / 255.0 * 2.0 - 1.0;
                }
            }
            data.extend(chw);
        }
        Ok(Tensor::from_vec(
            data,
            (images.len(), 3, s, s),
            &self.device,
        )?)
    }

    /// Number of parameters (tensor elements) in the checkpoint's weight files.
    pub fn num_parameters(&self) -> usize {
        self.num_parameters
    }
}

impl Understanding for JanusPro {
    fn parts(&self) -> UnderstandingParts<'_> {
        UnderstandingParts {
            tokenizer: &self.tokenizer,
            image_processor: &self.image_processor,
            template: &self.template,
            num_image_tokens: self.num_image_tokens,
            vision: &self.vision,
            llm: &self.llm,
            device: &self.device,
            dtype: self.weights.compute_dtype,
            hidden_size: self.config.language.hidden_size,
        }
    }
    fn align_image_features(&self, features: &Tensor) -> Result<Tensor> {
        JanusPro::align_image_features(self, features)
    }
    fn inputs_embeds(&self, ids: &[u32], image_embeds: Option<&Tensor>) -> Result<Tensor> {
        JanusPro::inputs_embeds(self, ids, image_embeds)
    }
}
