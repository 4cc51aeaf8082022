//! [`cross_entropy`]: log-softmax and the negative log-likelihood in one pass over the logits,
//! with torch's `ignore_index` and `label_smoothing`, and a backward that is one more pass
//! (`softmax - target distribution`, scaled) from the row log-sum-exps the forward kept.
//!
//! candle-nn's `loss::cross_entropy` is `nll(log_softmax(x))`: it writes the whole
//! log-softmax, gathers from it, and its backward goes through both again.

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, D};

use super::math::{row_max, row_sum, Real};
use super::op::contiguous;

/// torch's `CrossEntropyLoss` options: `ignore_index` (default -100: targets equal to it
/// add nothing to the loss, its mean or its gradient) and `label_smoothing` in `[0, 1]`
/// (default 0: the target distribution is `(1 - ε)·onehot + ε/C`).
///
/// ```
/// use lightning::candle::{Device, Tensor};
/// use lightning::nn::{cross_entropy_with, CrossEntropyOptions};
/// let logits = Tensor::new(&[[2f32, 0., 0.], [0., 0., 0.]], &Device::Cpu)?;
/// let targets = Tensor::new(&[0i64, -1], &Device::Cpu)?;
/// let opts = CrossEntropyOptions::default().ignore_index(-1).label_smoothing(0.1);
/// let loss: f32 = cross_entropy_with(&logits, &targets, opts)?.to_scalar()?;
/// // one row counts: 0.9·(lse - 2) + 0.1·(lse - 2/3), lse = ln(e² + 2)
/// let lse = (2f32.exp() + 2.0).ln();
/// assert!((loss - (0.9 * (lse - 2.0) + 0.1 * (lse - 2.0 / 3.0))).abs() < 1e-6);
/// # Ok::<(), lightning::candle::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrossEntropyOptions {
    /// Targets equal to this are ignored (torch: -100).
    pub ignore_index: i64,
    /// The weight ε of the uniform distribution mixed into the targets, in `[0, 1]` (torch: 0).
    pub label_smoothing: f64,
}

impl Default for CrossEntropyOptions {
    fn default() -> Self {
        CrossEntropyOptions { ignore_index: -100, label_smoothing: 0.0 }
    }
}

impl CrossEntropyOptions {
    /// Ignores targets equal to `index` (torch's `ignore_index`; -100).
    pub fn ignore_index(mut self, index: i64) -> Self {
        self.ignore_index = index;
        self
    }

    /// Mixes `epsilon` of the uniform distribution into the targets (torch's `label_smoothing`; 0).
    pub fn label_smoothing(mut self, epsilon: f64) -> Self {
        self.label_smoothing = epsilon;
        self
    }
}

/// Why [`cross_entropy`] cannot run on its inputs. Returned wrapped in a `candle_core::Error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LossError {
    /// The targets' shape is not the logits' without the class dimension.
    #[error("cross_entropy: logits of shape {logits:?} and targets of shape {targets:?} do not fit: the targets have the logits' shape without its last (class) dimension, e.g. logits (N, C) with targets (N), or (N, T, C) with (N, T)")]
    Shape {
        /// The logits' shape.
        logits: Vec<usize>,
        /// The targets' shape.
        targets: Vec<usize>,
    },
    /// The targets are not of an integer dtype the loss reads; holds the dtype given.
    #[error("cross_entropy: targets are class indices of dtype u8, u32 or i64, got {0:?}")]
    TargetDType(DType),
    /// A target is neither a class index nor the `ignore_index`.
    #[error("cross_entropy: target {target} at position {position} is neither a class in 0..{classes} nor the ignore_index {ignore_index}")]
    Target {
        /// The target's value.
        target: i64,
        /// Its index among the targets, flattened.
        position: usize,
        /// The number of classes (the logits' last dimension).
        classes: usize,
        /// The `ignore_index` in effect.
        ignore_index: i64,
    },
    /// `label_smoothing` is outside `[0, 1]`; holds the value given.
    #[error("cross_entropy: label_smoothing must be in [0, 1], got {0}")]
    LabelSmoothing(f64),
}

impl From<LossError> for candle_core::Error {
    fn from(e: LossError) -> Self {
        candle_core::Error::wrap(e)
    }
}

