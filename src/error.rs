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
    #[error("internal tensor error: {}", candle_message(.0))]
    Candle(#[from] candle_core::Error),
}

/// The innermost message of a candle error, without the backtrace candle attaches when
/// `RUST_BACKTRACE` is set (dozens of frames that help nobody reading an exception) and without
/// its path/context wrapping.
pub fn candle_message(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. }
        | candle_core::Error::WithPath { inner, .. }
        | candle_core::Error::Context { inner, .. } => candle_message(inner),
        other => other.to_string(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_leave_candles_backtrace_out() {
        // What candle builds under RUST_BACKTRACE=1: the message wrapped with ~50 frames.
        let inner = candle_core::Error::Msg("unsupported dtype BF16 for op matmul".into());
        let with_bt = candle_core::Error::WithBacktrace {
            inner: Box::new(inner),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        }
        .context("while running the vision tower");
        assert!(with_bt.to_string().lines().count() > 3);
        let msg = Error::Candle(with_bt).to_string();
        assert_eq!(
            msg,
            "internal tensor error: unsupported dtype BF16 for op matmul"
        );
    }
}
