//! One fixed-shape decode step captured as a CUDA graph and replayed (`JANUS_RS_DECODE=graph`).
//!
//! The first step runs eagerly with candle's upload cache on, so every small host→device
//! upload a step makes (kernel dims and strides) is cached on the device; the second step is
//! captured (its uploads become device copies from that cache, its temporaries graph memory
//! nodes allocated and freed inside the graph) and launched; every later step is one launch.
//! Needs the device as `crate::device` creates it: one stream, no event tracking (events are
//! illegal during a capture).

use std::cell::RefCell;

use candle_core::cuda_backend::cudarc::driver::{sys, CudaGraph};
use candle_core::Device;

use crate::error::{Error, Result};

pub(super) struct StepGraph {
    cuda: candle_core::CudaDevice,
    state: RefCell<State>,
    // Keeps candle's upload cache on for this thread while the graph is in use.
    _upload_cache: Box<dyn std::any::Any>,
}

enum State {
    Cold,
    Warm,
    Captured(CudaGraph),
}

impl StepGraph {
    pub(super) fn new(device: &Device) -> Result<Self> {
        let Device::Cuda(cuda) = device else {
            return Err(Error::Device("a CUDA graph needs a CUDA device".into()));
        };
        if cuda.is_event_tracking() {
            return Err(Error::Device(
                "JANUS_RS_DECODE=graph needs janus-rs's own CUDA stream setup, without event \
                 tracking (unset JANUS_RS_CUDA_STREAM)"
                    .into(),
            ));
        }
        let guard = cuda.enable_cuda_graph_htod_cache();
        Ok(Self {
            cuda: cuda.clone(),
            state: RefCell::new(State::Cold),
            _upload_cache: Box::new(guard),
        })
    }

    /// Run one step: eagerly the first time, captured and launched the second, launched after.
    /// `step` must do the same work on the same buffers every time.
    pub(super) fn run(&self, step: impl FnOnce() -> Result<()>) -> Result<()> {
        let mut state = self.state.borrow_mut();
        match &*state {
            State::Cold => {
                step()?;
                *state = State::Warm;
                return Ok(());
            }
            State::Warm => {
                let stream = self.cuda.cuda_stream();
                stream
                    .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
                    .map_err(|e| graph_error("begin the capture", e))?;
                let body = step();
                // End the capture whatever the body did, so the stream is usable again.
                let captured = stream.end_capture(sys::CUgraphInstantiate_flags(0));
                body?;
                let graph = captured
                    .map_err(|e| graph_error("capture the decode step", e))?
                    .ok_or_else(|| Error::Device("the captured decode step is empty".into()))?;
                graph
                    .upload()
                    .map_err(|e| graph_error("upload the graph", e))?;
                *state = State::Captured(graph);
            }
            State::Captured(_) => {}
        }
        let State::Captured(graph) = &*state else {
            unreachable!("captured above")
        };
        graph
            .launch()
            .map_err(|e| graph_error("launch the decode step", e))
    }
}

fn graph_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Device(format!("CUDA graph decode: could not {what}: {e}"))
}
