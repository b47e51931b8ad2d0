//! Additive attention masks of the LLM beyond the plain causal one: left-padded rows, hidden
//! key ranges (JanusFlow's unconditional rows), and the fixed-shape decode step's mask over the
//! cache's whole capacity.

use candle_core::{DType, Device, Result, Tensor};

/// Additive mask (rows, 1, t, past + t) for queries at positions `past..past + t`: causal
/// (−∞ above the diagonal), and for row r the keys in `hidden[r]` hidden from every query (the
/// 2-D `attention_mask` of transformers, zeros at `hidden[r]`). Hidden keys get the dtype's
/// lowest finite value rather than −∞, so a query that can see nothing else still has a finite
/// softmax.
pub fn causal_mask_hiding_keys(
    hidden: &[std::ops::Range<usize>],
    t: usize,
    past: usize,
    dtype: DType,
    dev: &Device,
) -> Result<Tensor> {
    let total = past + t;
    let low = lowest(dtype);
    let mut mask = Vec::with_capacity(hidden.len() * t * total);
    for keys in hidden {
        for i in 0..t {
            let q = past + i;
            mask.extend((0..total).map(|j| {
                if j > q {
                    f32::NEG_INFINITY
                } else if keys.contains(&j) {
                    low
                } else {
                    0.0
                }
            }));
        }
    }
    Tensor::from_vec(mask, (hidden.len(), 1, t, total), dev)?.to_dtype(dtype)
}

/// Additive mask (rows, 1, 1, capacity) for fixed-shape decode steps after a prefill of
/// `prompt_len` positions: row r's left padding (`pads[r]` keys) hidden with the lowest finite
/// value as in [`padded_causal_mask`], the prompt visible, every later key −∞ until the step
/// at that position opens it.
pub fn static_decode_mask(
    pads: &[usize],
    prompt_len: usize,
    capacity: usize,
    dtype: DType,
    dev: &Device,
) -> Result<Tensor> {
    let hidden = lowest(dtype);
    let mut mask = Vec::with_capacity(pads.len() * capacity);
    for &pad in pads {
        mask.extend((0..capacity).map(|j| {
            if j >= prompt_len {
                f32::NEG_INFINITY
            } else if j < pad {
                hidden
            } else {
                0.0
            }
        }));
    }
    Tensor::from_vec(mask, (pads.len(), 1, 1, capacity), dev)?.to_dtype(dtype)
}

/// The most negative finite value of `dtype`, as f32.
fn lowest(dtype: DType) -> f32 {
    match dtype {
        DType::F16 => -65504.0,
        DType::BF16 => -3.38e38,
        _ => f32::MIN,
    }
}

/// Additive mask (b, 1, t, past + t): causal, and a row's padding keys hidden from its real
/// tokens. Padding queries still see themselves, so no softmax row is empty.
pub(crate) fn padded_causal_mask(
    pads: &[usize],
    t: usize,
    past: usize,
    dtype: DType,
    dev: &Device,
) -> Result<Tensor> {
    let total = past + t;
    let hidden = lowest(dtype);
    let mut mask = Vec::with_capacity(pads.len() * t * total);
    for &pad in pads {
        for i in 0..t {
            let q = past + i;
            mask.extend((0..total).map(|j| {
                if j > q {
                    f32::NEG_INFINITY
                } else if j < pad && q >= pad {
                    hidden
                } else {
                    0.0
                }
            }));
        }
    }
    Tensor::from_vec(mask, (pads.len(), 1, t, total), dev)?.to_dtype(dtype)
}

/// Additive mask (rows, 1, 1, capacity) hiding each row's padding keys (`pads[r]` of them) with
/// the lowest finite value: the key part of [`padded_causal_mask`] for a query past the padding.
pub(crate) fn pad_keys_mask(
    pads: &[usize],
    capacity: usize,
    dtype: DType,
    dev: &Device,
) -> Result<Tensor> {
    let hidden = lowest(dtype);
    let mask: Vec<f32> = pads
        .iter()
        .flat_map(|&pad| (0..capacity).map(move |j| if j < pad { hidden } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (pads.len(), 1, 1, capacity), dev)?.to_dtype(dtype)
}
