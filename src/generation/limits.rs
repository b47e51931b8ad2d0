//! Request limits checked before anything large is allocated.
//!
//! The KV cache of a request is allocated in full on its first step: for Janus-Pro-1B in f32 it
//! is 2 (k, v) × 24 layers × rows × 16 heads × positions × 128 × 4 bytes — 7.5 GB for 16 images
//! (32 CFG rows × 600 positions). A request whose cache would not fit is refused with an error
//! that says what it needed, instead of being killed by the OOM killer halfway.
//!
//! The limit is `JANUS_RS_MAX_KV_CACHE_BYTES` when set (read at every call, so it can be changed
//! at run time); otherwise, on CPU, 90% of the memory the kernel reports as available
//! (`MemAvailable` in /proc/meminfo) when the call starts. GPUs have no default limit (candle
//! reports an out-of-memory error from the allocator without killing the process).

use candle_core::Device;

use crate::error::{Error, Result};
use crate::models::llama::Llama;

pub const KV_CACHE_LIMIT_VAR: &str = "JANUS_RS_MAX_KV_CACHE_BYTES";

/// Bytes of the KV cache for `rows` sequences of `positions` positions.
pub fn kv_cache_bytes(llm: &Llama, rows: usize, positions: usize) -> u128 {
    let cfg = llm.config();
    2 * cfg.num_hidden_layers as u128
        * rows as u128
        * cfg.num_kv_heads() as u128
        * positions as u128
        * cfg.head_dim() as u128
        * llm.dtype().size_in_bytes() as u128
}

/// The limit in bytes and where it comes from.
fn limit(device: &Device) -> Result<Option<(u128, &'static str)>> {
    if let Ok(v) = std::env::var(KV_CACHE_LIMIT_VAR) {
        return v
            .trim()
            .parse::<u128>()
            .map(|b| Some((b, KV_CACHE_LIMIT_VAR)))
            .map_err(|_| {
                Error::input(format!(
                    "{KV_CACHE_LIMIT_VAR}={v:?} is not a whole number of bytes"
                ))
            });
    }
    if !device.is_cpu() {
        return Ok(None);
    }
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u128>()
                    .ok()
            })
    });
    Ok(available.map(|kib| (kib * 1024 * 9 / 10, "90% of the memory available now")))
}

/// Refuse a request whose KV cache (`rows` × `positions`) would exceed the limit.
pub fn check_kv_cache(llm: &Llama, rows: usize, positions: usize, device: &Device) -> Result<()> {
    let need = kv_cache_bytes(llm, rows, positions);
    if let Some((limit, source)) = limit(device)? {
        if need > limit {
            let gb = |b: u128| b as f64 / 1e9;
            return Err(Error::input(format!(
                "this request needs a {:.2} GB KV cache ({rows} sequence(s) × {positions} positions) but \
                 the limit is {:.2} GB ({source}); ask for fewer images or tokens, or raise {KV_CACHE_LIMIT_VAR}",
                gb(need),
                gb(limit),
            )));
        }
    }
    Ok(())
}
