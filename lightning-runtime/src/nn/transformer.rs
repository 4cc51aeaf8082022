//! [`MultiHeadAttention`] and a pre-LN [`TransformerBlock`], with GPT-2's parameter names.
//!
//! A block `h.0` of GPT-2 holds `ln_1`, `attn.c_attn` (q, k and v in one projection),
//! `attn.c_proj`, `ln_2`, `mlp.c_fc` and `mlp.c_proj`, each with `weight` and `bias`; these
//! layers use the same names under their `VarBuilder` prefix, so a GPT-2 checkpoint's
//! tensors load by name. One difference: GPT-2's `Conv1D` stores its weight as
//! (in, out), and these linear layers as (out, in), as `torch.nn.Linear` and candle-nn do;
//! transpose the four `c_attn`, `c_proj` and `c_fc` weights of each block when converting
//! (Hugging Face's own GPT-2 conversions do the same).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::{
    dropout, gelu_tanh, is_training, layer_norm, linear, self_attention_packed, AttentionOptions, LayerNorm, Linear,
};
use crate::devices::relocate::{Relocate, Relocation};

/// The sizes of a [`TransformerBlock`] and its attention.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TransformerConfig {
    /// The embedding width `C` (GPT-2's `n_embd`).
    pub n_embd: usize,
    /// Heads; `n_embd` must be a multiple of it.
    pub n_head: usize,
    /// Dropout on the attention probabilities (`attn_pdrop`) while training.
    pub attn_dropout: f64,
    /// Dropout on each residual branch's output (`resid_pdrop`) while training.
    pub resid_dropout: f64,
    /// The layer norms' epsilon (GPT-2: 1e-5).
    pub layer_norm_eps: f64,
    /// Whether position `t` attends only to positions `..=t` (a decoder, GPT's; the default),
    /// or to every position (an encoder, BERT's).
    pub causal: bool,
}

impl TransformerConfig {
    /// `n_embd` wide, `n_head` heads, causal, no dropout, epsilon 1e-5.
    pub fn new(n_embd: usize, n_head: usize) -> Self {
        TransformerConfig { n_embd, n_head, attn_dropout: 0.0, resid_dropout: 0.0, layer_norm_eps: 1e-5, causal: true }
    }

    /// Causal attention (`true`, the default: a decoder) or attention over the whole
    /// sequence (`false`: an encoder, for classifying or tagging a sequence).
    pub fn causal(mut self, causal: bool) -> Self {
        self.causal = causal;
        self
    }

    /// The same dropout on the attention probabilities and the residual branches.
    pub fn dropout(mut self, p: f64) -> Self {
        (self.attn_dropout, self.resid_dropout) = (p, p);
        self
    }

    fn check(&self) -> Result<()> {
        if self.n_head == 0 || self.n_embd == 0 || !self.n_embd.is_multiple_of(self.n_head) {
            candle_core::bail!(
                "transformer: n_embd ({}) must be a positive multiple of n_head ({})",
                self.n_embd,
                self.n_head
            )
        }
        for (name, p) in [("attn_dropout", self.attn_dropout), ("resid_dropout", self.resid_dropout)] {
            if !(0.0..1.0).contains(&p) {
                candle_core::bail!("transformer: {name} must be in [0, 1), got {p}")
            }
        }
        Ok(())
    }
}

/// Multi-head self-attention, causal unless [`TransformerConfig::causal`] says otherwise:
/// `c_attn` projects (B, T, C) to q, k and v, the heads
/// attend with [`scaled_dot_product_attention`](super::scaled_dot_product_attention)
/// (stacked: [`self_attention_packed`]), and `c_proj` mixes them back to (B, T, C).
#[derive(Clone, Debug)]
pub struct MultiHeadAttention {
    c_attn: Linear,
    c_proj: Linear,
    config: TransformerConfig,
}

impl MultiHeadAttention {
    /// Variables `c_attn.{weight,bias}` (3C, C) and `c_proj.{weight,bias}` (C, C) under
    /// `vb`'s prefix (GPT-2's `attn`).
    pub fn new(config: TransformerConfig, vb: VarBuilder) -> Result<Self> {
        config.check()?;
        let c = config.n_embd;
        Ok(MultiHeadAttention {
            c_attn: linear(c, 3 * c, vb.pp("c_attn"))?,
            c_proj: linear(c, c, vb.pp("c_proj"))?,
            config,
        })
    }

