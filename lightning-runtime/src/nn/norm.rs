//! [`LayerNorm`] and [`RmsNorm`]: candle-nn's, with a CPU forward and backward of their own.
//!
//! candle-nn 0.11's fast `LayerNorm` (contiguous input with a bias) and `RmsNorm` run
//! through `apply_op*_no_bwd`: no gradient reaches the layer's weights or anything before
//! it. These layers are one candle custom op each on the CPU for f32 and f64: forward
//! `y = (x - μ)·r·w + b` with `r = 1/√(σ² + ε)` (RMS norm: no `μ`, no `b`, mean square for
//! `σ²`); backward (as llm.c's layernorm) `dx = r·(dy·w - mean(dy·w) - x̂·mean(dy·w·x̂))`,
//! `dw = Σ dy·x̂`, `db = Σ dy`, from the row statistics the forward pass kept. On other devices and
//! dtypes they run candle-nn's differentiable composition (its slow path).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Module, Result, Shape, Tensor, WithDType, D};
use candle_nn::{LayerNormConfig, VarBuilder};

use std::sync::{Arc, Mutex};

use super::math::{row_dot, row_sum, row_sum_f64};
use super::op::{contiguous, LayerKernel, LayerOp};
use crate::devices::relocate::{Relocate, Relocation};

/// Layer normalisation over the last dimension, with candle-nn's parameters `weight`
/// (ones) and optional `bias` (zeros), its `eps` and `remove_mean`.
///
/// ```
/// use lightning::candle::{DType, Device, Module, Tensor};
/// use lightning::candle_nn::{VarBuilder, VarMap};
/// let vars = VarMap::new();
/// let ln = lightning::nn::layer_norm(4, 1e-5, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu).pp("ln"))?;
/// let y = ln.forward(&Tensor::new(&[[1f32, 2., 3., 4.]], &Device::Cpu)?)?;
/// assert!(y.sum_all()?.to_scalar::<f32>()?.abs() < 1e-5);
/// assert!(vars.data().lock().unwrap().contains_key("ln.weight"));
/// # Ok::<(), lightning::candle::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Option<Tensor>,
    remove_mean: bool,
    eps: f64,
}

/// RMS normalisation over the last dimension (no mean removed, no bias), with candle-nn's
/// parameter `weight` (ones).
#[derive(Clone, Debug)]
pub struct RmsNorm(LayerNorm);

/// candle-nn's `layer_norm`: `weight` (or `gamma`) and, when `affine`, `bias` (or `beta`).
pub fn layer_norm(size: usize, config: impl Into<LayerNormConfig>, vb: VarBuilder) -> Result<LayerNorm> {
    Ok(candle_nn::layer_norm(size, config, vb)?.into())
}

/// candle-nn's `layer_norm_no_bias`.
pub fn layer_norm_no_bias(size: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    Ok(candle_nn::layer_norm_no_bias(size, eps, vb)?.into())
}

/// candle-nn's `rms_norm`: one parameter, `weight`.
pub fn rms_norm(size: usize, eps: f64, vb: VarBuilder) -> Result<RmsNorm> {
    Ok(candle_nn::rms_norm(size, eps, vb)?.into())
}

impl From<candle_nn::LayerNorm> for LayerNorm {
    fn from(l: candle_nn::LayerNorm) -> Self {
        LayerNorm { weight: l.weight().clone(), bias: l.bias().cloned(), remove_mean: l.remove_mean(), eps: l.eps() }
    }
}

impl From<candle_nn::RmsNorm> for RmsNorm {
    fn from(l: candle_nn::RmsNorm) -> Self {
        RmsNorm(l.into_inner().into())
    }
}

impl LayerNorm {
    /// With a bias, removing the mean (candle-nn's `LayerNorm::new`).
    pub fn new(weight: Tensor, bias: Tensor, eps: f64) -> Self {
        LayerNorm { weight, bias: Some(bias), remove_mean: true, eps }
    }

    /// Without a bias.
    pub fn new_no_bias(weight: Tensor, eps: f64) -> Self {
        LayerNorm { weight, bias: None, remove_mean: true, eps }
    }

    /// RMS normalisation: no mean removed, no bias (candle-nn's `LayerNorm::rms_norm`).
    pub fn rms_norm(weight: Tensor, eps: f64) -> Self {
        LayerNorm { weight, bias: None, remove_mean: false, eps }
    }

