//! [`gelu`] (erf form), [`gelu_tanh`] and [`silu`]: one vectorised pass forward and one
//! backward, from `nn/math.rs`'s `exp` and `Φ` instead of libm per element.
//!
//! The tanh form is computed as `x·σ(2u)`, `u = √(2/π)·(x + 0.044715·x³)`, which equals
//! `½·x·(1 + tanh u)` without its cancellation for negative `x`; likewise the erf form is
//! `x·Φ(x)` with `Φ` accurate in both tails.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};

use super::math::Real;
use super::op::contiguous;

/// GELU, erf form (torch's default `approximate="none"`): `x·Φ(x)`.
///
/// ```
/// use lightning::candle::{Device, Tensor};
/// let x = Tensor::new(&[-1f32, 0., 1.], &Device::Cpu)?;
/// let y = lightning::nn::gelu(&x)?.to_vec1::<f32>()?;
/// assert!((y[2] - 0.841_344_7).abs() < 1e-6 && y[1] == 0.0);
/// # Ok::<(), lightning::candle::Error>(())
/// ```
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    activate(x, Activation::Gelu)
}

/// GELU, tanh form (torch's `approximate="tanh"`, candle's `gelu`):
/// `½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    activate(x, Activation::GeluTanh)
}

/// SiLU (swish): `x·σ(x)`.
pub fn silu(x: &Tensor) -> Result<Tensor> {
    activate(x, Activation::Silu)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Activation {
    Gelu,
    GeluTanh,
    Silu,
}

fn activate(x: &Tensor, act: Activation) -> Result<Tensor> {
    if !x.device().is_cpu() || !matches!(x.dtype(), DType::F32 | DType::F64) {
        // candle's own, which have gradients
        return match act {
            Activation::Gelu => x.gelu_erf(),
            Activation::GeluTanh => x.gelu(),
            Activation::Silu => x.silu(),
        };
    }
    x.contiguous()?.apply_op1(act)
}

/// `√(2/π)` and the cubic coefficient of the tanh form.
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const CUBIC: f64 = 0.044_715;

/// `y = f(x)` elementwise. A plain loop into a buffer, inlined with `f` (given as a `move`
/// closure) into its caller: through `collect`, the compiler reloaded the closure's captures
/// on every element and did not vectorise.
#[inline(always)]
fn map<T: Real>(x: &[T], f: impl Fn(T) -> T) -> CpuStorage {
    let mut y = vec![T::from_f64(0.0); x.len()];
    for (o, &v) in y.iter_mut().zip(x) {
        *o = f(v);
    }
    T::to_cpu_storage_owned(y)
}

/// `dx = dy·f'(x)` elementwise, as [`map`].
#[inline(always)]
fn map2<T: Real>(dy: &[T], x: &[T], f: impl Fn(T, T) -> T) -> CpuStorage {
    let mut dx = vec![T::from_f64(0.0); x.len()];
    for ((o, &g), &v) in dx.iter_mut().zip(dy).zip(x) {
        *o = f(g, v);
    }
    T::to_cpu_storage_owned(dx)
}

impl Activation {
    fn forward<T: Real>(self, x: &[T]) -> CpuStorage {
        let (a, b) = (T::from_f64(2.0 * SQRT_2_OVER_PI), T::from_f64(2.0 * SQRT_2_OVER_PI * CUBIC));
        match self {
            Activation::Gelu => map(x, move |v| v * v.normal_cdf()),
            Activation::GeluTanh => map(x, move |v| v * (v * (a + b * v * v)).sigmoid()),
            Activation::Silu => map(x, move |v| v * v.sigmoid()),
        }
    }

    fn backward<T: Real>(self, dy: &[T], x: &[T]) -> CpuStorage {
        let one = T::from_f64(1.0);
        let (a, b) = (T::from_f64(2.0 * SQRT_2_OVER_PI), T::from_f64(2.0 * SQRT_2_OVER_PI * CUBIC));
        let b3 = T::from_f64(3.0 * 2.0 * SQRT_2_OVER_PI * CUBIC);
        match self {
            // Φ(x) + x·φ(x)
            Activation::Gelu => map2(dy, x, move |g, v| g * (v.normal_cdf() + v * v.normal_pdf())),
            // s + x·s·(1 - s)·2u', s = σ(2u)
            Activation::GeluTanh => map2(dy, x, move |g, v| {
                let s = (v * (a + b * v * v)).sigmoid();
                g * (s + v * s * (one - s) * (a + b3 * v * v))
            }),
            // s·(1 + x·(1 - s)), s = σ(x)
            Activation::Silu => map2(dy, x, move |g, v| {
                let s = v.sigmoid();
                g * s * (one + v * (one - s))
            }),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Activation::Gelu => "lightning-gelu",
            Activation::GeluTanh => "lightning-gelu-tanh",
            Activation::Silu => "lightning-silu",
        }
    }
}

impl CustomOp1 for Activation {
    fn name(&self) -> &'static str {
        Activation::name(*self)
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = match s {
            CpuStorage::F32(_) => self.forward(contiguous::<f32>(s, l, "input")?),
            CpuStorage::F64(_) => self.forward(contiguous::<f64>(s, l, "input")?),
            other => return Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), self.name())),
        };
        Ok((y, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(dy.contiguous()?.apply_op2_no_bwd(x, &ActivationGrad(*self))?))
    }
}

/// The backward pass: `dy.apply_op2_no_bwd(x, ..)`.
struct ActivationGrad(Activation);

impl CustomOp2 for ActivationGrad {
    fn name(&self) -> &'static str {
        "lightning-activation-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let dx = match s1 {
            CpuStorage::F32(_) => self.0.backward(contiguous::<f32>(s1, l1, "dy")?, contiguous::<f32>(s2, l2, "x")?),
            CpuStorage::F64(_) => self.0.backward(contiguous::<f64>(s1, l1, "dy")?, contiguous::<f64>(s2, l2, "x")?),
            other => return Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), self.name())),
        };
        Ok((dx, l1.shape().clone()))
    }
}
