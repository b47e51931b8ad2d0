//! The understanding methods `JanusProModel` and `JanusFlowModel` share (prompt rendering,
//! tokenizer, preprocessing, SigLIP, embeddings, LLM forward, reply generation). Both models
//! expose the same Rust methods for these, so one `#[pymethods]` block (pyo3's
//! `multiple-pymethods`) is generated for each class. The names it uses resolve where the macro
//! is invoked: each class's file imports them.

use candle_core::{Device, Tensor};
use numpy::{PyArrayDyn, PyReadonlyArrayDyn};
use pyo3::prelude::*;

use super::{numpy_to_vec, tensor_to_numpy, without_gil};
use crate::error::Result;

/// numpy float32 in → `f(tensor)` without the GIL → numpy float32 out.
pub(super) fn map_array<'py>(
    py: Python<'py>,
    input: &PyReadonlyArrayDyn<f32>,
    device: &Device,
    f: impl FnOnce(&Tensor) -> Result<Tensor> + Send,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let (data, shape) = numpy_to_vec(input);
    let out = without_gil(py, || f(&Tensor::from_vec(data, shape, device)?))?;
    tensor_to_numpy(py, &out)
}

/// `#[pymethods]` with the shared understanding methods for `$class` (whose `inner` is a
/// `JanusPro` or a `JanusFlow`).
macro_rules! chat_model_methods {
    ($class:ident) => {
        #[pymethods]
        impl $class {
            /// The SFT prompt for `messages` (list of (role, content)), ending with an assistant turn.
            fn render_prompt(
                &self,
                messages: Vec<(String, String)>,
                system_prompt: &str,
            ) -> PyResult<String> {
                let msgs = messages
                    .into_iter()
                    .map(|(role, content)| {
                        Ok(Message {
                            role: Role::parse(&role)?,
                            content,
                        })
                    })
                    .collect::<Result<Vec<_>>>()
                    .map_err(to_py_err)?;
                Ok(self.inner.render_prompt(system_prompt, &msgs))
            }

            /// Token ids of a rendered prompt (BOS first, image placeholders expanded) and the number
            /// of images it refers to.
            fn prompt_ids(&self, prompt: &str) -> PyResult<(Vec<u32>, usize)> {
                self.inner.prompt_ids(prompt).map_err(to_py_err)
            }

            #[pyo3(signature = (text, add_bos=false))]
            fn encode(&self, text: &str, add_bos: bool) -> PyResult<Vec<u32>> {
                let t = &self.inner.tokenizer;
                if add_bos {
                    t.encode_with_bos(text)
                } else {
                    t.encode_plain(text)
                }
                .map_err(to_py_err)
            }

            #[pyo3(signature = (ids, skip_special_tokens=true))]
            fn decode(&self, ids: Vec<u32>, skip_special_tokens: bool) -> PyResult<String> {
                self.inner
                    .tokenizer
                    .decode(&ids, skip_special_tokens)
                    .map_err(to_py_err)
            }

            fn token_to_id(&self, token: &str) -> Option<u32> {
                self.inner.tokenizer.token_to_id(token)
            }

            /// The resize step alone (long side to image_size, bicubic), before padding.
            fn resize_image<'py>(
                &self,
                py: Python<'py>,
                image: PyReadonlyArrayDyn<u8>,
            ) -> PyResult<Bound<'py, PyArrayDyn<u8>>> {
                let img = rgb_from_numpy(&image).map_err(to_py_err)?;
                let out = without_gil(py, || self.inner.image_processor.resize(&img))?;
                vec_to_numpy(py, out.data, &[out.height as usize, out.width as usize, 3])
            }

            /// Pixel values (n, 3, S, S) float32 of a list of HxWx3 uint8 images.
            fn preprocess_images<'py>(
                &self,
                py: Python<'py>,
                images: Vec<PyReadonlyArrayDyn<u8>>,
            ) -> PyResult<F32Array<'py>> {
                let imgs = images
                    .iter()
                    .map(rgb_from_numpy)
                    .collect::<Result<Vec<_>>>()
                    .map_err(to_py_err)?;
                let out = without_gil(py, || self.inner.pixel_values(&imgs))?;
                tensor_to_numpy(py, &out)
            }

            /// SigLIP output (n, tokens, width) for pixel values (n, 3, S, S).
            fn vision_features<'py>(
                &self,
                py: Python<'py>,
                pixel_values: PyReadonlyArrayDyn<f32>,
            ) -> PyResult<F32Array<'py>> {
                map_array(py, &pixel_values, self.inner.device(), |x| self.inner.vision_features(x))
            }

            /// The understanding aligner on SigLIP features.
            fn align_image_features<'py>(
                &self,
                py: Python<'py>,
                features: PyReadonlyArrayDyn<f32>,
            ) -> PyResult<F32Array<'py>> {
                map_array(py, &features, self.inner.device(), |x| self.inner.align_image_features(x))
            }

            /// Input embeddings (T, hidden) of `ids` with the image positions filled from `pixel_values`.
            #[pyo3(signature = (ids, pixel_values=None))]
            fn inputs_embeds<'py>(
                &self,
                py: Python<'py>,
                ids: Vec<u32>,
                pixel_values: Option<PyReadonlyArrayDyn<f32>>,
            ) -> PyResult<F32Array<'py>> {
                let pixels = pixel_values.map(|p| numpy_to_vec(&p));
                let out = without_gil(py, || {
                    let image_embeds = match pixels {
                        Some(p) => Some(self.inner.image_embeddings(&Tensor::from_vec(p.0, p.1, self.inner.device())?)?),
                        None => None,
                    };
                    Ok(self
                        .inner
                        .inputs_embeds(&ids, image_embeds.as_ref())?
                        .squeeze(0)?)
                })?;
                tensor_to_numpy(py, &out)
            }

            /// The LLM on input embeddings (T, hidden) or (B, T, hidden): (final-norm hidden, logits).
            fn forward<'py>(
                &self,
                py: Python<'py>,
                inputs_embeds: PyReadonlyArrayDyn<f32>,
            ) -> PyResult<(F32Array<'py>, F32Array<'py>)> {
                let input = numpy_to_vec(&inputs_embeds);
                let batched = input.1.len() == 3;
                let (hidden, logits) = without_gil(py, || {
                    if !matches!(input.1.len(), 2 | 3) {
                        return Err(Error::input(format!(
                            "inputs_embeds must be (T, hidden) or (B, T, hidden), got {:?}",
                            input.1
                        )));
                    }
                    let x = Tensor::from_vec(input.0, input.1, self.inner.device())?;
                    let x = if batched { x } else { x.unsqueeze(0)? };
                    let (h, l) = self.inner.forward(&x)?;
                    Ok(if batched {
                        (h, l)
                    } else {
                        (h.squeeze(0)?, l.squeeze(0)?)
                    })
                })?;
                Ok((tensor_to_numpy(py, &hidden)?, tensor_to_numpy(py, &logits)?))
            }

            /// Generate a reply to a rendered prompt. Returns (new token ids, seed used).
            /// `on_token(id)` is called after each token; Ctrl-C is checked at every step.
            #[pyo3(signature = (prompt, images, max_new_tokens, do_sample, temperature, top_k, top_p, repetition_penalty, seed, on_token=None))]
            #[allow(clippy::too_many_arguments)]
            fn generate_reply(
                &self,
                py: Python<'_>,
                prompt: &str,
                images: Vec<PyReadonlyArrayDyn<u8>>,
                max_new_tokens: usize,
                do_sample: bool,
                temperature: f64,
                top_k: Option<usize>,
                top_p: Option<f64>,
                repetition_penalty: Option<f64>,
                seed: Option<u64>,
                on_token: Option<Py<PyAny>>,
            ) -> PyResult<(Vec<u32>, u64)> {
                let imgs = images
                    .iter()
                    .map(rgb_from_numpy)
                    .collect::<Result<Vec<_>>>()
                    .map_err(to_py_err)?;
                let seed = seed.unwrap_or_else(crate::generation::sampler::fresh_seed);
                let sampling = SamplingConfig {
                    do_sample,
                    temperature,
                    top_k,
                    top_p,
                    repetition_penalty,
                };
                sampling.validate().map_err(to_py_err)?;
                let params = TextGenerationParams {
                    max_new_tokens,
                    sampling,
                    seed,
                    stop_tokens: vec![self.inner.tokenizer.special.eos],
                };
                let ids = with_python_hook(py, on_token, |hook: &mut dyn FnMut(u32) -> Result<()>| {
                    self.inner
                        .generate_reply_ids(prompt, &imgs, &params, &mut |t| hook(t))
                })?;
                Ok((ids, seed))
            }

            /// Replies to several rendered prompts (each with its images) as one batch: the new
            /// token ids of each (EOS included if reached). Row `i` samples with `seeds[i]`.
            /// `on_token((row, id))` is called after each token of an unfinished row.
            #[pyo3(signature = (prompts, images, max_new_tokens, do_sample, temperature, top_k, top_p, repetition_penalty, seeds, on_token=None))]
            #[allow(clippy::too_many_arguments)]
            fn generate_replies(
                &self,
                py: Python<'_>,
                prompts: Vec<String>,
                images: Vec<Vec<PyReadonlyArrayDyn<u8>>>,
                max_new_tokens: usize,
                do_sample: bool,
                temperature: f64,
                top_k: Option<usize>,
                top_p: Option<f64>,
                repetition_penalty: Option<f64>,
                seeds: Vec<u64>,
                on_token: Option<Py<PyAny>>,
            ) -> PyResult<Vec<Vec<u32>>> {
                if prompts.len() != images.len() || prompts.len() != seeds.len() {
                    return Err(to_py_err(crate::error::Error::input(format!(
                        "{} prompts, {} image lists and {} seeds: give one of each per request",
                        prompts.len(),
                        images.len(),
                        seeds.len()
                    ))));
                }
                let requests = prompts
                    .into_iter()
                    .zip(&images)
                    .map(|(p, ims)| Ok((p, ims.iter().map(rgb_from_numpy).collect::<Result<Vec<_>>>()?)))
                    .collect::<Result<Vec<_>>>()
                    .map_err(to_py_err)?;
                let sampling = SamplingConfig {
                    do_sample,
                    temperature,
                    top_k,
                    top_p,
                    repetition_penalty,
                };
                sampling.validate().map_err(to_py_err)?;
                let params: Vec<TextGenerationParams> = seeds
                    .iter()
                    .map(|&seed| TextGenerationParams {
                        max_new_tokens,
                        sampling: sampling.clone(),
                        seed,
                        stop_tokens: vec![self.inner.tokenizer.special.eos],
                    })
                    .collect();
                with_python_hook(
                    py,
                    on_token,
                    |hook: &mut dyn FnMut((usize, u32)) -> Result<()>| {
                        self.inner
                            .generate_replies_ids(&requests, &params, &mut |row, t| hook((row, t)))
                    },
                )
            }
        }
    };
}
pub(super) use chat_model_methods;
