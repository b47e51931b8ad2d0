//! JanusFlow (`janus/janusflow`'s `MultiModalityCausalLM`): SigLIP + a single-Linear aligner and
//! the learned `beg_of_und_embed` for understanding; the ConvNeXt U-ViT encoder/decoder and
//! their aligners around the LLM for rectified-flow generation; the SDXL VAE (a separate
//! diffusers folder) to turn latents into pixels.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{rms_norm, RmsNorm, VarBuilder};

use super::understanding::{
    check_in_vocab, check_prompt_ids, splice_rows, weights_err, Processing, QuantCache,
    Understanding, UnderstandingParts, WeightPlan,
};
use crate::error::{Error, Result};
use crate::generation::flow::{image_noise, Encoded, FlowNet, FlowParams, FlowSampler, OnFlowStep};
use crate::kernels::linear::{linear, Linear};
use crate::kernels::linear::{QuantFormat, WeightStorage};
use crate::loading::quant_cache::QuantizedWeights;
use crate::loading::{Checkpoint, CheckpointFiles, JanusFlowConfig};
use crate::models::llama::Llama;
use crate::models::sdxl_vae::{VaeConfig, VaeDecoder};
use crate::models::siglip::SiglipVisionTower;
use crate::models::uvit::{ShallowUViTDecoder, ShallowUViTEncoder};
use crate::preprocess::{ChatTemplate, ImageProcessor, JanusTokenizer, Message, Role};

mod sampling;

pub use sampling::SampleOptions;

#[derive(Debug, Clone)]
pub struct FlowLoadOptions {
    pub device: Device,
    /// `None`: f32 on CPU, bf16 on CUDA.
    pub dtype: Option<DType>,
    /// Quantize the LLM's projections and `lm_head` (`None`: keep them as `dtype` says).
    pub quantize: Option<QuantFormat>,
    /// Chat roles; `None`: plain `User`/`Assistant`, as JanusFlow was trained.
    pub template: Option<ChatTemplate>,
    /// A diffusers `AutoencoderKL` folder (`stabilityai/sdxl-vae`); without one the model
    /// understands images and samples latents but cannot decode them to pixels.
    pub vae: Option<PathBuf>,
    /// `None`: f32 on CPU; on GPUs the model dtype, bf16 if that is f16. f16 is refused (the
    /// SDXL VAE overflows in it).
    pub vae_dtype: Option<DType>,
}

impl Default for FlowLoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: None,
            quantize: None,
            template: None,
            vae: None,
            vae_dtype: None,
        }
    }
}

/// Latent pixels per image pixel when no VAE is loaded (SDXL's ×8).
const DEFAULT_VAE_UPSCALE: usize = 8;

pub struct JanusFlow {
    pub config: JanusFlowConfig,
    pub tokenizer: JanusTokenizer,
    pub image_processor: ImageProcessor,
    pub template: ChatTemplate,
    /// Image tokens per image in a prompt: (image_size / patch_size)².
    pub num_image_tokens: usize,
    /// `<｜begin▁of▁generation｜>`, added to the tokenizer when missing.
    pub begin_of_generation: u32,
    vision: SiglipVisionTower,
    und_aligner: Linear,
    /// (1, hidden): takes the place of `<begin_of_image>`'s embedding in understanding prompts.
    beg_of_und_embed: Tensor,
    llm: Llama,
    gen_enc: ShallowUViTEncoder,
    gen_enc_aligner: Linear,
    gen_dec_aligner_norm: RmsNorm,
    gen_dec_aligner: Linear,
    gen_dec: ShallowUViTDecoder,
    vae: Option<VaeDecoder>,
    vae_dir: Option<PathBuf>,
    device: Device,
    weights: WeightPlan,
    dir: PathBuf,
    weight_files: Vec<PathBuf>,
    num_parameters: usize,
}

struct Modules {
    vision: SiglipVisionTower,
    und_aligner: Linear,
    beg_of_und_embed: Tensor,
    llm: Llama,
    gen_enc: ShallowUViTEncoder,
    gen_enc_aligner: Linear,
    gen_dec_aligner_norm: RmsNorm,
    gen_dec_aligner: Linear,
    gen_dec: ShallowUViTDecoder,
}

