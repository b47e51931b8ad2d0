//! `JanusProModel`: the native half of `janus_rs.JanusPro`.

use std::path::PathBuf;
use std::sync::Mutex;

use candle_core::Tensor;
use numpy::{PyArrayDyn, PyReadonlyArrayDyn};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::chat::{chat_model_methods, map_array};
use super::{numpy_to_vec, tensor_to_numpy, to_py_err, vec_to_numpy, without_gil};
use crate::device::{device_name, parse_device, parse_dtype};
use crate::error::{Error, Result};
use crate::generation::postprocess::to_uint8_nhwc;
use crate::generation::{
    ImageGenerationParams, PromptImages, SamplingConfig, TextGenerationParams,
};
use crate::pipelines::understanding::Understanding;
use crate::preprocess::{ChatTemplate, Message, RgbImage, Role};
use crate::{JanusPro, LoadOptions};

type F32Array<'py> = Bound<'py, PyArrayDyn<f32>>;

pub(super) fn rgb_from_numpy(a: &PyReadonlyArrayDyn<u8>) -> Result<RgbImage> {
    let (data, shape) = numpy_to_vec(a);
    match shape.as_slice() {
        [h, w, 3] => RgbImage::new(*w as u32, *h as u32, data),
        other => Err(Error::Image(format!(
            "expected an HxWx3 uint8 array, got shape {other:?}"
        ))),
    }
}

/// Decode encoded image bytes (PNG, JPEG, WebP, GIF, BMP, TIFF) to an HxWx3 uint8 array.
#[pyfunction]
pub fn decode_image<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyArrayDyn<u8>>> {
    let bytes = data.to_vec();
    let img = without_gil(py, move || RgbImage::decode(&bytes))?;
    vec_to_numpy(py, img.data, &[img.height as usize, img.width as usize, 3])
}

/// Run `work` without the GIL, giving it a step hook that re-acquires the GIL to check for
/// Ctrl-C and call `callback(*args)`. A Python error from either stops the work and is re-raised.
/// One [`PromptImages`] per prompt from the per-prompt counts and seeds the Python layer sends.
pub(super) fn prompt_images(num_images: &[usize], seeds: &[u64]) -> Result<Vec<PromptImages>> {
    if num_images.len() != seeds.len() {
        return Err(Error::input(format!(
            "{} image counts but {} seeds",
            num_images.len(),
            seeds.len()
        )));
    }
    Ok(num_images
        .iter()
        .zip(seeds)
        .map(|(&count, &seed)| PromptImages { count, seed })
        .collect())
}

pub(super) fn with_python_hook<T: Send, A>(
    py: Python<'_>,
    callback: Option<Py<PyAny>>,
    work: impl FnOnce(&mut dyn FnMut(A) -> Result<()>) -> Result<T> + Send,
) -> PyResult<T>
where
    A: for<'py> IntoPyObject<'py> + Send,
    for<'py> (A,): IntoPyObject<'py>,
{
    let callback_error: Mutex<Option<PyErr>> = Mutex::new(None);
    let result = without_gil(py, || {
        let mut hook = |arg: A| -> Result<()> {
            Python::attach(|py| {
                let r = py.check_signals().and_then(|_| match &callback {
                    Some(cb) => cb.call1(py, (arg,)).map(|_| ()),
                    None => Ok(()),
                });
                r.map_err(|e| {
                    *callback_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    Error::Interrupted
                })
            })
        };
        work(&mut hook)
    });
    match result {
        Ok(v) => Ok(v),
        Err(e) => Err(callback_error
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or(e)),
    }
}

#[pyclass(frozen, name = "JanusProModel", module = "janus_rs._native")]
pub struct JanusProModel {
    inner: JanusPro,
}

impl JanusProModel {
    fn tensor(&self, data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        Ok(Tensor::from_vec(data, shape, self.inner.device())?)
    }

