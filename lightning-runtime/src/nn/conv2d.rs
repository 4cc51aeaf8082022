//! [`Conv2d`]: candle-nn's 2-D convolution layer, on the fast CPU kernels.

use std::sync::Mutex;

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};

use super::conv2d_kernels::{ConvForward, Geometry};
use super::op::LayerOp;
use super::{check_sizes, LayerError};
use crate::devices::relocate::{Relocate, Relocation};

/// A 2-D convolution with candle-nn's parameters, names and initialisation, so a model
/// switches by changing `candle_nn::conv2d` to `lightning::nn::conv2d`. Input (n, c, h, w),
/// weight (o, c, kh, kw), optional bias (o).
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    config: Conv2dConfig,
    name: String,
}

/// candle-nn's `conv2d`: Kaiming-normal weights and uniform bias in ±1/√in_channels, as
/// variables `weight` and `bias` under `vb`'s prefix, which also names the layer in errors.
pub fn conv2d(
    in_channels: usize,
    out_channels: usize,
    kernel_size: usize,
    config: Conv2dConfig,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let sizes = (in_channels, out_channels, kernel_size);
    named(vb, config, sizes, |vb| candle_nn::conv2d(in_channels, out_channels, kernel_size, config, vb))
}

/// The layer candle-nn's `make` builds, checked (before it allocates) and named after `vb`'s
/// prefix. `sizes` are the input channels, output channels and kernel size.
fn named(
    vb: VarBuilder,
    config: Conv2dConfig,
    (c, o, k): (usize, usize, usize),
    make: impl FnOnce(VarBuilder) -> candle_core::Result<candle_nn::Conv2d>,
) -> Result<Conv2d> {
    let name = vb.prefix();
    check_config(&name, &config, k)?;
    check_sizes(&name, &[("in_channels", c), ("out_channels", o)], &[o, c / config.groups, k, k])?;
    Ok(Conv2d::from(make(vb)?).named(name))
}

/// [`conv2d`] without a bias.
pub fn conv2d_no_bias(
    in_channels: usize,
    out_channels: usize,
    kernel_size: usize,
    config: Conv2dConfig,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let sizes = (in_channels, out_channels, kernel_size);
    named(vb, config, sizes, |vb| candle_nn::conv2d_no_bias(in_channels, out_channels, kernel_size, config, vb))
}

fn check_config(layer: &str, config: &Conv2dConfig, kernel: usize) -> std::result::Result<(), LayerError> {
    for (setting, v) in
        [("stride", config.stride), ("dilation", config.dilation), ("groups", config.groups), ("kernel size", kernel)]
    {
        if v == 0 {
            return Err(LayerError::Zero { layer: layer.to_string(), setting });
        }
    }
    Ok(())
}

impl From<candle_nn::Conv2d> for Conv2d {
    fn from(c: candle_nn::Conv2d) -> Self {
        Conv2d::new(c.weight().clone(), c.bias().cloned(), *c.config())
    }
}

impl Conv2d {
    /// A convolution with this weight (out, in / groups, kh, kw), bias (out) and config.
    pub fn new(weight: Tensor, bias: Option<Tensor>, config: Conv2dConfig) -> Self {
        Conv2d { weight, bias, config, name: "conv2d".to_string() }
    }

    /// Names the layer in its errors.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The kernel, (out channels, in channels / groups, height, width).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, one per output channel, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Padding, stride, dilation and groups.
    pub fn config(&self) -> &Conv2dConfig {
        &self.config
    }

    /// The output's (height, width) for an input of shape `input`, or why the layer can't run
    /// on it.
    pub fn check(&self, input: &[usize]) -> std::result::Result<(usize, usize), LayerError> {
        let layer = || self.name.clone();
        let (_, cg, kh, kw) =
            self.weight.dims4().map_err(|_| LayerError::Rank { layer: layer(), input: input.to_vec() })?;
        let cfg = &self.config;
        check_config(&self.name, cfg, kh.min(kw))?;
        let &[_, c, h, w] = input else { return Err(LayerError::Rank { layer: layer(), input: input.to_vec() }) };
        if c != cg * cfg.groups {
            return Err(LayerError::Channels { layer: layer(), expected: cg * cfg.groups, input: input.to_vec() });
        }
        let (ph, pw) = (h + 2 * cfg.padding, w + 2 * cfg.padding);
        let (eh, ew) = (cfg.dilation * (kh - 1) + 1, cfg.dilation * (kw - 1) + 1);
        if eh > ph || ew > pw {
            return Err(LayerError::KernelTooLarge {
                layer: layer(),
                kernel: (kh, kw),
                padded: (ph, pw),
                input: input.to_vec(),
            });
        }
        Ok(((ph - eh) / cfg.stride + 1, (pw - ew) / cfg.stride + 1))
    }

    /// Whether the fast kernels apply: CPU, f32 or f64, one group.
    fn fast(&self, x: &Tensor) -> bool {
        x.device().is_cpu()
            && matches!(x.dtype(), DType::F32 | DType::F64)
            && self.weight.dtype() == x.dtype()
            && self.bias.as_ref().is_none_or(|b| b.dtype() == x.dtype())
            && self.config.groups == 1
    }
}

/// The largest im2col buffer a forward pass keeps for its backward pass.
const KEEP_COLS_BYTES: usize = 32 << 20;

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (oh, ow) = self.check(x.dims())?;
        let cfg = &self.config;
        if !self.fast(x) {
            let y = x.conv2d(&self.weight, cfg.padding, cfg.stride, cfg.dilation, cfg.groups)?;
            return match &self.bias {
                Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?),
                None => Ok(y),
            };
        }
        let (n, c, h, w) = x.dims4()?;
        let (o, _, kh, kw) = self.weight.dims4()?;
        let g = Geometry {
            n,
            c,
            h,
            w,
            o,
            kh,
            kw,
            stride: cfg.stride,
            padding: cfg.padding,
            dilation: cfg.dilation,
            oh,
            ow,
        };
        // The im2col matrices serve the weight gradient; past a size (large evaluation
        // batches, which never run backward) the backward pass rebuilds them instead.
        let keep_cols =
            self.weight.track_op() && n * c * kh * kw * oh * ow * x.dtype().size_in_bytes() <= KEEP_COLS_BYTES;
        let op = LayerOp(ConvForward { g, keep_cols, cols: Mutex::new(None) });
        let (x, weight) = (x.contiguous()?, self.weight.contiguous()?);
        match &self.bias {
            Some(b) => x.apply_op3(&weight, &b.contiguous()?, op),
            None => x.apply_op2(&weight, op),
        }
    }
}

impl Relocate for Conv2d {
    fn relocate(&mut self, to: &Relocation) -> crate::Result<()> {
        self.weight = to.tensor(&self.weight)?;
        self.bias = self.bias.as_ref().map(|b| to.tensor(b)).transpose()?;
        Ok(())
    }
}
