//! The crate's error type. Every variant maps to one Python exception class
//! (see `python/janus_rs/errors.py` and `src/python/errors.rs`).

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder the caller named (or that a checkpoint must contain) does not exist.
    #[error("{what} not found: {path}")]
    NotFound { what: String, path: PathBuf },

    /// A hub model that is not in the local cache and cannot be downloaded (offline, no
    /// network, unknown repo); the message says what to download and where it looked.
    #[error("{0}")]
    Unavailable(String),

    /// `config.json`, `preprocessor_config.json`, ... is unreadable or has unusable values.
    #[error("invalid config {file}: {msg}")]
    Config { file: PathBuf, msg: String },

    /// Weight files: unreadable, missing tensors, wrong shapes or dtypes.
    #[error("{0}")]
    Weights(String),

    /// `tokenizer.json` is unreadable or lacks a token the model needs.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// An image that cannot be decoded or used.
    #[error("{0}")]
    Image(String),

    /// A prompt (plus the tokens to generate) that does not fit the model's context.
    #[error("{0}")]
    ContextLength(String),

    /// Any other bad argument from the caller: a parameter out of range, a bad array, ...
    #[error("{0}")]
    Input(String),

    /// The requested device or dtype is not available in this build / on this machine.
    #[error("{0}")]
    Device(String),

    /// The caller asked the work to stop (a callback returned an error, e.g. on Ctrl-C).
    #[error("interrupted")]
    Interrupted,

    /// A failure inside the tensor library that is not the caller's fault.
    #[error("internal tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

impl Error {
    pub fn config(file: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Config {
            file: file.into(),
            msg: msg.into(),
        }
    }
    pub fn not_found(what: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Error::NotFound {
            what: what.into(),
            path: path.into(),
        }
    }
    pub fn input(msg: impl Into<String>) -> Self {
        Error::Input(msg.into())
    }
}

/// Shorthand for returning an `Error::Input`.
macro_rules! bail_input {
    ($($arg:tt)*) => { return Err($crate::error::Error::Input(format!($($arg)*))) };
}
pub(crate) use bail_input;
