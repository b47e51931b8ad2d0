//! The LLM's key/value cache: one per request, pre-allocated to the request's length, written
//! in place, and forkable after a shared prefix. Every model that runs the LLM uses this one.

use candle_core::{Result, Tensor};

/// Per-layer key/value cache, allocated once for the whole request and written in place.
///
/// `Clone` shares the buffers (see [`KvCache::fork`]).
#[derive(Clone)]
pub struct KvCache {
    pub(super) layers: Vec<candle_nn::kv_cache::KvCache>,
    pub(super) capacity: usize,
    /// For left-padded rows: the padding and (rows, 1, 1, capacity) with each row's padding
    /// keys hidden, built once; a single-token step attends to its first `past + 1` keys.
    pub(super) pad_mask: Option<(Vec<usize>, Tensor)>,
}

impl KvCache {
    pub fn new(num_layers: usize, capacity: usize) -> Self {
        // dim 2 of (batch, kv_heads, seq, head_dim) is the sequence axis.
        let layers = (0..num_layers)
            .map(|_| candle_nn::kv_cache::KvCache::new(2, capacity))
            .collect();
        Self {
            layers,
            capacity,
            pad_mask: None,
        }
    }

    /// Number of positions already in the cache (the position of the next token).
    pub fn seq_len(&self) -> usize {
        self.layers
            .first()
            .map_or(0, |l| l.k_cache().current_seq_len())
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// A cache that continues from this one's current length over the *same* buffers:
    /// appending to the fork writes the positions after `self.seq_len()` in place, which
    /// `self` never reads (it only sees its own length). Dropping the fork is therefore a
    /// truncation back to `self`'s length, without copying the prefix. Used to run different
    /// suffixes after one shared, cached prefix (JanusFlow's prompt). Appending past the
    /// capacity still works but reallocates (the fork then no longer shares the buffers).
    pub fn fork(&self) -> Self {
        self.clone()
    }
}

impl KvCache {
    /// Append the caches of consecutive row groups, each filled by one prefill of the same
    /// length, as one batch: layer by layer, each group's layer freed once copied, so the groups
    /// and this cache together hold little more than this cache alone.
    pub(super) fn append_row_groups(&mut self, groups: &mut [KvCache]) -> Result<()> {
        for (l, layer) in self.layers.iter_mut().enumerate() {
            let mut ks = Vec::with_capacity(groups.len());
            let mut vs = Vec::with_capacity(groups.len());
            for group in groups.iter_mut() {
                let empty = candle_nn::kv_cache::KvCache::new(2, group.capacity);
                let filled = std::mem::replace(&mut group.layers[l], empty);
                match (filled.k()?, filled.v()?) {
                    (Some(k), Some(v)) => {
                        ks.push(k);
                        vs.push(v);
                    }
                    _ => candle_core::bail!("a row group's cache of layer {l} is empty"),
                }
            }
            layer.append(&Tensor::cat(&ks, 0)?, &Tensor::cat(&vs, 0)?)?;
        }
        Ok(())
    }
}
