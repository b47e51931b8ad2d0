//! One thread count for the process: rayon's global pool (janus-rs's kernels and candle's f32
//! GEMM) and candle's own pool (its quantized products) are sized alike, once, before the first
//! parallel work — neither pool can be resized after it starts.
//!
//! The count is, in order: what the caller asks (`threads=`), `JANUS_RS_NUM_THREADS`, else
//! candle's default (`RAYON_NUM_THREADS` if set, else the physical cores the process may use).

use std::sync::OnceLock;

use crate::error::{Error, Result};

static THREADS: OnceLock<usize> = OnceLock::new();

const ENV: &str = "JANUS_RS_NUM_THREADS";

/// The thread count in use, if it has been fixed.
pub fn current() -> Option<usize> {
    THREADS.get().copied()
}

/// Fix the thread count (first call) or check that `asked` agrees with it (later calls), and
/// return it.
pub fn configure(asked: Option<usize>) -> Result<usize> {
    if asked == Some(0) {
        return Err(Error::input("threads must be at least 1"));
    }
    let from_env = match std::env::var(ENV) {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(Error::input(format!(
                    "{ENV}={v:?} is not a positive whole number of threads"
                )))
            }
        },
        Err(_) => None,
    };
    let wanted = asked.or(from_env);
    if let Some(n) = current() {
        return match asked {
            Some(a) if a != n => Err(Error::input(format!(
                "threads={a}: this process already runs {n} threads (the count is set once, by \
                 the first model loaded, janus_rs.set_num_threads or {ENV}); start a new \
                 process for another count"
            ))),
            _ => Ok(n),
        };
    }
    let n = wanted.unwrap_or_else(candle_core::utils::get_num_threads);
    let n = *THREADS.get_or_init(|| {
        // candle reads these at each GEMM (RAYON_NUM_THREADS) and when its pool starts
        // (CANDLE_NUM_THREADS).
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
        // Fails only if the global pool already runs (started outside janus-rs): keep it.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
        rayon::current_num_threads()
    });
    Ok(n)
}
