//! SigLIP ViT in the timm layout the Janus checkpoints use (`vision_model.vision_tower.*`):
//! patch-embedding conv, learned position embedding, no class token, pre-norm blocks with a
//! fused `qkv` projection (with bias) and an exact-erf GELU MLP, then the final LayerNorm.
//! The MAP pooling head (`attn_pool.*`) ships in the checkpoint but is never used.

use candle_core::{Module, Result, Tensor};
use candle_nn::{layer_norm, Conv2dConfig, LayerNorm, VarBuilder};

use crate::kernels::activation::gelu_erf;
use crate::kernels::attention::{attention, Mask};
use crate::kernels::conv::{conv2d, Conv2d};
use crate::kernels::linear::{linear_stored, Linear, WeightStorage};

use crate::loading::SiglipConfig;

struct Attention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
    scale: f64,
}

impl Attention {
    fn new(cfg: &SiglipConfig, vb: VarBuilder, storage: WeightStorage) -> Result<Self> {
        let linear = |i, o, name| linear_stored(i, o, true, vb.pp(name), storage);
        Ok(Self {
            qkv: linear(cfg.width, 3 * cfg.width, "qkv")?,
            proj: linear(cfg.width, cfg.width, "proj")?,
            heads: cfg.heads,
            scale: 1.0 / ((cfg.width / cfg.heads) as f64).sqrt(),
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let hd = c / self.heads;
        // (b, n, 3, heads, hd) -> (3, b, heads, n, hd), q/k/v in that order along 3·width.
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((b, n, 3, self.heads, hd))?
            .permute((2, 0, 3, 1, 4))?;
        let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
        let out = attention(&q, &k, &v, self.scale, Mask::None)?;
        self.proj.forward(&out)
    }
}

struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn new(cfg: &SiglipConfig, vb: VarBuilder, storage: WeightStorage) -> Result<Self> {
        let linear = |i, o, name| linear_stored(i, o, true, vb.pp(name), storage);
        Ok(Self {
            fc1: linear(cfg.width, cfg.mlp_dim, "fc1")?,
            fc2: linear(cfg.mlp_dim, cfg.width, "fc2")?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&gelu_erf(&self.fc1.forward(x)?)?)
    }
}

struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
}

impl Block {
    fn new(cfg: &SiglipConfig, vb: VarBuilder, storage: WeightStorage) -> Result<Self> {
        Ok(Self {
            norm1: layer_norm(cfg.width, cfg.layer_norm_eps, vb.pp("norm1"))?,
            attn: Attention::new(cfg, vb.pp("attn"), storage)?,
            norm2: layer_norm(cfg.width, cfg.layer_norm_eps, vb.pp("norm2"))?,
            mlp: Mlp::new(cfg, vb.pp("mlp"), storage)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.norm1.forward(x)?)?)?;
        &x + self.mlp.forward(&self.norm2.forward(&x)?)?
    }
}

/// `vision_tower`: (b, 3, S, S) pixel values in [-1, 1] → (b, (S/patch)², width).
pub struct SiglipVisionTower {
    patch_embed: Conv2d,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    cfg: SiglipConfig,
}

impl SiglipVisionTower {
    /// `storage` says how the blocks' weight matrices are kept.
    pub fn new(cfg: &SiglipConfig, vb: VarBuilder, storage: WeightStorage) -> Result<Self> {
        let conv_cfg = Conv2dConfig {
            stride: cfg.patch_size,
            ..Default::default()
        };
        let patch_embed = conv2d(
            3,
            cfg.width,
            cfg.patch_size,
            conv_cfg,
            vb.pp("patch_embed.proj"),
        )?;
        let pos_embed = vb.get((1, cfg.num_patches(), cfg.width), "pos_embed")?;
        let blocks = (0..cfg.layers)
            .map(|i| Block::new(cfg, vb.pp(format!("blocks.{i}")), storage))
            .collect::<Result<Vec<_>>>()?;
        let norm = layer_norm(cfg.width, cfg.layer_norm_eps, vb.pp("norm"))?;
        Ok(Self {
            patch_embed,
            pos_embed,
            blocks,
            norm,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &SiglipConfig {
        &self.cfg
    }

    pub fn forward(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let x = self.patch_embed.forward(pixel_values)?; // (b, width, g, g)
        let x = x.flatten_from(2)?.transpose(1, 2)?; // (b, g², width), row-major patches
        let mut x = x.broadcast_add(&self.pos_embed)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        self.norm.forward(&x)
    }
}