impl Modules {
    /// The five sizes the official `__init__` hard-codes are derived from the config (see
    /// `loading::flow_config`).
    fn new(
        cfg: &JanusFlowConfig,
        vb: &VarBuilder,
        storage: WeightStorage,
        llm_storage: WeightStorage,
        cache: Option<&QuantizedWeights>,
    ) -> candle_core::Result<Self> {
        let h = cfg.hidden_size();
        let c = cfg.gen_width();
        Ok(Self {
            vision: SiglipVisionTower::new(
                &cfg.vision,
                vb.pp("vision_und_enc_model.vision_tower"),
                storage,
            )?,
            und_aligner: linear(cfg.vision.width, h, vb.pp("vision_und_enc_aligner"))?,
            beg_of_und_embed: vb.get((1, h), "beg_of_und_embed")?,
            llm: Llama::new_with_cache(&cfg.language, vb.pp("language_model"), llm_storage, cache)?,
            gen_enc: ShallowUViTEncoder::new(&cfg.gen_enc, vb.pp("vision_gen_enc_model"))?,
            gen_enc_aligner: linear(c, h, vb.pp("vision_gen_enc_aligner"))?,
            gen_dec_aligner_norm: rms_norm(
                h,
                cfg.language.rms_norm_eps,
                vb.pp("vision_gen_dec_aligner_norm"),
            )?,
            gen_dec_aligner: linear(h, cfg.gen_dec.in_channels, vb.pp("vision_gen_dec_aligner"))?,
            gen_dec: ShallowUViTDecoder::new(&cfg.gen_dec, vb.pp("vision_gen_dec_model"))?,
        })
    }
}

/// The VAE dtype: as asked, else f32 on CPU and the model dtype on GPUs (bf16 for an f16 model).
fn vae_dtype(asked: Option<DType>, model: DType, device: &Device) -> DType {
    match asked {
        Some(d) => d,
        None if device.is_cpu() => DType::F32,
        None if model == DType::F16 => DType::BF16,
        None => model,
    }
}

impl JanusFlow {
    /// Load a JanusFlow checkpoint folder (official deepseek-ai layout) and, if given, the
    /// diffusers VAE folder.
    pub fn load(dir: &Path, opts: &FlowLoadOptions) -> Result<Self> {
        let files = CheckpointFiles::in_dir(dir)?;
        let config = JanusFlowConfig::from_file(&files.config)?;
        let vocab = config.language.vocab_size;
        let Processing {
            image_processor,
            processor,
            tokenizer,
            num_image_tokens,
        } = Processing::load(&files, &config.vision, vocab, true)?;
        let begin_of_generation =
            tokenizer
                .token_to_id(&processor.image_gen_tag)
                .ok_or_else(|| {
                    Error::Tokenizer(format!(
                        "no token {:?} after adding it",
                        processor.image_gen_tag
                    ))
                })?;
        check_in_vocab("begin_of_generation", begin_of_generation, vocab)?;
        let template = opts.template.clone().unwrap_or_else(ChatTemplate::plain);
        let device = opts.device.clone();
        // Opened now for its stored dtype (the default dtype); an error in it is reported after
        // the VAE's.
        let checkpoint = Checkpoint::open_dir(dir);
        let stored = checkpoint
            .as_ref()
            .ok()
            .and_then(|c| c.stored_float_dtype());
        let mut weights = WeightPlan::new(opts.dtype, opts.quantize, &device, stored);
        // The VAE first: its errors (a wrong folder, float16) come before the big model loads.
        let vae = match &opts.vae {
            Some(vae_dir) => Some(Self::load_vae(
                vae_dir,
                vae_dtype(opts.vae_dtype, weights.dtype, &device),
                &device,
                &config,
            )?),
            None => None,
        };
        let checkpoint = checkpoint?;
        let weight_files = checkpoint.files().to_vec();
        let mut quant_cache = QuantCache::open(&weight_files, opts.quantize, &device);
        let num_parameters = checkpoint.num_parameters();
        let vb = checkpoint.var_builder(weights.compute_dtype, &device);
        let m = Modules::new(
            &config,
            &vb,
            weights.storage,
            weights.llm_storage,
            quant_cache.weights.as_ref(),
        )
        .map_err(weights_err)?;
        quant_cache.fill(&m.llm, opts.quantize);
        weights.record_cache(quant_cache);
        let upscale = vae
            .as_ref()
            .map_or(DEFAULT_VAE_UPSCALE, VaeDecoder::upscale);
        let step = upscale * config.latent_patch();
        if !config.vision.image_size.is_multiple_of(step) {
            return Err(Error::config(
                &files.config,
                format!(
                    "image_size {} is not a multiple of {step} (VAE ×{upscale} times the 2×2 latent patch)",
                    config.vision.image_size
                ),
            ));
        }
        Ok(Self {
            config,
            tokenizer,
            image_processor,
            template,
            num_image_tokens,
            begin_of_generation,
            vision: m.vision,
            und_aligner: m.und_aligner,
            beg_of_und_embed: m.beg_of_und_embed,
            llm: m.llm,
            gen_enc: m.gen_enc,
            gen_enc_aligner: m.gen_enc_aligner,
            gen_dec_aligner_norm: m.gen_dec_aligner_norm,
            gen_dec_aligner: m.gen_dec_aligner,
            gen_dec: m.gen_dec,
            vae_dir: opts.vae.clone(),
            vae,
            device,
            weights,
            dir: dir.to_path_buf(),
            weight_files,
            num_parameters,
        })
    }

