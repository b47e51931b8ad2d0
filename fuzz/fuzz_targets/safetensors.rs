#![no_main]
//! `cargo +nightly fuzz run safetensors` (see fuzz/README.md).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| janus_rs::fuzzing::safetensors(data));
