//! With the `cuda` feature the extension links libcuda, libcublas and libcurand (candle links
//! CUDA at build time; libcudart is not needed since third_party/candle-kernels builds no SASS). PyTorch's CUDA-13 wheels install those into
//! `site-packages/nvidia/cu13/lib`; the RUNPATH below finds them from `site-packages/janus_rs/`.
//! `janus_rs/_backend.py` preloads them with ctypes as a fallback for other layouts.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,$ORIGIN/../nvidia/cu13/lib");
    }
}