/// Mean cross-entropy of `logits` (…, C) against class indices `targets` (…): targets
/// (u8, u32 or i64) of shape (N) for logits (N, C), (N, T) for (N, T, C). The default options:
/// targets of -100 are ignored, no label smoothing. As torch, the mean is over the targets
/// not ignored (NaN when every one is ignored, with zero gradients).
///
/// ```
/// use lightning::candle::{Device, Tensor, Var};
/// let logits = Var::new(&[[[1f32, 2., 3.], [0., 0., 0.]]], &Device::Cpu)?; // (1, 2, 3)
/// let targets = Tensor::new(&[[2u32, 1]], &Device::Cpu)?;
/// let loss = lightning::nn::cross_entropy(&logits, &targets)?;
/// let reference = lightning::candle_nn::loss::cross_entropy(&logits.flatten_to(1)?, &targets.flatten_all()?)?;
/// let (a, b) = (loss.to_scalar::<f32>()?, reference.to_scalar::<f32>()?);
/// assert!((a - b).abs() < 1e-6);
/// let grads = loss.backward()?; // softmax - onehot, over the 2 positions
/// assert_eq!(grads.get(&logits).unwrap().dims(), &[1, 2, 3]);
/// # Ok::<(), lightning::candle::Error>(())
/// ```
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    cross_entropy_with(logits, targets, CrossEntropyOptions::default())
}

/// [`cross_entropy`] with torch's `ignore_index` and `label_smoothing`.
pub fn cross_entropy_with(logits: &Tensor, targets: &Tensor, options: CrossEntropyOptions) -> Result<Tensor> {
    let classes = check(logits, targets, &options)?;
    let rows = logits.elem_count() / classes;
    let x = logits.reshape((rows, classes))?;
    let t = targets.flatten_all()?;
    let fast = x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64);
    if !fast {
        return composed(&x, &t, &options);
    }
    let op = XentOp { classes, options, saved: Mutex::new(None) };
    x.contiguous()?.apply_op2(&t.contiguous()?, op)
}

/// The number of classes, or why the inputs do not fit.
fn check(logits: &Tensor, targets: &Tensor, options: &CrossEntropyOptions) -> Result<usize> {
    let eps = options.label_smoothing;
    if !(0.0..=1.0).contains(&eps) {
        return Err(LossError::LabelSmoothing(eps).into());
    }
    if !matches!(targets.dtype(), DType::U8 | DType::U32 | DType::I64) {
        return Err(LossError::TargetDType(targets.dtype()).into());
    }
    let shape_error = || LossError::Shape { logits: logits.dims().to_vec(), targets: targets.dims().to_vec() };
    match logits.dims().split_last() {
        Some((&classes, lead)) if classes > 0 && lead == targets.dims() => Ok(classes),
        _ => Err(shape_error().into()),
    }
}

