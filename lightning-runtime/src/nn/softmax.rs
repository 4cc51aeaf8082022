//! [`softmax`] and [`log_softmax`] over the last dimension, with their own CPU backward.
//!
//! candle-nn 0.11's `ops::softmax_last_dim` runs through `apply_op1_no_bwd`: no gradient
//! flows through it, so a model built on it silently trains only what lies after it. These
//! are candle custom ops with a forward and a backward of their own on the CPU for f32 and
//! f64 (vectorised row passes, `exp` of `nn/math.rs`); elsewhere they are candle-nn's
//! `ops::softmax` / `ops::log_softmax`, compositions of differentiable ops.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, D};

use super::math::{row_dot, row_max, row_sum, Real};
use super::op::contiguous;

/// `softmax(x)` over the last dimension: `exp(x - max) / Σ exp(x - max)` per row.
///
/// ```
/// use lightning::candle::{Device, Tensor};
/// let x = Tensor::new(&[[1f32, 2., 3.]], &Device::Cpu)?;
/// let y = lightning::nn::softmax(&x)?;
/// let sum: f32 = y.sum_all()?.to_scalar()?;
/// assert!((sum - 1.0).abs() < 1e-6);
/// # Ok::<(), lightning::candle::Error>(())
/// ```
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    if !fast(x) {
        return candle_nn::ops::softmax(x, D::Minus1);
    }
    x.contiguous()?.apply_op1(SoftmaxOp { log: false, cols: x.dim(D::Minus1)? })
}

/// `log(softmax(x))` over the last dimension, computed as `x - max - log Σ exp(x - max)`.
///
/// ```
/// use lightning::candle::{Device, Tensor};
/// let x = Tensor::new(&[[0f64, 0.]], &Device::Cpu)?;
/// let y = lightning::nn::log_softmax(&x)?.to_vec2::<f64>()?;
/// assert!((y[0][0] - 0.5f64.ln()).abs() < 1e-12);
/// # Ok::<(), lightning::candle::Error>(())
/// ```
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    if !fast(x) {
        return candle_nn::ops::log_softmax(x, D::Minus1);
    }
    x.contiguous()?.apply_op1(SoftmaxOp { log: true, cols: x.dim(D::Minus1)? })
}

fn fast(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) && x.rank() > 0 && x.elem_count() > 0
}

/// Softmax or log-softmax over rows of `cols` elements.
#[derive(Clone, Copy, Debug)]
struct SoftmaxOp {
    log: bool,
    cols: usize,
}

impl SoftmaxOp {
    fn forward<T: Real>(&self, x: &[T]) -> CpuStorage {
        let mut y = vec![T::from_f64(0.0); x.len()];
        for (xr, yr) in x.chunks_exact(self.cols).zip(y.chunks_exact_mut(self.cols)) {
            let max = row_max(xr);
            if self.log {
                let shift = max + row_sum(xr, |v| (v - max).exp()).ln();
                yr.iter_mut().zip(xr).for_each(|(o, &v)| *o = v - shift);
            } else {
                yr.iter_mut().zip(xr).for_each(|(o, &v)| *o = (v - max).exp());
                let scale = T::from_f64(1.0) / row_sum(yr, |v| v);
                yr.iter_mut().for_each(|o| *o *= scale);
            }
        }
        T::to_cpu_storage_owned(y)
    }

    /// From the output `y` and its gradient `dy`, per row: softmax `dx = y ⊙ (dy - Σ dy ⊙ y)`;
    /// log-softmax `dx = dy - exp(y) Σ dy`.
    fn backward<T: Real>(&self, dy: &[T], y: &[T]) -> CpuStorage {
        let mut dx = vec![T::from_f64(0.0); dy.len()];
        for ((g, yr), o) in
            dy.chunks_exact(self.cols).zip(y.chunks_exact(self.cols)).zip(dx.chunks_exact_mut(self.cols))
        {
            if self.log {
                let sum = row_sum(g, |v| v);
                o.iter_mut().zip(g).zip(yr).for_each(|((o, &g), &y)| *o = g - y.exp() * sum);
            } else {
                let dot = row_dot(g, yr);
                o.iter_mut().zip(g).zip(yr).for_each(|((o, &g), &y)| *o = y * (g - dot));
            }
        }
        T::to_cpu_storage_owned(dx)
    }
}

impl CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        if self.log {
            "lightning-log-softmax"
        } else {
            "lightning-softmax"
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = match s {
            CpuStorage::F32(_) => self.forward(contiguous::<f32>(s, l, "input")?),
            CpuStorage::F64(_) => self.forward(contiguous::<f64>(s, l, "input")?),
            other => return Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), self.name())),
        };
        Ok((y, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(dy.contiguous()?.apply_op2_no_bwd(y, &SoftmaxGrad(*self))?))
    }
}

/// The backward pass, applied as `dy.apply_op2_no_bwd(y, ..)`.
struct SoftmaxGrad(SoftmaxOp);

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "lightning-softmax-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let dx = match s1 {
            CpuStorage::F32(_) => self.0.backward(contiguous::<f32>(s1, l1, "dy")?, contiguous::<f32>(s2, l2, "y")?),
            CpuStorage::F64(_) => self.0.backward(contiguous::<f64>(s1, l1, "dy")?, contiguous::<f64>(s2, l2, "y")?),
            other => return Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), self.name())),
        };
        Ok((dx, l1.shape().clone()))
    }
}
