//! Fast CPU layers: drop-in replacements for candle-nn's `Linear`, `Conv2d`, `LayerNorm`,
//! `RmsNorm`, softmax ops and `loss::cross_entropy`, candle's `max_pool2d`, GELU and SiLU.
//!
//! candle 0.11's CPU convolution and pooling spend most of a small CNN's step in backward
//! passes built from generic tensor ops (its max-pool backward alone is an upsample, a
//! comparison, an average pool and two multiplications). These layers are candle custom ops
//! with their own forward and backward kernels on the CPU, for `f32` and `f64`:
//! - [`Conv2d`]: im2col plus one `gemm` call per image for the output, the weight gradient
//!   and the input gradient (col2im); the im2col matrix of the forward pass is kept for the
//!   weight gradient instead of being rebuilt;
//! - [`MaxPool2d`]: the forward pass records each window's argmax, so the backward pass is a
//!   scatter; it can fuse a ReLU (`max(relu(x)) == relu(max(x))`), which removes a whole
//!   tensor pass and its backward.
//! - [`LayerNorm`], [`RmsNorm`], [`softmax`] and [`log_softmax`]: candle-nn 0.11's fast
//!   versions have no backward (`apply_op*_no_bwd`), so nothing before them trains; these
//!   have their own.
//! - [`cross_entropy`]: log-softmax and NLL in one pass with torch's `ignore_index` and
//!   `label_smoothing`; its backward is `softmax - target distribution` in one more pass.
//! - [`gelu`], [`gelu_tanh`], [`silu`]: one vectorised pass each way, on exponential and
//!   normal-CDF approximations of our own instead of libm per element.
//! - [`scaled_dot_product_attention`]: torch's fused attention as one op whose backward
//!   recomputes one head's probabilities at a time from the forward's row log-sum-exp;
//! - [`Embedding`] (scatter-add backward), [`Dropout`] (masks from the trainer's seeded,
//!   checkpointed counter-based generator), and the GPT-2-named [`MultiHeadAttention`] and
//!   pre-LN [`TransformerBlock`] built on them.
//!
//! On other devices, other dtypes, or with `groups > 1`, they call candle's own
//! differentiable ops, so a model built on them runs everywhere candle-nn's does.
//!
//! ```
//! use lightning::candle::{DType, Device, Module, Tensor};
//! use lightning::candle_nn::{Conv2dConfig, VarBuilder, VarMap};
//! use lightning::nn::{conv2d, MaxPool2d};
//!
//! let vars = VarMap::new();
//! let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
//! let conv = conv2d(1, 8, 3, Conv2dConfig::default(), vb.pp("c1"))?;
//! let pool = MaxPool2d::new(2).with_relu();
//! let x = Tensor::randn(0f32, 1.0, (4, 1, 28, 28), &Device::Cpu)?;
//! let y = pool.forward(&conv.forward(&x)?)?;
//! assert_eq!(y.dims(), &[4, 8, 13, 13]);
//! # Ok::<(), lightning::candle::Error>(())
//! ```

mod activation;
mod attention;
mod conv2d;
mod conv2d_kernels;
mod cross_entropy;
mod dropout;
mod embedding;
#[doc(hidden)]
pub mod gemm;
pub(crate) mod init;
mod linear;
mod math;
mod max_pool2d;
#[cfg(target_arch = "x86_64")]
mod max_pool2d_avx512;
mod norm;
pub(crate) mod op;
mod softmax;
mod transformer;

pub use activation::{gelu, gelu_tanh, silu};
pub use attention::{attention_composed, scaled_dot_product_attention, self_attention_packed, AttentionOptions};
pub use conv2d::{conv2d, conv2d_no_bias, Conv2d};
pub use cross_entropy::{cross_entropy, cross_entropy_with, CrossEntropyOptions, LossError};
pub(crate) use dropout::TrainingFlag;
pub use dropout::{dropout, dropout_state, is_training, set_dropout_state, set_training, Dropout, DropoutState};
pub use embedding::{embedding, Embedding};
pub use linear::{linear, linear_no_bias, Linear};
pub use max_pool2d::MaxPool2d;
pub use norm::{layer_norm, layer_norm_no_bias, rms_norm, LayerNorm, RmsNorm};
pub use softmax::{log_softmax, softmax};
pub use transformer::{MultiHeadAttention, TransformerBlock, TransformerConfig};

