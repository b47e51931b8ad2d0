//! A `Linear` layer that folds all leading dimensions into one matrix before multiplying.
//!
//! candle's `Linear` runs a (b, t, in) input as b separate (t, in) products against a
//! broadcast weight, which reads the weight b times; during decoding t = 1 and b is the number
//! of rows (2 per image with CFG), so one (b·t, in) product is up to b× cheaper.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
pub struct Linear(candle_nn::Linear);

impl Linear {
    pub fn from_weights(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self(candle_nn::Linear::new(weight, bias))
    }
}

pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    candle_nn::linear(in_dim, out_dim, vb).map(Linear)
}

pub fn linear_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    candle_nn::linear_no_bias(in_dim, out_dim, vb).map(Linear)
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        if dims.len() <= 2 {
            return self.0.forward(x);
        }
        let (lead, last) = dims.split_at(dims.len() - 1);
        let y = self.0.forward(&x.reshape(((), last[0]))?)?;
        let mut out = lead.to_vec();
        out.push(y.dim(1)?);
        y.reshape(out)
    }
}
