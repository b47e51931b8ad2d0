//! Entry points for the coverage-guided fuzz targets in `fuzz/` (cargo fuzz) and for the
//! regression test that replays their seed and crash corpora (`tests/fuzz_regressions.rs`).
//!
//! Each takes arbitrary bytes and must return (an `Err` is fine) without panicking, aborting
//! or allocating without bound. Not part of the public API.
#![doc(hidden)]

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use crate::loading::VaeConfig;
use crate::loading::{
    pickle_guard, Checkpoint, ImageProcessorConfig, JanusConfig, JanusFlowConfig, ProcessorConfig,
};
use crate::preprocess::image::{ImageProcessor, RgbImage};

/// The config parsers: `config.json` (Janus-Pro in both layouts, JanusFlow), the diffusers
/// VAE `config.json`, `preprocessor_config.json`, `processor_config.json`.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("config.json");
    let _ = JanusConfig::from_json(text, file);
    let _ = JanusFlowConfig::from_json(text, file);
    let _ = VaeConfig::from_json(text, file);
    if let Ok(cfg) = ImageProcessorConfig::from_json(text, file) {
        // A config that validates must give a usable image processor.
        let processor = ImageProcessor::new(&cfg);
        let _ = processor.target_size(7, 3);
    }
    let _ = ProcessorConfig::from_json(text, file);
}

/// A torch `.bin` (zip of pickles): the pickle allowlist, then candle's reader, then every
/// tensor read as f32.
pub fn torch_pickle(data: &[u8]) {
    let file = scratch_file("pytorch_model.bin", data);
    if pickle_guard::check_torch_pickle(&file).is_ok() {
        if let Ok(ckpt) = Checkpoint::open(&file) {
            read_every_tensor(ckpt);
        }
    }
}

/// A `.safetensors` file: header validation, then every tensor read as f32.
pub fn safetensors(data: &[u8]) {
    let file = scratch_file("model.safetensors", data);
    if let Ok(ckpt) = Checkpoint::open(&file) {
        read_every_tensor(ckpt);
    }
}

/// A `model.safetensors.index.json` next to one small valid shard (`shard.safetensors`):
/// index parsing, shard-name checks (no paths outside the folder) and opening the shards.
pub fn shard_index(data: &[u8]) {
    let dir = scratch_dir();
    let shard = dir.join("shard.safetensors");
    if !shard.exists() {
        let _ = std::fs::write(&shard, tiny_safetensors());
    }
    let index = dir.join("model.safetensors.index.json");
    if std::fs::write(&index, data).is_ok() {
        if let Ok(ckpt) = Checkpoint::open(&index) {
            read_every_tensor(ckpt);
        }
    }
}

/// Image bytes: decoding (with its size limits), then the understanding preprocessing
/// (resize, pad to a square, normalise) at a small size.
pub fn image(data: &[u8]) {
    let Ok(img) = RgbImage::decode(data) else {
        return;
    };
    let Ok(cfg) = ImageProcessorConfig::from_json(r#"{"image_size": 32}"#, Path::new("p.json"))
    else {
        return;
    };
    let processor = ImageProcessor::new(&cfg);
    if let Ok(resized) = processor.resize(&img) {
        let square = processor.expand_to_square(&resized);
        let pixels = processor.normalize(&square);
        assert_eq!(pixels.len(), 3 * 32 * 32);
    }
}

/// Reads every tensor of at most 16 M elements. The model loader only reads tensors whose
/// stored shape equals the one its config implies, so absurd shapes never reach a read there.
fn read_every_tensor(ckpt: Checkpoint) {
    let keys: Vec<String> = ckpt
        .keys()
        .filter(|k| {
            ckpt.shape(k)
                .and_then(|s| s.iter().try_fold(1usize, |n, &d| n.checked_mul(d)))
                .is_some_and(|n| n <= 1 << 24)
        })
        .map(str::to_string)
        .collect();
    let vb = ckpt.var_builder(DType::F32, &Device::Cpu);
    for key in keys {
        let _ = vb.get_unchecked_dtype(&key, DType::F32);
    }
}

/// A safetensors file holding one 2×2 f32 tensor named `w`.
fn tiny_safetensors() -> Vec<u8> {
    let header = br#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header);
    out.extend_from_slice(&[0u8; 16]);
    out
}

/// A folder of this thread's own (the regression tests run targets on several threads).
fn scratch_dir() -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    let dir = base.join(format!("janus-rs-fuzz-{}-{thread}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    let file = scratch_dir().join(name);
    let _ = std::fs::write(&file, data);
    file
}