    /// Attention over `x` (B, T, C), with dropout when `train`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (b, t, c) = x.dims3()?;
        let (h, hd) = (self.config.n_head, c / self.config.n_head);
        // (B, T, 3, H, hd) → (3, B, H, T, hd) in one copy, attended as one stacked tensor
        let qkv = self.c_attn.forward(x)?.reshape((b, t, 3, h, hd))?.permute((2, 0, 3, 1, 4))?;
        let p = if train { self.config.attn_dropout } else { 0.0 };
        let opts = AttentionOptions::new().causal(self.config.causal).dropout(p);
        let y = self_attention_packed(&qkv, &opts)?;
        let y = self.c_proj.forward(&y.transpose(1, 2)?.reshape((b, t, c))?)?;
        dropout(&y, self.config.resid_dropout, train)
    }
}

/// [`MultiHeadAttention::forward_t`] with this thread's training flag ([`is_training`]).
impl Module for MultiHeadAttention {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_t(x, is_training())
    }
}

impl Relocate for MultiHeadAttention {
    fn relocate(&mut self, to: &Relocation) -> crate::Result<()> {
        self.c_attn.relocate(to)?;
        self.c_proj.relocate(to)
    }
}

/// A pre-LN transformer block, GPT-2's:
/// `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))` with `mlp = c_proj(gelu(c_fc(x)))` (4C wide,
/// GELU's tanh form as GPT-2's), on `lightning::nn`'s [`LayerNorm`], [`Linear`],
/// [`gelu_tanh`] and [`self_attention_packed`].
///
/// ```
/// use lightning::candle::{DType, Device, Module, Tensor};
/// use lightning::candle_nn::{VarBuilder, VarMap};
/// use lightning::nn::{TransformerBlock, TransformerConfig};
///
/// let vars = VarMap::new();
/// let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
/// let block = TransformerBlock::new(TransformerConfig::new(64, 4).dropout(0.1), vb.pp("h.0"))?;
/// let x = Tensor::randn(0f32, 1.0, (8, 16, 64), &Device::Cpu)?; // (B, T, C)
/// assert_eq!(block.forward(&x)?.dims(), &[8, 16, 64]);
/// assert!(vars.data().lock().unwrap().contains_key("h.0.attn.c_attn.weight"));
/// # Ok::<(), lightning::candle::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct TransformerBlock {
    ln_1: LayerNorm,
    attn: MultiHeadAttention,
    ln_2: LayerNorm,
    c_fc: Linear,
    c_proj: Linear,
    resid_dropout: f64,
}

impl TransformerBlock {
    /// Variables `ln_1`, `attn.c_attn`, `attn.c_proj`, `ln_2`, `mlp.c_fc` (4C, C) and
    /// `mlp.c_proj` (C, 4C), each with `weight` and `bias`, under `vb`'s prefix.
    pub fn new(config: TransformerConfig, vb: VarBuilder) -> Result<Self> {
        config.check()?;
        let c = config.n_embd;
        Ok(TransformerBlock {
            ln_1: layer_norm(c, config.layer_norm_eps, vb.pp("ln_1"))?,
            attn: MultiHeadAttention::new(config, vb.pp("attn"))?,
            ln_2: layer_norm(c, config.layer_norm_eps, vb.pp("ln_2"))?,
            c_fc: linear(c, 4 * c, vb.pp("mlp").pp("c_fc"))?,
            c_proj: linear(4 * c, c, vb.pp("mlp").pp("c_proj"))?,
            resid_dropout: config.resid_dropout,
        })
    }

    /// The block over `x` (B, T, C), with dropout when `train`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = (x + self.attn.forward_t(&self.ln_1.forward(x)?, train)?)?;
        let m = self.c_proj.forward(&gelu_tanh(&self.c_fc.forward(&self.ln_2.forward(&x)?)?)?)?;
        x + dropout(&m, self.resid_dropout, train)?
    }

    /// The block's attention layer (`attn`).
    pub fn attention(&self) -> &MultiHeadAttention {
        &self.attn
    }
}

/// [`TransformerBlock::forward_t`] with this thread's training flag ([`is_training`]).
impl Module for TransformerBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_t(x, is_training())
    }
}

impl Relocate for TransformerBlock {
    fn relocate(&mut self, to: &Relocation) -> crate::Result<()> {
        self.ln_1.relocate(to)?;
        self.attn.relocate(to)?;
        self.ln_2.relocate(to)?;
        self.c_fc.relocate(to)?;
        self.c_proj.relocate(to)
    }
}
