//! Replays the fuzz targets' seed corpora (`fuzz/seeds/<target>/`) and every input that once
//! crashed a target (`fuzz/regressions/<target>/`) through the same entry points the fuzzers
//! call, so the bugs they found stay fixed. Run by `cargo test`; fuzzing itself is manual
//! (fuzz/README.md).

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for corpus in ["seeds", "regressions"] {
        let dir = root.join(corpus).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target}: {} panics", file.display());
            count += 1;
        }
    }
    assert!(count > 0, "no inputs for the {target} fuzz target");
}

#[test]
fn config_inputs() {
    replay("config", janus_rs::fuzzing::config);
}

#[test]
fn torch_pickle_inputs() {
    replay("torch_pickle", janus_rs::fuzzing::torch_pickle);
}

#[test]
fn safetensors_inputs() {
    replay("safetensors", janus_rs::fuzzing::safetensors);
}

#[test]
fn shard_index_inputs() {
    replay("shard_index", janus_rs::fuzzing::shard_index);
}

#[test]
fn image_inputs() {
    replay("image", janus_rs::fuzzing::image);
}

/// The hand-written torch `.bin` seed is a real state dict (so fuzzing starts from inputs that
/// reach the tensor reader), and the `os.system` one is refused by the pickle guard.
#[test]
fn torch_pickle_seeds_are_what_they_claim() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/torch_pickle");
    let good = seeds.join("state_dict.bin");
    janus_rs::loading::pickle_guard::check_torch_pickle(&good).unwrap();
    let ckpt = janus_rs::loading::Checkpoint::open(&good).unwrap();
    assert_eq!(ckpt.shape("w"), Some(&[2usize, 3][..]));
    assert_eq!(ckpt.shape("b"), Some(&[3usize][..]));
    let evil = janus_rs::loading::pickle_guard::check_torch_pickle(&seeds.join("os_system.bin"));
    assert!(evil.unwrap_err().to_string().contains("os.system"));
}