    /// numpy float32 in → `f(model, tensor)` without the GIL → numpy float32 out.
    fn map_array<'py>(
        &self,
        py: Python<'py>,
        input: &PyReadonlyArrayDyn<f32>,
        f: impl FnOnce(&JanusPro, &Tensor) -> Result<Tensor> + Send,
    ) -> PyResult<F32Array<'py>> {
        let (data, shape) = numpy_to_vec(input);
        let out = without_gil(py, || f(&self.inner, &self.tensor(data, &shape)?))?;
        tensor_to_numpy(py, &out)
    }
}

#[pymethods]
impl JanusProModel {
    /// Load a checkpoint folder (official deepseek-ai or transformers layout).
    #[staticmethod]
    #[pyo3(signature = (path, device="cpu", dtype=None, roles=None, quantize=None, threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn load(
        py: Python<'_>,
        path: PathBuf,
        device: &str,
        dtype: Option<&str>,
        roles: Option<(String, String)>,
        quantize: Option<&str>,
        threads: Option<usize>,
    ) -> PyResult<Self> {
        crate::threads::configure(threads).map_err(to_py_err)?;
        let device = parse_device(device).map_err(to_py_err)?;
        let dtype = parse_dtype(dtype).map_err(to_py_err)?;
        let quantize = super::parse_quantize(quantize).map_err(to_py_err)?;
        let template = roles.map(|(user, assistant)| ChatTemplate { user, assistant });
        let opts = LoadOptions {
            device,
            dtype,
            quantize,
            template,
        };
        let inner = without_gil(py, move || JanusPro::load(&path, &opts))?;
        Ok(Self { inner })
    }

    /// Facts about the loaded model, as a dict.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = &self.inner;
        let c = &m.config;
        let d = PyDict::new(py);
        d.set_item("path", m.dir().display().to_string())?;
        d.set_item(
            "weight_files",
            m.weight_files()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>(),
        )?;
        d.set_item(
            "layout",
            match c.layout {
                crate::loading::WeightLayout::Official => "official",
                crate::loading::WeightLayout::Transformers => "transformers",
            },
        )?;
        d.set_item("device", device_name(m.device()))?;
        super::set_weight_facts(&d, m.llm(), m.weights())?;
        d.set_item("num_parameters", m.num_parameters())?;
        d.set_item("hidden_size", c.language.hidden_size)?;
        d.set_item("num_layers", c.language.num_hidden_layers)?;
        d.set_item("vocab_size", c.language.vocab_size)?;
        d.set_item("context_length", c.language.max_position_embeddings)?;
        d.set_item("image_size", c.vision.image_size)?;
        d.set_item("num_image_tokens", m.num_image_tokens)?;
        d.set_item("vision_width", c.vision.width)?;
        d.set_item("vision_layers", c.vision.layers)?;
        d.set_item("image_token_grid", m.image_token_grid())?;
        d.set_item("image_vocab_size", m.image_vocab_size())?;
        d.set_item(
            "roles",
            (m.template.user.clone(), m.template.assistant.clone()),
        )?;
        let ids = PyDict::new(py);
        for (k, v) in m.tokenizer.special.named() {
            ids.set_item(k, v)?;
        }
        d.set_item("special_token_ids", ids)?;
        Ok(d)
    }

    /// Sample image tokens (Σ num_images, grid²) uint32, prompt-major: prompt `i` gets
    /// `num_images[i]` images drawn from the streams of `seeds[i]`. `on_step(done)` is called
    /// after each image-token step.
    #[pyo3(signature = (prompts, num_images, cfg_weight, temperature, top_k, top_p, seeds, max_images, on_step=None))]
    #[allow(clippy::too_many_arguments)]
    fn generate_image_tokens<'py>(
        &self,
        py: Python<'py>,
        prompts: Vec<String>,
        num_images: Vec<usize>,
        cfg_weight: f64,
        temperature: f64,
        top_k: Option<usize>,
        top_p: Option<f64>,
        seeds: Vec<u64>,
        max_images: usize,
        on_step: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<u32>>> {
        let params = ImageGenerationParams {
            images: prompt_images(&num_images, &seeds).map_err(to_py_err)?,
            cfg_weight,
            temperature,
            top_k,
            top_p,
        };
        let rows = with_python_hook(py, on_step, |hook: &mut dyn FnMut(usize) -> Result<()>| {
            self.inner
                .generate_image_tokens(&prompts, &params, max_images, &mut |done, _total| {
                    hook(done)
                })
        })?;
        let (n, len) = (rows.len(), rows.first().map_or(0, Vec::len));
        vec_to_numpy(py, rows.concat(), &[n, len])
    }

    /// VQ-decode tokens (n·grid² ids, raster order) to uint8 images (n, H, W, 3).
    fn decode_image_tokens<'py>(
        &self,
        py: Python<'py>,
        tokens: Vec<u32>,
        n: usize,
    ) -> PyResult<Bound<'py, PyArrayDyn<u8>>> {
        let (data, shape) = without_gil(py, || {
            to_uint8_nhwc(&self.inner.decode_image_tokens(&tokens, n)?)
        })?;
        vec_to_numpy(py, data, &shape)
    }

    /// The VQ decoder's float output (n, 3, H, W), before conversion to uint8.
    fn decode_image_tokens_float<'py>(
        &self,
        py: Python<'py>,
        tokens: Vec<u32>,
        n: usize,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let out = without_gil(py, || self.inner.decode_image_tokens(&tokens, n))?;
        tensor_to_numpy(py, &out)
    }

    /// VQ input pixels (n, 3, S, S) in [-1, 1] of HxWx3 uint8 images (resized to S×S).
    fn vq_pixels<'py>(
        &self,
        py: Python<'py>,
        images: Vec<PyReadonlyArrayDyn<u8>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let imgs = images
            .iter()
            .map(rgb_from_numpy)
            .collect::<Result<Vec<_>>>()
            .map_err(to_py_err)?;
        let out = without_gil(py, || self.inner.vq_pixels(&imgs))?;
        tensor_to_numpy(py, &out)
    }

    /// VQ codes (n, grid²) of VQ input pixels (n, 3, S, S).
    fn encode_pixels<'py>(
        &self,
        py: Python<'py>,
        pixels: PyReadonlyArrayDyn<f32>,
    ) -> PyResult<Bound<'py, PyArrayDyn<u32>>> {
        let (data, shape) = numpy_to_vec(&pixels);
        let codes = without_gil(py, || {
            Ok(self
                .inner
                .encode_pixels(&self.tensor(data, &shape)?)?
                .to_dtype(candle_core::DType::U32)?)
        })?;
        let dims = codes.dims().to_vec();
        let flat = codes
            .flatten_all()
            .and_then(|t| t.to_vec1::<u32>())
            .map_err(|e| to_py_err(e.into()))?;
        vec_to_numpy(py, flat, &dims)
    }

    /// The continuous VQ latent quant_conv(encoder(x)) (n, embed_dim, grid, grid).
    fn encode_latent<'py>(
        &self,
        py: Python<'py>,
        pixels: PyReadonlyArrayDyn<f32>,
    ) -> PyResult<F32Array<'py>> {
        self.map_array(py, &pixels, |m, x| m.encode_latent(x))
    }

    /// `gen_head` logits of final-norm hidden states (..., hidden).
    fn image_token_logits<'py>(
        &self,
        py: Python<'py>,
        hidden: PyReadonlyArrayDyn<f32>,
    ) -> PyResult<F32Array<'py>> {
        self.map_array(py, &hidden, |m, x| m.image_token_logits(x))
    }

    /// LLM input embeddings (n, hidden) of image tokens (gen_embed -> gen_aligner).
    fn image_token_embeddings<'py>(
        &self,
        py: Python<'py>,
        tokens: Vec<u32>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let out = without_gil(py, || self.inner.image_token_embeddings(&tokens))?;
        tensor_to_numpy(py, &out)
    }

    /// Token ids of the official generation prompt for `prompt`.
    fn generation_prompt_ids(&self, prompt: &str) -> PyResult<Vec<u32>> {
        self.inner.generation_prompt_ids(prompt).map_err(to_py_err)
    }
}

chat_model_methods!(JanusProModel);
