//! How the LLM's weight matrices are loaded and accounted for: float, bf16-stored, quantized, or
//! taken from the quantized-weights cache.

use super::*;

/// How the layers are built: fused projections (GPUs), how weight matrices are kept, and
/// already quantized matrices to take instead of quantizing (the quantized-weights cache).
#[derive(Clone, Copy)]
pub(super) struct LoadOpts<'a> {
    pub(super) fuse: bool,
    pub(super) storage: WeightStorage,
    pub(super) cache: Option<&'a QuantizedWeights>,
}

/// A projection (no bias): from the quantized-weights cache when it has it (with the expected
/// shape and format), else loaded as `opts.storage` says.
pub(super) fn projection(
    in_dim: usize,
    out_dim: usize,
    vb: VarBuilder,
    opts: LoadOpts,
) -> Result<Linear> {
    if let (WeightStorage::Quantized { format, .. }, Some(cache)) = (opts.storage, opts.cache) {
        let name = format!("{}.weight", vb.prefix());
        if let Some(q) = cache.get(&name) {
            if q.shape().dims() != [out_dim, in_dim] || q.dtype() != format.ggml() {
                candle_core::bail!(
                    "quantized-weights cache: {name} is {:?} {:?}, expected ({out_dim}, {in_dim}) {:?}",
                    q.shape(),
                    q.dtype(),
                    format.ggml()
                );
            }
            return Linear::from_qtensor(q, None, name);
        }
    }
    linear_stored(in_dim, out_dim, false, vb, opts.storage)
}

impl Llama {
    /// How many weight matrices (projections and `lm_head`) are kept in each format
    /// ("float32", "bfloat16", "q4_k", ...).
    pub fn weight_formats(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut counts = std::collections::BTreeMap::new();
        self.for_each_matrix(&mut |l: &Linear| *counts.entry(l.format_name()).or_insert(0) += 1);
        counts
    }

    /// The quantized matrices with their checkpoint names (for the quantized-weights cache).
    pub fn quantized_weights(
        &self,
    ) -> Vec<(String, std::sync::Arc<candle_core::quantized::QTensor>)> {
        let mut out = Vec::new();
        let mut add = |l: &Linear| {
            if let Some((name, q)) = l.quantized_weight() {
                out.push((name.to_string(), q));
            }
        };
        self.for_each_matrix(&mut add);
        out
    }

    fn for_each_matrix(&self, f: &mut dyn FnMut(&Linear)) {
        for layer in &self.layers {
            match &layer.self_attn.qkv {
                QkvProj::Fused(l) => f(l),
                QkvProj::Separate { q, k, v } => [q, k, v].into_iter().for_each(&mut *f),
            }
            f(&layer.self_attn.o_proj);
            match &layer.mlp.gate_up {
                GateUp::Fused { gate_up, .. } => f(gate_up),
                GateUp::Separate { gate, up } => [gate, up].into_iter().for_each(&mut *f),
            }
            f(&layer.mlp.down_proj);
        }
        f(&self.lm_head);
    }
}
