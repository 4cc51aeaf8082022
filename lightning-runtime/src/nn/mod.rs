//! Fast CPU layers: drop-in replacements for candle-nn's `Conv2d` and candle's `max_pool2d`.
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
//!
//! On other devices, other dtypes, or with `groups > 1`, they call candle's own ops, so a
//! model built on them runs everywhere candle-nn's does.
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

mod conv2d;
mod conv2d_kernels;
mod gemm;
mod linear;
mod max_pool2d;
pub(crate) mod op;

pub use conv2d::{conv2d, conv2d_no_bias, Conv2d};
pub use linear::{linear, linear_no_bias, Linear};
pub use max_pool2d::MaxPool2d;

/// The most elements one layer's weight may hold: 2³³ (32 GiB in `f32`). The constructors
/// refuse larger sizes with [`LayerError::TooLarge`] before allocating, where a mistyped
/// size would otherwise abort the process on a failed allocation.
pub const MAX_WEIGHT_ELEMENTS: u128 = 1 << 33;

/// A layer that cannot run on its input or with its configuration. The layers return it
/// wrapped in a `candle_core::Error` (their `forward` is candle-nn's `Module::forward`); call
/// [`Conv2d::check`] or [`MaxPool2d::check`] to get it typed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerError {
    #[error("layer `{layer}` expects a 4-D (batch, channels, height, width) input, got shape {input:?}")]
    Rank { layer: String, input: Vec<usize> },
    #[error("layer `{layer}` expects {expected} input channels, got shape {input:?}: check the previous layer's output channels")]
    Channels { layer: String, expected: usize, input: Vec<usize> },
    #[error("layer `{layer}`: its {kernel:?} window (with dilation) is larger than the input of shape {input:?} padded to {padded:?}: use a smaller kernel, more padding or a larger input")]
    KernelTooLarge { layer: String, kernel: (usize, usize), padded: (usize, usize), input: Vec<usize> },
    #[error("layer `{layer}`: {setting} must be at least 1, got 0")]
    Zero { layer: String, setting: &'static str },
    #[error("layer `{layer}`: a weight of shape {shape:?} would hold {elements} elements, more than the {max} a layer may hold (`lightning::nn::MAX_WEIGHT_ELEMENTS`): check the sizes")]
    TooLarge { layer: String, shape: Vec<usize>, elements: u128, max: u128 },
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
