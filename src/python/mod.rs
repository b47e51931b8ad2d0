//! The pyo3 layer: conversions, GIL release, errors. Everything user-facing (argument
//! normalisation, PIL, tqdm, docs) lives in the pure-Python package `janus_rs`.

mod chat;
mod errors;
mod janus_flow;
mod janus_pro;

use std::panic::AssertUnwindSafe;

use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArrayDyn};
use pyo3::prelude::*;

use crate::error::{Error, Result};
use crate::kernels::linear::QuantFormat;
pub(crate) use errors::to_py_err;

/// Run `f` without the GIL; Rust errors and panics become Python exceptions.
pub(crate) fn without_gil<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> Result<T> + Send,
) -> PyResult<T> {
    // Large blocks freed during the call are reused by it (see `memory`), then released.
    let _reuse = crate::memory::Reuse::begin();
    match py.detach(|| std::panic::catch_unwind(AssertUnwindSafe(f))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(to_py_err(e)),
        Err(panic) => Err(errors::panic_to_py_err(panic)),
    }
}

/// A tensor as a new numpy float32 array: one copy, made without the GIL (a 604-token
/// `forward`'s logits are 247 MB), by several threads when large.
pub(crate) fn tensor_to_numpy<'py>(
    py: Python<'py>,
    t: &candle_core::Tensor,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let dims = t.dims().to_vec();
    let data = without_gil(py, || Ok(crate::kernels::to_vec_f32(t)?))?;
    vec_to_numpy(py, data, &dims)
}

pub(crate) fn vec_to_numpy<'py, T: numpy::Element>(
    py: Python<'py>,
    data: Vec<T>,
    dims: &[usize],
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    let arr = ArrayD::from_shape_vec(IxDyn(dims), data)
        .map_err(|e| to_py_err(Error::input(e.to_string())))?;
    Ok(arr.into_pyarray(py))
}

/// A numpy array as (row-major data, shape).
pub(crate) fn numpy_to_vec<T: numpy::Element + Copy>(
    a: &PyReadonlyArrayDyn<T>,
) -> (Vec<T>, Vec<usize>) {
    let view = a.as_array();
    (view.iter().copied().collect(), view.shape().to_vec())
}

/// `quantize=`: `None`, or one of the formats by name.
pub(crate) fn parse_quantize(spec: Option<&str>) -> Result<Option<QuantFormat>> {
    match spec {
        None => Ok(None),
        Some(name) => QuantFormat::parse(name).map(Some).ok_or_else(|| {
            Error::input(format!(
                "unsupported quantize {name:?}: use None, \"q8_0\", \"q6_k\" or \"q4_k\""
            ))
        }),
    }
}

/// Facts about how the weights are kept, for `info()`.
pub(crate) fn set_weight_facts(
    d: &Bound<'_, pyo3::types::PyDict>,
    llm: &crate::models::llama::Llama,
    weights: &crate::pipelines::understanding::WeightPlan,
) -> PyResult<()> {
    d.set_item("dtype", crate::device::dtype_name(weights.dtype))?;
    d.set_item(
        "compute_dtype",
        crate::device::dtype_name(weights.compute_dtype),
    )?;
    d.set_item("quantize", weights.quantize.map(QuantFormat::name))?;
    d.set_item("llm_weight_formats", llm.weight_formats())?;
    d.set_item("quant_cache", &weights.cache_status)?;
    d.set_item(
        "quant_cache_path",
        weights.cache_path.as_ref().map(|p| p.display().to_string()),
    )
}

/// Fix the process's thread count (`None`: `JANUS_RS_NUM_THREADS`, else the physical cores),
/// or check a later request against it; returns the count.
#[pyfunction]
#[pyo3(signature = (threads=None))]
fn set_num_threads(threads: Option<usize>) -> PyResult<usize> {
    crate::threads::configure(threads).map_err(to_py_err)
}

/// The process's thread count, or `None` before the first model load / `set_num_threads`.
#[pyfunction]
fn num_threads() -> Option<usize> {
    crate::threads::current()
}

/// Number of usable CUDA devices (0 in a CPU build or where the driver finds none).
#[pyfunction]
fn cuda_device_count() -> usize {
    crate::device::cuda_device_count()
}

/// A local folder as it is, or a hub id resolved to a folder of the Hugging Face cache
/// (downloading what is missing unless offline). `kind` is "janus" or "diffusers_vae".
#[pyfunction]
#[pyo3(signature = (name_or_path, revision=None, local_files_only=false, cache_dir=None, token=None, progress=true, kind="janus"))]
#[allow(clippy::too_many_arguments)]
fn resolve_pretrained(
    py: Python<'_>,
    name_or_path: String,
    revision: Option<String>,
    local_files_only: bool,
    cache_dir: Option<std::path::PathBuf>,
    token: Option<String>,
    progress: bool,
    kind: &str,
) -> PyResult<String> {
    use crate::loading::hub;
    let files = match kind {
        "janus" => hub::JANUS_FILES,
        "diffusers_vae" => hub::DIFFUSERS_VAE_FILES,
        other => {
            return Err(to_py_err(Error::input(format!(
                "kind must be \"janus\" or \"diffusers_vae\", got {other:?}"
            ))))
        }
    };
    let opts = hub::HubOptions {
        revision,
        local_files_only,
        cache_dir,
        token,
        progress,
    };
    let dir = without_gil(py, move || hub::resolve(&name_or_path, &files, &opts))?;
    Ok(dir.display().to_string())
}

// The CPU build is `janus_rs._native`; the CUDA build is a second module, `janus_rs._native_cuda`,
// imported only when a CUDA device is asked for (it links libcuda, so it cannot be imported on
// machines without the NVIDIA driver).
#[pymodule]
#[cfg_attr(feature = "cuda", pyo3(name = "_native_cuda"))]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("cuda_compiled", cfg!(feature = "cuda"))?;
    m.add_function(wrap_pyfunction!(cuda_device_count, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(resolve_pretrained, m)?)?;
    m.add_class::<janus_pro::JanusProModel>()?;
    m.add_class::<janus_flow::JanusFlowModel>()?;
    m.add_function(wrap_pyfunction!(janus_pro::decode_image, m)?)?;
    Ok(())
}
