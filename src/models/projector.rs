//! The Janus projectors (`aligner`, `gen_aligner`).

use crate::kernels::activation::gelu_erf;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::kernels::linear::{linear_stored, Linear, WeightStorage};

/// `MlpProjector` with `projector_type="mlp_gelu"`: Linear, then (GELU, Linear) × (depth − 1).
/// Keys `layers.0`, `layers.2`, ... (the GELUs at odd indices have no parameters).
pub struct MlpProjector {
    layers: Vec<Linear>,
}

impl MlpProjector {
    pub fn new(
        input_dim: usize,
        n_embed: usize,
        depth: usize,
        vb: VarBuilder,
        storage: WeightStorage,
    ) -> Result<Self> {
        let vb = vb.pp("layers");
        let mut layers = vec![linear_stored(
            input_dim,
            n_embed,
            true,
            vb.pp("0"),
            storage,
        )?];
        for i in 1..depth {
            layers.push(linear_stored(
                n_embed,
                n_embed,
                true,
                vb.pp(2 * i),
                storage,
            )?);
        }
        Ok(Self { layers })
    }
}

impl Module for MlpProjector {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.layers[0].forward(x)?;
        for layer in &self.layers[1..] {
            x = layer.forward(&gelu_erf(&x)?)?;
        }
        Ok(x)
    }
}
