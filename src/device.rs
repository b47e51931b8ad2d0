//! Device and dtype selection from the strings users pass (`"cpu"`, `"cuda:1"`, `"bfloat16"`).

use candle_core::{DType, Device};

use crate::error::{Error, Result};

pub fn parse_device(spec: &str) -> Result<Device> {
    let s = spec.trim().to_ascii_lowercase();
    if s == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match s.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                Error::input(format!(
                    "invalid device {spec:?}: use \"cpu\", \"cuda\" or \"cuda:N\""
                ))
            })?,
        None => {
            return Err(Error::input(format!(
                "invalid device {spec:?}: use \"cpu\", \"cuda\" or \"cuda:N\""
            )))
        }
    };
    cuda_device(ordinal)
}

#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal)
        .map_err(|e| Error::Device(format!("CUDA device {ordinal} is not available: {e}")))
}

/// How many CUDA devices the driver reports; 0 without the `cuda` feature or without a driver.
#[cfg(feature = "cuda")]
pub fn cuda_device_count() -> usize {
    use candle_core::cuda_backend::cudarc::driver::result;
    // cuInit fails cleanly (no panic) when there is no driver or no device.
    let count = std::panic::catch_unwind(|| {
        result::init().ok()?;
        result::device::get_count().ok()
    });
    count.ok().flatten().map_or(0, |n| n.max(0) as usize)
}

#[cfg(not(feature = "cuda"))]
pub fn cuda_device_count() -> usize {
    0
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(ordinal: usize) -> Result<Device> {
    Err(Error::Device(format!(
        "device \"cuda:{ordinal}\" was requested but this build of janus-rs has no CUDA support; \
         use device=\"cpu\" or install the CUDA build"
    )))
}

/// `None` for "auto"/absent: f32 on CPU (bf16 is slow there), bf16 on GPUs.
pub fn parse_dtype(spec: Option<&str>, device: &Device) -> Result<DType> {
    let s = spec.map(|s| s.trim().to_ascii_lowercase());
    match s.as_deref() {
        None | Some("auto") => Ok(if device.is_cpu() {
            DType::F32
        } else {
            DType::BF16
        }),
        Some("float32" | "f32" | "fp32") => Ok(DType::F32),
        Some("bfloat16" | "bf16") => Ok(DType::BF16),
        Some("float16" | "f16" | "fp16" | "half") => Ok(DType::F16),
        Some(other) => Err(Error::input(format!(
            "unsupported dtype {other:?}: use \"float32\", \"bfloat16\", \"float16\" or \"auto\""
        ))),
    }
}

pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "float32",
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        _ => "other",
    }
}

pub fn device_name(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => match device.location() {
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            _ => "cuda".into(),
        },
        Device::Metal(_) => "metal".into(),
    }
}
