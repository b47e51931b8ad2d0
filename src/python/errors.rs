//! Rust errors → the Python exception classes of `janus_rs.errors`.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::error::Error;

fn class_name(e: &Error) -> &'static str {
    match e {
        Error::NotFound { .. } | Error::Unavailable(_) => "NotFoundError",
        Error::Config { .. } => "ConfigError",
        Error::Weights(_) => "WeightsError",
        Error::Tokenizer(_) => "TokenizerError",
        Error::Image(_) => "ImageError",
        Error::ContextLength(_) => "ContextLengthError",
        Error::Input(_) => "InputError",
        Error::Device(_) => "DeviceError",
        Error::Interrupted => "InterruptedError_",
        Error::Candle(_) => "InternalError",
    }
}

pub fn to_py_err(e: Error) -> PyErr {
    if let Error::Interrupted = e {
        return pyo3::exceptions::PyKeyboardInterrupt::new_err("generation interrupted");
    }
    let msg = e.to_string();
    Python::attach(|py| {
        let class = py
            .import("janus_rs.errors")
            .and_then(|m| m.getattr(class_name(&e)))
            .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
        match class {
            Ok(class) => PyErr::from_type(class, msg),
            // The pure-Python package is missing (native module imported on its own).
            Err(_) => match e {
                Error::Candle(_) | Error::Device(_) => PyRuntimeError::new_err(msg),
                _ => PyValueError::new_err(msg),
            },
        }
    })
}

pub fn panic_to_py_err(payload: Box<dyn std::any::Any + Send>) -> PyErr {
    let what = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    to_py_err(Error::Candle(candle_core::Error::Msg(format!(
        "unexpected internal failure (please report it): {what}"
    ))))
}