/// The same loss from candle ops that have gradients (other devices and dtypes).
fn composed(x: &Tensor, t: &Tensor, options: &CrossEntropyOptions) -> Result<Tensor> {
    let classes = x.dim(D::Minus1)?;
    let lsm = candle_nn::ops::log_softmax(x, D::Minus1)?;
    let t = t.to_dtype(DType::I64)?;
    let keep = t.ne(&Tensor::full(options.ignore_index, t.shape(), t.device())?)?;
    let safe = keep.where_cond(&t, &t.zeros_like()?)?;
    if t.elem_count() > 0 {
        let (lo, hi) = (safe.min(0)?.to_scalar::<i64>()?, safe.max(0)?.to_scalar::<i64>()?);
        if let Some(target) = [lo, hi].into_iter().find(|&v| v < 0 || v >= classes as i64) {
            let position = safe.to_vec1::<i64>()?.iter().position(|&v| v == target).unwrap_or(0);
            let ignore_index = options.ignore_index;
            return Err(LossError::Target { target, position, classes, ignore_index }.into());
        }
    }
    let mut per_row = lsm.gather(&safe.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?;
    let eps = options.label_smoothing;
    if eps > 0.0 {
        per_row = ((per_row * (1.0 - eps))? + (lsm.mean(D::Minus1)?.neg()? * eps)?)?;
    }
    let keep = keep.to_dtype(x.dtype())?;
    (per_row * &keep)?.sum_all()?.div(&keep.sum_all()?)
}

/// What the forward pass leaves for the backward pass: each row's log-sum-exp and the number
/// of targets not ignored.
struct Saved {
    lse: Arc<Vec<f64>>,
    count: usize,
}

/// The loss of rows of `classes` logits; applied as `logits.apply_op2(targets, ..)`.
struct XentOp {
    classes: usize,
    options: CrossEntropyOptions,
    saved: Mutex<Option<Saved>>,
}

/// A target index as `i64`, whatever its stored type.
trait Index: Copy + Into<i64> + candle_core::WithDType {}
impl Index for u8 {}
impl Index for u32 {}
impl Index for i64 {}

/// Calls `$f::<T, I>` after the logits' and the targets' dtypes.
macro_rules! xent_dispatch {
    ($x:expr, $t:expr, $name:expr, $f:ident ( $($arg:expr),* )) => {{
        match ($x, $t) {
            (CpuStorage::F32(_), CpuStorage::U8(_)) => $f::<f32, u8>($($arg),*),
            (CpuStorage::F32(_), CpuStorage::U32(_)) => $f::<f32, u32>($($arg),*),
            (CpuStorage::F32(_), CpuStorage::I64(_)) => $f::<f32, i64>($($arg),*),
            (CpuStorage::F64(_), CpuStorage::U8(_)) => $f::<f64, u8>($($arg),*),
            (CpuStorage::F64(_), CpuStorage::U32(_)) => $f::<f64, u32>($($arg),*),
            (CpuStorage::F64(_), CpuStorage::I64(_)) => $f::<f64, i64>($($arg),*),
            (x, _) => Err(candle_core::Error::UnsupportedDTypeForOp(x.dtype(), $name)),
        }
    }};
}

impl XentOp {
    fn forward<T: Real, I: Index>(&self, x: &[T], t: &[I]) -> Result<(CpuStorage, Shape)> {
        let (classes, eps) = (self.classes, self.options.label_smoothing);
        let mut lse = vec![0f64; t.len()];
        let (mut total, mut count) = (0f64, 0usize);
        for (position, ((row, &target), lse)) in x.chunks_exact(classes).zip(t).zip(&mut lse).enumerate() {
            let target: i64 = target.into();
            if target == self.options.ignore_index {
                continue;
            }
            if !(0..classes as i64).contains(&target) {
                let ignore_index = self.options.ignore_index;
                return Err(LossError::Target { target, position, classes, ignore_index }.into());
            }
            let max = row_max(row);
            *lse = max.to_f64() + row_sum(row, |v| (v - max).exp()).to_f64().ln();
            let mut loss = *lse - row[target as usize].to_f64();
            if eps > 0.0 {
                // -Σ_c log p_c / C = lse - mean(x)
                let smooth = *lse - row_sum(row, |v| v).to_f64() / classes as f64;
                loss = (1.0 - eps) * loss + eps * smooth;
            }
            total += loss;
            count += 1;
        }
        *self.saved.lock().unwrap_or_else(|e| e.into_inner()) = Some(Saved { lse: Arc::new(lse), count });
        // 0/0 = NaN when every target is ignored, as torch
        let loss = T::from_f64(total / count as f64);
        Ok((T::to_cpu_storage_owned(vec![loss]), Shape::from(())))
    }
}

impl CustomOp2 for XentOp {
    fn name(&self) -> &'static str {
        "lightning-cross-entropy"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        fn f<T: Real, I: Index>(
            op: &XentOp,
            s1: &CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            op.forward(contiguous::<T>(s1, l1, "logits")?, contiguous::<I>(s2, l2, "targets")?)
        }
        xent_dispatch!(s1, s2, self.name(), f(self, s1, l1, s2, l2))
    }

    fn bwd(&self, x: &Tensor, t: &Tensor, _loss: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        if !x.track_op() {
            return Ok((None, None));
        }
        let saved = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        let Some(Saved { lse, count }) = saved.as_ref() else {
            candle_core::bail!("cross_entropy: backward before forward")
        };
        let g = grad.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let op = XentGrad { classes: self.classes, options: self.options, scale: g / *count as f64, lse: lse.clone() };
        Ok((Some(x.apply_op2_no_bwd(t, &op)?), None))
    }
}

/// `scale·(softmax(x) - (1 - ε)·onehot - ε/C)` per row not ignored, 0 for the others.
/// Applied as `logits.apply_op2_no_bwd(targets, ..)`.
struct XentGrad {
    classes: usize,
    options: CrossEntropyOptions,
    scale: f64,
    lse: Arc<Vec<f64>>,
}

impl XentGrad {
    fn run<T: Real, I: Index>(&self, x: &[T], t: &[I]) -> Result<(CpuStorage, Shape)> {
        let (classes, eps) = (self.classes, self.options.label_smoothing);
        let scale = T::from_f64(self.scale);
        let off = T::from_f64(self.scale * eps / classes as f64);
        let on = T::from_f64(self.scale * (1.0 - eps));
        let mut dx = vec![T::from_f64(0.0); x.len()];
        let rows = x.chunks_exact(classes).zip(dx.chunks_exact_mut(classes)).zip(t.iter().zip(self.lse.iter()));
        for ((row, out), (&target, &lse)) in rows {
            let target: i64 = target.into();
            // the forward pass checked the range of every target not ignored
            if target == self.options.ignore_index {
                continue;
            }
            let lse = T::from_f64(lse);
            for (o, &v) in out.iter_mut().zip(row) {
                *o = scale * (v - lse).exp() - off;
            }
            out[target as usize] -= on;
        }
        Ok((T::to_cpu_storage_owned(dx), (x.len() / classes, classes).into()))
    }
}

impl CustomOp2 for XentGrad {
    fn name(&self) -> &'static str {
        "lightning-cross-entropy-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        fn f<T: Real, I: Index>(
            op: &XentGrad,
            s1: &CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            op.run(contiguous::<T>(s1, l1, "logits")?, contiguous::<I>(s2, l2, "targets")?)
        }
        xent_dispatch!(s1, s2, self.name(), f(self, s1, l1, s2, l2))
    }
}
