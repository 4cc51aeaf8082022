//! [`Linear`]: candle-nn's fully connected layer with its own CPU forward and backward.
//!
//! candle's autograd computes a matmul's gradient for both operands, so the first layer of a
//! network also pays for the gradient of its input batch (a third of its backward work),
//! goes through the transpose of the weight, and accumulates into zero tensors. This layer
//! is one custom op: `y = x·Wᵀ + b` forward; backward `dW = dyᵀ·x` and `db = Σ dy` in one
//! pass, and `dx = dy·W` only when the input needs it.

use candle_core::{CpuStorage, DType, Module, Result, Shape, Tensor, WithDType};
use candle_nn::VarBuilder;

use super::gemm::{matmul, matmul_strided, Mat};
use super::op::{GradKernel, GradOp, LayerKernel, LayerOp};
use super::{check_sizes, LayerError};
use crate::devices::relocate::{Relocate, Relocation};

/// A linear layer with candle-nn's parameters, names and initialisation: weight (out, in),
/// optional bias (out); input (…, in), output (…, out).
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

/// candle-nn's `linear`: Kaiming-uniform weights and uniform bias in ±1/√in, as variables
/// `weight` and `bias` under `vb`'s prefix. A zero size, or a weight of more than
/// [`MAX_WEIGHT_ELEMENTS`](super::MAX_WEIGHT_ELEMENTS) elements, is a [`LayerError`] (wrapped
/// in candle's error) before anything is allocated.
///
/// ```
/// use lightning::candle::{DType, Device};
/// use lightning::candle_nn::{VarBuilder, VarMap};
///
/// let vars = VarMap::new();
/// let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
/// assert!(lightning::nn::linear(784, 0, vb.pp("fc1")).is_err()); // no panic in backward later
/// assert!(lightning::nn::linear(784, 100_000_000_000, vb.pp("fc1")).is_err()); // no abort
/// ```
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    check_dims(&vb.prefix(), in_dim, out_dim)?;
    Ok(candle_nn::linear(in_dim, out_dim, vb)?.into())
}

/// [`linear`] without a bias.
pub fn linear_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    check_dims(&vb.prefix(), in_dim, out_dim)?;
    Ok(candle_nn::linear_no_bias(in_dim, out_dim, vb)?.into())
}

fn check_dims(prefix: &str, in_dim: usize, out_dim: usize) -> std::result::Result<(), LayerError> {
    let layer = if prefix.is_empty() { "linear" } else { prefix };
    check_sizes(layer, &[("in_dim", in_dim), ("out_dim", out_dim)], &[out_dim, in_dim])
}

impl From<candle_nn::Linear> for Linear {
    fn from(l: candle_nn::Linear) -> Self {
        Linear::new(l.weight().clone(), l.bias().cloned())
    }
}

impl Linear {
    /// `x·weightᵀ + bias`, with `weight` (out, in) and `bias` (out), as torch's.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { weight, bias }
    }

    /// The weight, (out, in).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, (out), if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    fn fast(&self, x: &Tensor) -> bool {
        x.device().is_cpu()
            && matches!(x.dtype(), DType::F32 | DType::F64)
            && self.weight.dtype() == x.dtype()
            && self.bias.as_ref().is_none_or(|b| b.dtype() == x.dtype())
            && self.weight.rank() == 2
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !self.fast(x) {
            let l = candle_nn::Linear::new(self.weight.clone(), self.bias.clone());
            return l.forward(x);
        }
        let (out, inp) = self.weight.dims2()?;
        // a weight built from tensors (`Linear::new`) is not checked by `linear`
        check_dims("linear", inp, out)?;
        let dims = x.dims();
        let Some((&last, lead)) = dims.split_last() else {
            candle_core::bail!("linear: a scalar input has no feature dimension")
        };
        if last != inp {
            candle_core::bail!("linear: the input has {last} features (shape {dims:?}), the layer takes {inp}")
        }
        let rows = lead.iter().product::<usize>();
        let x2 = x.reshape((rows, inp))?.contiguous()?;
        let op = LayerOp(LinearOp { rows, inp, out });
        let w = self.weight.contiguous()?;
        let y = match &self.bias {
            Some(b) => x2.apply_op3(&w, &b.contiguous()?, op)?,
            None => x2.apply_op2(&w, op)?,
        };
        let mut shape = lead.to_vec();
        shape.push(out);
        y.reshape(shape)
    }
}

