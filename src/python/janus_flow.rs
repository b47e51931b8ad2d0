//! `JanusFlowModel`: the native half of `janus_rs.JanusFlow`.

use std::path::PathBuf;

use candle_core::Tensor;
use numpy::{PyArrayDyn, PyReadonlyArrayDyn};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::chat::{chat_model_methods, map_array};
use super::janus_pro::{prompt_images, rgb_from_numpy, with_python_hook};
use super::{numpy_to_vec, tensor_to_numpy, to_py_err, vec_to_numpy, without_gil};
use crate::device::{device_name, dtype_name, parse_device, parse_dtype};
use crate::error::{Error, Result};
use crate::generation::flow::FlowParams;
use crate::generation::postprocess::to_uint8_nhwc;
use crate::generation::{SamplingConfig, TextGenerationParams};
use crate::pipelines::janus_flow::SampleOptions;
use crate::pipelines::understanding::Understanding;
use crate::pipelines::{FlowLoadOptions, JanusFlow};
use crate::preprocess::{ChatTemplate, Message, Role};

type F32Array<'py> = Bound<'py, PyArrayDyn<f32>>;

#[pyclass(frozen, name = "JanusFlowModel", module = "janus_rs._native")]
pub struct JanusFlowModel {
    inner: JanusFlow,
}

impl JanusFlowModel {
    fn tensor(&self, (data, shape): (Vec<f32>, Vec<usize>)) -> Result<Tensor> {
        Ok(Tensor::from_vec(data, shape, self.inner.device())?)
    }

    /// numpy float32 in → `f(model, tensor)` without the GIL → numpy float32 out.
    fn map_array<'py>(
        &self,
        py: Python<'py>,
        input: &PyReadonlyArrayDyn<f32>,
        f: impl FnOnce(&JanusFlow, &Tensor) -> Result<Tensor> + Send,
    ) -> PyResult<F32Array<'py>> {
        let input = numpy_to_vec(input);
        let out = without_gil(py, || f(&self.inner, &self.tensor(input)?))?;
        tensor_to_numpy(py, &out)
    }
}