/// The most elements one layer's weight may hold: 2³³ (32 GiB in `f32`). The constructors
/// refuse larger sizes with [`LayerError::TooLarge`] before allocating, where a mistyped
/// size would otherwise abort the process on a failed allocation.
pub const MAX_WEIGHT_ELEMENTS: u128 = 1 << 33;

/// A layer that cannot run on its input or with its configuration. The layers return it
/// wrapped in a `candle_core::Error` (their `forward` is candle-nn's `Module::forward`); call
/// [`Conv2d::check`] or [`MaxPool2d::check`] to get it typed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerError {
    /// The input is not 4-D.
    #[error("layer `{layer}` expects a 4-D (batch, channels, height, width) input, got shape {input:?}")]
    Rank {
        /// The layer's name (its variables' prefix).
        layer: String,
        /// The input's shape.
        input: Vec<usize>,
    },
    /// The input has another number of channels than the layer takes.
    #[error("layer `{layer}` expects {expected} input channels, got shape {input:?}: check the previous layer's output channels")]
    Channels {
        /// The layer's name (its variables' prefix).
        layer: String,
        /// The channels the layer takes.
        expected: usize,
        /// The input's shape.
        input: Vec<usize>,
    },
    /// The kernel's window does not fit in the (padded) input.
    #[error("layer `{layer}`: its {kernel:?} window (with dilation) is larger than the input of shape {input:?} padded to {padded:?}: use a smaller kernel, more padding or a larger input")]
    KernelTooLarge {
        /// The layer's name (its variables' prefix).
        layer: String,
        /// The kernel's (height, width).
        kernel: (usize, usize),
        /// The input's (height, width) with the padding.
        padded: (usize, usize),
        /// The input's shape.
        input: Vec<usize>,
    },
    /// A size or setting that must be at least 1 is 0.
    #[error("layer `{layer}`: {setting} must be at least 1, got 0")]
    Zero {
        /// The layer's name (its variables' prefix).
        layer: String,
        /// The setting that is 0 (`in_dim`, `stride`, ...).
        setting: &'static str,
    },
    /// The weight would hold more than [`MAX_WEIGHT_ELEMENTS`].
    #[error("layer `{layer}`: a weight of shape {shape:?} would hold {elements} elements, more than the {max} a layer may hold (`lightning::nn::MAX_WEIGHT_ELEMENTS`): check the sizes")]
    TooLarge {
        /// The layer's name (its variables' prefix).
        layer: String,
        /// The weight's shape.
        shape: Vec<usize>,
        /// The elements it would hold.
        elements: u128,
        /// The most a weight may hold ([`MAX_WEIGHT_ELEMENTS`]).
        max: u128,
    },
}

/// Checks a layer's sizes before its weight is allocated: each named size is at least 1, and
/// the weight of shape `shape` holds at most [`MAX_WEIGHT_ELEMENTS`].
pub(crate) fn check_sizes(
    layer: &str,
    sizes: &[(&'static str, usize)],
    shape: &[usize],
) -> std::result::Result<(), LayerError> {
    if let Some(&(setting, _)) = sizes.iter().find(|(_, v)| *v == 0) {
        return Err(LayerError::Zero { layer: layer.to_string(), setting });
    }
    let elements = shape.iter().fold(1u128, |n, &d| n.saturating_mul(d as u128));
    if elements > MAX_WEIGHT_ELEMENTS {
        let (layer, shape) = (layer.to_string(), shape.to_vec());
        return Err(LayerError::TooLarge { layer, shape, elements, max: MAX_WEIGHT_ELEMENTS });
    }
    Ok(())
}

impl From<LayerError> for candle_core::Error {
    fn from(e: LayerError) -> Self {
        candle_core::Error::wrap(e)
    }
}