    fn load_vae(
        dir: &Path,
        dtype: DType,
        device: &Device,
        config: &JanusFlowConfig,
    ) -> Result<VaeDecoder> {
        if !dir.is_dir() {
            return Err(Error::not_found("VAE folder", dir));
        }
        let config_file = dir.join("config.json");
        if !config_file.is_file() {
            return Err(Error::not_found("config.json of the VAE", &config_file));
        }
        // A diffusers config names its class; anything else (a JanusFlow or transformers
        // config.json, a random JSON file) is not a VAE.
        let raw: serde_json::Value = crate::loading::config::read_json(&config_file)?;
        if raw.get("_class_name").and_then(|v| v.as_str()).is_none() {
            return Err(Error::config(
                &config_file,
                "not a diffusers VAE config (no \"_class_name\"; expected \"AutoencoderKL\", \
                 e.g. the folder of stabilityai/sdxl-vae)",
            ));
        }
        // The channel check before any weight is read (a mismatched VAE would otherwise fail
        // on the first weight shape, with a less useful message).
        let have = VaeConfig::from_file(&config_file)?.latent_channels;
        let want = config.latent_channels();
        if have != want {
            return Err(Error::config(
                &config_file,
                format!(
                    "the VAE has {have} latent channels but JanusFlow generates {want}-channel latents \
                     (use the SDXL VAE, stabilityai/sdxl-vae)"
                ),
            ));
        }
        let vae = VaeDecoder::load(dir, dtype, device)?;
        Ok(vae)
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
    pub fn vae(&self) -> Option<&VaeDecoder> {
        self.vae.as_ref()
    }
    pub fn vae_dir(&self) -> Option<&Path> {
        self.vae_dir.as_deref()
    }
    /// Number of parameters (tensor elements) in the checkpoint's weight files (VAE excluded).
    pub fn num_parameters(&self) -> usize {
        self.num_parameters
    }

    // ------------------------------------------------------------------ understanding

    /// `vision_und_enc_aligner` (one Linear) on SigLIP features: (…, width) → (…, hidden).
    pub fn align_image_features(&self, features: &Tensor) -> Result<Tensor> {
        let width = self.config.vision.width;
        if features.dims().last() != Some(&width) {
            return Err(Error::input(format!(
                "image features must end in dimension {width}, got {:?}",
                features.dims()
            )));
        }
        Ok(self
            .und_aligner
            .forward(&features.to_dtype(self.weights.compute_dtype)?)?)
    }

    /// Input embeddings (1, T, hidden): token embeddings with, per image, the
    /// `<begin_of_image>` position replaced by `beg_of_und_embed` and the placeholder positions
    /// by the rows of `image_embeds` (n, tokens, hidden), in order (the official
    /// `images_seq_mask = (ids == <image_placeholder>) | (ids == <begin_of_image>)`);
    /// `<end_of_image>` keeps its token embedding.
    pub fn inputs_embeds(&self, ids: &[u32], image_embeds: Option<&Tensor>) -> Result<Tensor> {
        let h = self.config.hidden_size();
        check_prompt_ids(ids, self.config.language.vocab_size)?;
        let text = self.llm.embed(&Tensor::new(ids, &self.device)?)?;
        let s = self.tokenizer.special;
        let is_slot = |t: u32| t == s.image || t == s.begin_of_image;
        let slots = ids.iter().filter(|&&t| is_slot(t)).count();
        let per_image = self.num_image_tokens + 1;
        let (n, rows) = match image_embeds {
            Some(e) => {
                let (n, tokens, w) = e.dims3()?;
                if w != h || tokens != self.num_image_tokens {
                    return Err(Error::input(format!(
                        "image embeddings must have shape (n, {}, {h}), got {:?}",
                        self.num_image_tokens,
                        e.dims()
                    )));
                }
                (n, n * per_image)
            }
            None => (0, 0),
        };
        if slots != rows {
            return Err(Error::input(format!(
                "the prompt has {slots} image positions (<begin_of_image> and placeholders, {} per \
                 image) but {n} images were given",
                per_image
            )));
        }
        let embeds = match image_embeds {
            Some(e) if n > 0 => {
                let beg = self
                    .beg_of_und_embed
                    .to_dtype(e.dtype())?
                    .unsqueeze(0)?
                    .repeat((n, 1, 1))?;
                let rows = Tensor::cat(&[&beg, e], 1)?.flatten_to(1)?;
                splice_rows(&text, ids, is_slot, &rows)?
            }
            _ => text,
        };
        Ok(embeds.unsqueeze(0)?)
    }

    // ------------------------------------------------------------------ generation

    /// The official generation prompt: `User: {prompt}\n\nAssistant:` (empty system prompt),
    /// BOS first, then `<｜begin▁of▁generation｜>` (dropped before the LLM, as officially). A
    /// prompt already in that form (`sft_format + image_gen_tag`) is not wrapped again.
    pub fn generation_prompt_ids(&self, prompt: &str) -> Result<Vec<u32>> {
        if prompt.trim().is_empty() {
            return Err(Error::input("the prompt is empty"));
        }
        let tag = self.tokenizer.decode(&[self.begin_of_generation], false)?;
        if let Some(body) = self.template.pre_rendered_generation_prompt(prompt, &tag) {
            let mut ids = self.tokenizer.encode_with_bos(body)?;
            ids.push(self.begin_of_generation);
            return Ok(ids);
        }
        let text = self.template.render_for_reply(
            "",
            &[Message {
                role: Role::User,
                content: prompt.to_string(),
            }],
        );
        let mut ids = self.tokenizer.encode_with_bos(&text)?;
        ids.push(self.begin_of_generation);
        Ok(ids)
    }

    /// Side of the generated images in pixels (the understanding image size, 384).
    pub fn image_size(&self) -> usize {
        self.config.vision.image_size
    }

    /// Side of the latent (48 for 384-pixel images and the ×8 SDXL VAE).
    pub fn latent_size(&self) -> usize {
        let upscale = self
            .vae
            .as_ref()
            .map_or(DEFAULT_VAE_UPSCALE, VaeDecoder::upscale);
        self.image_size() / upscale
    }

    /// Side of the LLM's latent-token grid (24 for a 48×48 latent).
    pub fn latent_token_grid(&self) -> usize {
        self.latent_size() / self.config.latent_patch()
    }

    /// The latent shape (C, h, w) of one image.
    pub fn latent_shape(&self) -> (usize, usize, usize) {
        let s = self.latent_size();
        (self.config.latent_channels(), s, s)
    }
}

impl Understanding for JanusFlow {
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
            hidden_size: self.config.hidden_size(),
        }
    }
    fn align_image_features(&self, features: &Tensor) -> Result<Tensor> {
        JanusFlow::align_image_features(self, features)
    }
    fn inputs_embeds(&self, ids: &[u32], image_embeds: Option<&Tensor>) -> Result<Tensor> {
        JanusFlow::inputs_embeds(self, ids, image_embeds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::max_abs;
    use std::collections::HashMap;

    fn fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-janusflow")
    }

    fn tiny() -> (JanusFlow, HashMap<String, Tensor>) {
        let dir = fixture();
        let opts = FlowLoadOptions {
            vae: Some(dir.join("vae")),
            ..Default::default()
        };
        let m = JanusFlow::load(&dir, &opts).unwrap();
        let refs = candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu)
            .unwrap();
        (m, refs)
    }

    /// max |a − b| / max |b|.
    fn rel(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        max_abs(&(a - b).unwrap()) / max_abs(b)
    }

    fn ids(t: &Tensor) -> Vec<u32> {
        t.to_dtype(DType::U32).unwrap().to_vec1().unwrap()
    }

    #[test]
    fn understanding_matches_reference() {
        let (m, r) = tiny();
        assert_eq!(m.begin_of_generation, 414);
        let prompt = m.render_prompt(
            crate::preprocess::DEFAULT_SYSTEM_PROMPT,
            &[Message {
                role: Role::User,
                content: "<image_placeholder>\nDescribe this image.".into(),
            }],
        );
        let (prompt_ids, n) = m.prompt_ids(&prompt).unwrap();
        assert_eq!((prompt_ids.clone(), n), (ids(&r["und_input_ids"]), 1));
        let px = r["und_pixel_values"].unsqueeze(0).unwrap();
        let emb = m.image_embeddings(&px).unwrap();
        assert!(rel(&emb.squeeze(0).unwrap(), &r["und_aligner_out"]) < 1e-5);
        let e = m.inputs_embeds(&prompt_ids, Some(&emb)).unwrap();
        assert!(rel(&e.squeeze(0).unwrap(), &r["und_inputs_embeds"]) < 1e-5);
        let (h, l) = m
            .forward(&r["und_inputs_embeds"].unsqueeze(0).unwrap())
            .unwrap();
        assert!(rel(&h.squeeze(0).unwrap(), &r["und_last_hidden"]) < 1e-4);
        assert!(rel(&l.squeeze(0).unwrap(), &r["und_logits"]) < 1e-4);
    }

    #[test]
    fn cached_prefix_gives_the_full_recompute_latents() {
        let (m, r) = tiny();
        let params = FlowParams {
            images: vec![crate::generation::PromptImages { count: 2, seed: 0 }],
            cfg_weight: 2.0,
            num_steps: 30,
        };
        let noise = &r["gen_init_noise"];
        let run = |cache_prefix| {
            let opts = SampleOptions {
                cache_prefix,
                keep_all: true,
            };
            m.generate_latents(
                &["a red cat".into()],
                &params,
                Some(noise),
                8,
                opts,
                &mut |_, _| Ok(()),
            )
            .unwrap()
        };
        let cached = run(true);
        let full = run(false);
        let diff = max_abs(&(&cached - &full).unwrap());
        eprintln!("cached vs full recompute: max |diff| {diff:.3e}");
        assert!(diff <= 1e-5 * max_abs(&full), "{diff}");
        let err = rel(&cached, &r["gen_latents"]);
        eprintln!("latents rel err {err:.3e}");
        assert!(err < 1e-3, "{err}");
        let img = m.decode_latents(&r["gen_final_latent"]).unwrap();
        let err = rel(&img, &r["gen_decoded"]);
        eprintln!("decoded rel err {err:.3e}");
        assert!(err < 1e-4, "{err}");
    }
}