    /// The scale, one per feature (the last dimension).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The shift, one per feature, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Added to the variance (the mean square, without mean removal) before its square root.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// Whether the mean is removed (layer norm) or not (RMS norm).
    pub fn remove_mean(&self) -> bool {
        self.remove_mean
    }

    fn fast(&self, x: &Tensor, cols: usize) -> bool {
        let same = |t: &Tensor| t.dtype() == x.dtype() && t.dims() == [cols];
        x.device().is_cpu()
            && matches!(x.dtype(), DType::F32 | DType::F64)
            && same(&self.weight)
            && self.bias.as_ref().is_none_or(same)
    }

    /// candle-nn's differentiable composition (its path for non-contiguous inputs).
    fn composed(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(if matches!(dtype, DType::F16 | DType::BF16) { DType::F32 } else { dtype })?;
        let cols = x.dim(D::Minus1)? as f64;
        let x = if self.remove_mean { x.broadcast_sub(&(x.sum_keepdim(D::Minus1)? / cols)?)? } else { x };
        let ms = (x.sqr()?.sum_keepdim(D::Minus1)? / cols)?;
        let y = x.broadcast_div(&(ms + self.eps)?.sqrt()?)?.to_dtype(dtype)?.broadcast_mul(&self.weight)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let cols = x.dim(D::Minus1)?;
        if !self.fast(x, cols) || x.elem_count() == 0 {
            return self.composed(x);
        }
        let op = LayerOp(NormOp { cols, eps: self.eps, remove_mean: self.remove_mean, saved: Mutex::new(None) });
        let x2 = x.contiguous()?;
        let w = self.weight.contiguous()?;
        let y = match &self.bias {
            Some(b) => x2.apply_op3(&w, &b.contiguous()?, op)?,
            None => x2.apply_op2(&w, op)?,
        };
        y.reshape(x.shape())
    }
}

impl RmsNorm {
    /// RMS normalisation with this scale (one per feature) and `eps`.
    pub fn new(weight: Tensor, eps: f64) -> Self {
        RmsNorm(LayerNorm::rms_norm(weight, eps))
    }

    /// The scale, one per feature (the last dimension).
    pub fn weight(&self) -> &Tensor {
        self.0.weight()
    }

    /// Added to the mean square before its square root.
    pub fn eps(&self) -> f64 {
        self.0.eps
    }

    /// The [`LayerNorm`] it is (with no mean removed and no bias).
    pub fn into_inner(self) -> LayerNorm {
        self.0
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.0.forward(x)
    }
}

impl Relocate for LayerNorm {
    fn relocate(&mut self, to: &Relocation) -> crate::Result<()> {
        self.weight = to.tensor(&self.weight)?;
        self.bias = self.bias.as_ref().map(|b| to.tensor(b)).transpose()?;
        Ok(())
    }
}

impl Relocate for RmsNorm {
    fn relocate(&mut self, to: &Relocation) -> crate::Result<()> {
        self.0.relocate(to)
    }
}

/// Normalisation of rows of `cols` elements. The forward pass keeps each row's mean and
/// `1/√(σ² + ε)` for the backward pass.
#[derive(Debug)]
struct NormOp {
    cols: usize,
    eps: f64,
    remove_mean: bool,
    /// `[mean, r]` per row, from the forward pass.
    saved: Mutex<Option<Arc<Vec<f64>>>>,
}

impl NormOp {
    /// The row's mean (0 without `remove_mean`) and `1/√(σ² + ε)`, accumulated in f64.
    fn stats<T: WithDType>(&self, row: &[T]) -> (f64, f64) {
        let n = self.cols as f64;
        let mean = if self.remove_mean { row_sum_f64(row, |v| v) / n } else { 0.0 };
        let var = row_sum_f64(row, |v| (v - mean) * (v - mean)) / n;
        (mean, 1.0 / (var + self.eps).sqrt())
    }
}

impl LayerKernel for NormOp {
    const NAME: &'static str = "lightning-layer-norm";

