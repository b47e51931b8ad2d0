//! Per-stage wall-clock timers, switched on with `JANUS_RS_PROFILE=1` (read once per process).
//!
//! Stages accumulate (count, total) until [`report`] prints a table to stderr and resets; the
//! top-level calls (`understand`, `generate`, `decode`) report when they finish. While profiling,
//! GPU work is synchronised at every stage boundary so each stage is charged for its own
//! kernels; when profiling is off a stage costs one relaxed atomic load.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use candle_core::Device;

static STATE: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 off, 2 on
static TOTALS: Mutex<Vec<(&'static str, u32, Duration)>> = Mutex::new(Vec::new());

pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let on = std::env::var("JANUS_RS_PROFILE")
                .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"));
            STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
    }
}

/// A running stage; its time is recorded when it is dropped.
pub struct Stage<'a> {
    name: &'static str,
    device: &'a Device,
    start: Instant,
}

/// Start timing `name` (None when profiling is off).
pub fn stage<'a>(name: &'static str, device: &'a Device) -> Option<Stage<'a>> {
    if !enabled() {
        return None;
    }
    let _ = device.synchronize();
    Some(Stage {
        name,
        device,
        start: Instant::now(),
    })
}

impl Drop for Stage<'_> {
    fn drop(&mut self) {
        let _ = self.device.synchronize();
        let elapsed = self.start.elapsed();
        let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
        match totals.iter_mut().find(|(n, _, _)| *n == self.name) {
            Some(entry) => {
                entry.1 += 1;
                entry.2 += elapsed;
            }
            None => totals.push((self.name, 1, elapsed)),
        }
    }
}

/// Print the stages recorded since the last report (if profiling is on) and reset them.
pub fn report(what: &str) {
    if !enabled() {
        return;
    }
    let rows = std::mem::take(&mut *TOTALS.lock().unwrap_or_else(|e| e.into_inner()));
    let mut text = format!("[janus-rs profile] {what}\n");
    text += &format!(
        "  {:<24} {:>7} {:>11} {:>11}\n",
        "stage", "calls", "total ms", "ms/call"
    );
    for (name, count, total) in rows {
        let ms = total.as_secs_f64() * 1e3;
        text += &format!(
            "  {name:<24} {count:>7} {ms:>11.2} {:>11.3}\n",
            ms / f64::from(count.max(1))
        );
    }
    eprint!("{text}");
}
