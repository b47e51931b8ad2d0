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
    let unavailable = |e: candle_core::Error| {
        Error::Device(format!(
            "CUDA device {ordinal} is not available: {}",
            crate::error::candle_message(&e)
        ))
    };
    // candle's fast GGUF paths live in kernels this build leaves out (third_party/candle-kernels).
    candle_core::quantized::cuda::set_force_dmmv(true);
    if std::env::var("JANUS_RS_CUDA_STREAM").as_deref() == Ok("per-thread") {
        // candle's default (per-thread default stream, event tracking on): kept to measure against.
        return Device::new_cuda(ordinal).map_err(unavailable);
    }
    // One explicit stream for every thread that uses the model (the per-thread default stream
    // would leave weights uploaded on one thread unordered with their use on another), and no
    // CUDA events around every allocation: with one stream they only cost driver calls, and
    // they are illegal while a CUDA graph is being captured.
    let device = Device::new_cuda_with_stream(ordinal).map_err(unavailable)?;
    if let Device::Cuda(cuda) = &device {
        // SAFETY: every tensor of this device is created on its single stream, after this call.
        unsafe { cuda.disable_event_tracking() };
        keep_freed_memory_in_pool(cuda);
    }
    Ok(device)
}

/// Stops the stream-ordered allocator from handing freed memory back to the driver at every
/// synchronisation, so steady-state decode steps allocate from the pool without driver calls.
#[cfg(feature = "cuda")]
fn keep_freed_memory_in_pool(cuda: &candle_core::CudaDevice) {
    use candle_core::cuda_backend::cudarc::driver::sys;
    let stream = cuda.cuda_stream();
    let context = stream.context();
    if !context.has_async_alloc() {
        return;
    }
    // SAFETY: plain driver calls on this context's device; failure only leaves the default.
    unsafe {
        let mut pool = std::ptr::null_mut();
        if sys::cuDeviceGetDefaultMemPool(&mut pool, context.cu_device())
            == sys::CUresult::CUDA_SUCCESS
        {
            let mut threshold = u64::MAX;
            sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                (&mut threshold as *mut u64).cast(),
            );
        }
    }
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

/// A dtype name; `None` for "auto" or absent — the loader then picks the default for the device
/// and the checkpoint (`pipelines::understanding::WeightPlan`).
pub fn parse_dtype(spec: Option<&str>) -> Result<Option<DType>> {
    let s = spec.map(|s| s.trim().to_ascii_lowercase());
    match s.as_deref() {
        None | Some("auto") => Ok(None),
        Some("float32" | "f32" | "fp32") => Ok(Some(DType::F32)),
        Some("bfloat16" | "bf16") => Ok(Some(DType::BF16)),
        Some("float16" | "f16" | "fp16" | "half") => Ok(Some(DType::F16)),
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
