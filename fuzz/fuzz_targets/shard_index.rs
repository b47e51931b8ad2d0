#![no_main]
//! `cargo +nightly fuzz run shard_index` (see fuzz/README.md).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| janus_rs::fuzzing::shard_index(data));
