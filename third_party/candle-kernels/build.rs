// janus-rs patch of candle-kernels 0.11.1's build script: only the PTX modules are built.
// Upstream also compiles the GGUF MMQ/MMVQ and MoE kernels to SASS into `libmoe.a` (32 MB of
// the CUDA module, a link to libcudart and most of a cold CUDA build); janus-rs never calls
// them. Their launchers in `ffi.rs` are stubs, and janus-rs turns candle's fast quantized
// paths off (`candle_core::quantized::cuda::set_force_dmmv(true)`) so they are never reached.
use cudaforge::{KernelBuilder, Result};
use std::env;
use std::path::PathBuf;

fn main() -> Result<()> {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src");

    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let ptx_path = out_dir.join("ptx.rs");
    let bindings = KernelBuilder::new()
        .source_dir("src")
        .arg("--expt-relaxed-constexpr")
        .arg("-std=c++17")
        .arg("-O3")
        .build_ptx()?;
    bindings.write(&ptx_path)?;
    Ok(())
}