    fn forward<T: WithDType>(&self, x: &[T], w: &[T], b: Option<&[T]>) -> Result<(CpuStorage, Shape)> {
        let mut y = vec![T::from_f64(0.0); x.len()];
        let mut stats = Vec::with_capacity(2 * x.len() / self.cols);
        for (xr, yr) in x.chunks_exact(self.cols).zip(y.chunks_exact_mut(self.cols)) {
            let (mean, r) = self.stats(xr);
            stats.extend([mean, r]);
            let row = yr.iter_mut().zip(xr).zip(w);
            match b {
                Some(b) => row.zip(b).for_each(|(((o, v), w), b)| {
                    *o = T::from_f64((v.to_f64() - mean) * r * w.to_f64() + b.to_f64());
                }),
                None => row.for_each(|((o, v), w)| *o = T::from_f64((v.to_f64() - mean) * r * w.to_f64())),
            }
        }
        *self.saved.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(stats));
        Ok((T::to_cpu_storage_owned(y), x.len().into()))
    }

    fn grads(&self, x: &Tensor, w: &Tensor, bias: bool, dy: &Tensor) -> Result<[Option<Tensor>; 3]> {
        let stats = self.saved.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let stats = stats.ok_or_else(|| candle_core::Error::Msg("layer_norm: backward before forward".into()))?;
        let shape = x.shape().clone();
        let grad = NormGrad { cols: self.cols, remove_mean: self.remove_mean, stats };
        let all = dy.contiguous()?.apply_op3_no_bwd(x, w, &grad)?;
        let n = x.elem_count();
        let dx = x.track_op().then(|| all.narrow(0, 0, n)?.reshape(&shape)).transpose()?;
        let dw = w.track_op().then(|| all.narrow(0, n, self.cols)).transpose()?;
        let db = if bias { Some(all.narrow(0, n + self.cols, self.cols)?) } else { None };
        Ok([dx, dw, db])
    }
}

/// `[dx | dw | db]` in one flat tensor from `dy`, `x`, `w` and the forward pass's row
/// statistics. Applied as `dy.apply_op3(x, w)`.
struct NormGrad {
    cols: usize,
    remove_mean: bool,
    stats: Arc<Vec<f64>>,
}

impl NormGrad {
    fn run<T: WithDType>(&self, dy: &[T], x: &[T], w: &[T]) -> Result<(CpuStorage, Shape)> {
        let (cols, n) = (self.cols, x.len());
        let mut out = vec![T::from_f64(0.0); n + 2 * cols];
        let (dx, rest) = out.split_at_mut(n);
        let (mut dw, mut db) = (vec![0f64; cols], vec![0f64; cols]);
        // per row: x̂ and dy·w, in f64
        let (mut xhat, mut gw) = (vec![0f64; cols], vec![0f64; cols]);
        let w: Vec<f64> = w.iter().map(|v| v.to_f64()).collect();
        let rows = x.chunks_exact(cols).zip(dy.chunks_exact(cols)).zip(dx.chunks_exact_mut(cols));
        for (((xr, gr), dxr), s) in rows.zip(self.stats.chunks_exact(2)) {
            let (mean, r) = (s[0], s[1]);
            for j in 0..cols {
                let (xh, g) = ((xr[j].to_f64() - mean) * r, gr[j].to_f64());
                xhat[j] = xh;
                gw[j] = g * w[j];
                dw[j] += g * xh;
                db[j] += g;
            }
            let m1 = if self.remove_mean { row_sum(&gw, |v| v) / cols as f64 } else { 0.0 };
            let m2 = row_dot(&gw, &xhat) / cols as f64;
            for ((o, &g), &xh) in dxr.iter_mut().zip(&gw).zip(&xhat) {
                *o = T::from_f64(r * (g - m1 - xh * m2));
            }
        }
        for (o, v) in rest.iter_mut().zip(dw.iter().chain(&db)) {
            *o = T::from_f64(*v);
        }
        Ok((T::to_cpu_storage_owned(out), (n + 2 * cols).into()))
    }
}

impl CustomOp3 for NormGrad {
    fn name(&self) -> &'static str {
        "lightning-layer-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        match s1 {
            CpuStorage::F32(_) => {
                self.run::<f32>(contiguous(s1, l1, "dy")?, contiguous(s2, l2, "x")?, contiguous(s3, l3, "w")?)
            }
            CpuStorage::F64(_) => {
                self.run::<f64>(contiguous(s1, l1, "dy")?, contiguous(s2, l2, "x")?, contiguous(s3, l3, "w")?)
            }
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), self.name())),
        }
    }
}