impl Relocate for Linear {
    fn relocate(&mut self, to: &Relocation) -> crate::Result<()> {
        self.weight = to.tensor(&self.weight)?;
        self.bias = self.bias.as_ref().map(|b| to.tensor(b)).transpose()?;
        Ok(())
    }
}

/// `y (rows×out) = x (rows×inp) · Wᵀ [+ b]`.
#[derive(Clone, Copy, Debug)]
struct LinearOp {
    rows: usize,
    inp: usize,
    out: usize,
}

impl LayerKernel for LinearOp {
    const NAME: &'static str = "lightning-linear";

    fn forward<T: WithDType>(&self, x: &[T], w: &[T], b: Option<&[T]>) -> Result<(CpuStorage, Shape)> {
        let mut y = Vec::with_capacity(self.rows * self.out);
        for _ in 0..self.rows {
            match b {
                Some(b) => y.extend_from_slice(b),
                None => y.extend(std::iter::repeat_n(T::from_f64(0.0), self.out)),
            }
        }
        // Wᵀ (inp×out): element (k, j) is w[j·inp + k]
        matmul((self.rows, self.out, self.inp), &mut y, b.is_some(), Mat(x, (self.inp, 1)), Mat(w, (1, self.inp)));
        Ok((T::to_cpu_storage_owned(y), (self.rows, self.out).into()))
    }

    fn grads(&self, x: &Tensor, w: &Tensor, bias: bool, dy: &Tensor) -> Result<[Option<Tensor>; 3]> {
        let dy = dy.contiguous()?;
        let dx = if x.track_op() { Some(dy.apply_op2_no_bwd(w, &GradOp(InputGrad(*self)))?) } else { None };
        if !w.track_op() && !bias {
            return Ok([dx, None, None]);
        }
        let both = dy.apply_op2_no_bwd(x, &GradOp(WeightGrad { op: *self, bias }))?;
        let dw = w.track_op().then(|| both.narrow(1, 0, self.inp)?.contiguous()).transpose()?;
        let db = if bias { Some(both.narrow(1, self.inp, 1)?.flatten_all()?) } else { None };
        Ok([dx, dw, db])
    }
}

/// `dx (rows×inp) = dy (rows×out) · W (out×inp)`. Applied as `dy.apply_op2(w)`.
struct InputGrad(LinearOp);

impl GradKernel for InputGrad {
    const NAME: &'static str = "lightning-linear-input-grad";

    fn run<T: WithDType>(&self, dy: &[T], w: &[T]) -> Result<(CpuStorage, Shape)> {
        let op = &self.0;
        let mut dx = vec![T::from_f64(0.0); op.rows * op.inp];
        matmul((op.rows, op.inp, op.out), &mut dx, false, Mat(dy, (op.out, 1)), Mat(w, (op.inp, 1)));
        Ok((T::to_cpu_storage_owned(dx), (op.rows, op.inp).into()))
    }
}

/// `dW (out×inp) = dyᵀ · x`, with `db = Σ_rows dy` as an extra last column when `bias`.
/// Applied as `dy.apply_op2(x)`.
struct WeightGrad {
    op: LinearOp,
    bias: bool,
}

impl GradKernel for WeightGrad {
    const NAME: &'static str = "lightning-linear-weight-grad";

    fn run<T: WithDType>(&self, dy: &[T], x: &[T]) -> Result<(CpuStorage, Shape)> {
        let (op, cols) = (&self.op, self.op.inp + self.bias as usize);
        let mut dw = vec![T::from_f64(0.0); op.out * cols];
        // dyᵀ (out×rows): element (o, r) is dy[r·out + o]; written with row stride `cols` so
        // the bias column fits beside it
        matmul_strided((op.out, op.inp, op.rows), &mut dw, cols, Mat(dy, (1, op.out)), Mat(x, (op.inp, 1)));
        if self.bias {
            for row in dy.chunks_exact(op.out) {
                for (o, &v) in row.iter().enumerate() {
                    dw[o * cols + op.inp] += v;
                }
            }
        }
        Ok((T::to_cpu_storage_owned(dw), (op.out, cols).into()))
    }
}