#[pymethods]
impl JanusFlowModel {
    /// Load a JanusFlow checkpoint folder and, optionally, a diffusers VAE folder.
    #[staticmethod]
    #[pyo3(signature = (path, device="cpu", dtype=None, roles=None, vae=None, vae_dtype=None, quantize=None, threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn load(
        py: Python<'_>,
        path: PathBuf,
        device: &str,
        dtype: Option<&str>,
        roles: Option<(String, String)>,
        vae: Option<PathBuf>,
        vae_dtype: Option<&str>,
        quantize: Option<&str>,
        threads: Option<usize>,
    ) -> PyResult<Self> {
        crate::threads::configure(threads).map_err(to_py_err)?;
        let device = parse_device(device).map_err(to_py_err)?;
        let dtype = parse_dtype(dtype).map_err(to_py_err)?;
        let quantize = super::parse_quantize(quantize).map_err(to_py_err)?;
        let vae_dtype = parse_dtype(vae_dtype).map_err(to_py_err)?;
        let opts = FlowLoadOptions {
            device,
            dtype,
            quantize,
            template: roles.map(|(user, assistant)| ChatTemplate { user, assistant }),
            vae,
            vae_dtype,
        };
        let inner = without_gil(py, move || JanusFlow::load(&path, &opts))?;
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
        d.set_item("layout", "official")?;
        d.set_item("device", device_name(m.device()))?;
        super::set_weight_facts(&d, m.llm(), m.weights())?;
        d.set_item("num_parameters", m.num_parameters())?;
        d.set_item("hidden_size", c.language.hidden_size)?;
        d.set_item("num_layers", c.language.num_hidden_layers)?;
        d.set_item("vocab_size", c.language.vocab_size)?;
        d.set_item("context_length", c.language.max_position_embeddings)?;
        d.set_item("image_size", m.image_size())?;
        d.set_item("num_image_tokens", m.num_image_tokens)?;
        d.set_item("vision_width", c.vision.width)?;
        d.set_item("vision_layers", c.vision.layers)?;
        d.set_item("gen_width", c.gen_width())?;
        let (lc, ls, _) = m.latent_shape();
        d.set_item("latent_channels", lc)?;
        d.set_item("latent_size", ls)?;
        d.set_item("latent_token_grid", m.latent_token_grid())?;
        d.set_item("vae_path", m.vae_dir().map(|p| p.display().to_string()))?;
        d.set_item("vae_dtype", m.vae().map(|v| dtype_name(v.dtype())))?;
        d.set_item(
            "vae_scaling_factor",
            m.vae().map(|v| v.config().scaling_factor),
        )?;
        d.set_item(
            "roles",
            (m.template.user.clone(), m.template.assistant.clone()),
        )?;
        let ids = PyDict::new(py);
        for (k, v) in m.tokenizer.special.named() {
            ids.set_item(k, v)?;
        }
        ids.set_item("begin_of_generation", m.begin_of_generation)?;
        d.set_item("special_token_ids", ids)?;
        Ok(d)
    }

    /// The sampler's schedule for `num_steps` Euler steps: (timesteps, dt), both bf16-rounded
    /// as the official loop does.
    #[staticmethod]
    fn flow_schedule(num_steps: usize) -> (Vec<f32>, f32) {
        (
            crate::generation::flow::timesteps(num_steps),
            crate::generation::flow::step_size(num_steps.max(1)),
        )
    }

    /// Token ids of the official generation prompt for `prompt`.
    fn generation_prompt_ids(&self, prompt: &str) -> PyResult<Vec<u32>> {
        self.inner.generation_prompt_ids(prompt).map_err(to_py_err)
    }

    /// Sample latents float32 (Σ num_images, C, h, w), prompt-major, or with `keep_all`
    /// (num_steps + 1, Σ num_images, C, h, w). Prompt `i` gets `num_images[i]` images whose
    /// noise comes from the streams of `seeds[i]` (unless `initial_noise` is given).
    /// `on_step(done)` is called after each Euler step; Ctrl-C is checked there.
    #[pyo3(signature = (prompts, num_images, cfg_weight, num_steps, seeds, initial_noise, max_images, keep_all=false, cache_prefix=true, on_step=None))]
    #[allow(clippy::too_many_arguments)]
    fn generate_latents<'py>(
        &self,
        py: Python<'py>,
        prompts: Vec<String>,
        num_images: Vec<usize>,
        cfg_weight: f64,
        num_steps: usize,
        seeds: Vec<u64>,
        initial_noise: Option<PyReadonlyArrayDyn<f32>>,
        max_images: usize,
        keep_all: bool,
        cache_prefix: bool,
        on_step: Option<Py<PyAny>>,
    ) -> PyResult<F32Array<'py>> {
        let params = FlowParams {
            images: prompt_images(&num_images, &seeds).map_err(to_py_err)?,
            cfg_weight,
            num_steps,
        };
        let noise = initial_noise.map(|a| numpy_to_vec(&a));
        let opts = SampleOptions {
            cache_prefix,
            keep_all,
        };
        let latents =
            with_python_hook(py, on_step, |hook: &mut dyn FnMut(usize) -> Result<()>| {
                let noise = noise.map(|n| self.tensor(n)).transpose()?;
                self.inner.generate_latents(
                    &prompts,
                    &params,
                    noise.as_ref(),
                    max_images,
                    opts,
                    &mut |done, _total| hook(done),
                )
            })?;
        tensor_to_numpy(py, &latents)
    }

    /// VAE-decode latents (n, C, h, w) to uint8 images (n, H, W, 3).
    fn decode_latents<'py>(
        &self,
        py: Python<'py>,
        latents: PyReadonlyArrayDyn<f32>,
    ) -> PyResult<Bound<'py, PyArrayDyn<u8>>> {
        let input = numpy_to_vec(&latents);
        let (data, shape) = without_gil(py, || {
            to_uint8_nhwc(&self.inner.decode_latents(&self.tensor(input)?)?)
        })?;
        vec_to_numpy(py, data, &shape)
    }

    /// The VAE's float output (n, 3, H, W), unclipped, for latents (n, C, h, w).
    fn decode_latents_float<'py>(
        &self,
        py: Python<'py>,
        latents: PyReadonlyArrayDyn<f32>,
    ) -> PyResult<F32Array<'py>> {
        self.map_array(py, &latents, |m, z| m.decode_latents(z))
    }

    /// The generation encoder at timestep `t`: (x_emb NCHW, t_emb, z tokens after the aligner).
    fn flow_encode<'py>(
        &self,
        py: Python<'py>,
        latents: PyReadonlyArrayDyn<f32>,
        t: f32,
    ) -> PyResult<(F32Array<'py>, F32Array<'py>, F32Array<'py>)> {
        let input = numpy_to_vec(&latents);
        let (x, te, ze) = without_gil(py, || self.inner.flow_encode(&self.tensor(input)?, t))?;
        Ok((
            tensor_to_numpy(py, &x)?,
            tensor_to_numpy(py, &te)?,
            tensor_to_numpy(py, &ze)?,
        ))
    }

    /// The generation decoder: (decoder input NCHW, velocity) from the latent tokens' final
    /// hidden states, the encoder's x_emb and t_emb.
    fn flow_decode<'py>(
        &self,
        py: Python<'py>,
        hidden: PyReadonlyArrayDyn<f32>,
        x_emb: PyReadonlyArrayDyn<f32>,
        t_emb: PyReadonlyArrayDyn<f32>,
    ) -> PyResult<(F32Array<'py>, F32Array<'py>)> {
        let (h, x, te) = (
            numpy_to_vec(&hidden),
            numpy_to_vec(&x_emb),
            numpy_to_vec(&t_emb),
        );
        let (y, v) = without_gil(py, || {
            self.inner
                .flow_decode(&self.tensor(h)?, &self.tensor(x)?, &self.tensor(te)?)
        })?;
        Ok((tensor_to_numpy(py, &y)?, tensor_to_numpy(py, &v)?))
    }

    /// One velocity evaluation for `prompt` at latents (B, C, h, w) and timestep `t`:
    /// (velocities of the 2B CFG rows, guided velocity (B)).
    fn velocity<'py>(
        &self,
        py: Python<'py>,
        prompt: &str,
        latents: PyReadonlyArrayDyn<f32>,
        t: f32,
        cfg_weight: f64,
    ) -> PyResult<(F32Array<'py>, F32Array<'py>)> {
        let input = numpy_to_vec(&latents);
        let (rows, guided) = without_gil(py, || {
            self.inner
                .velocity(prompt, &self.tensor(input)?, t, cfg_weight)
        })?;
        Ok((tensor_to_numpy(py, &rows)?, tensor_to_numpy(py, &guided)?))
    }
}

chat_model_methods!(JanusFlowModel);
