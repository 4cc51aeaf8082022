//! Fused Adam/AdamW updates on the CPU: each buffer and the parameter are updated in place in
//! one pass over memory (candle in-place custom ops), instead of about ten tensor ops that
//! each allocate a parameter-sized result. Arithmetic is in the parameter's dtype (as torch's)
//! and follows torch's formulas, so the torch parity tests hold for this path too; in f32 the
//! loops vectorise.

use candle_core::backend::BackendStorage;

use crate::nn::op::contiguous;
use candle_core::{CpuStorage, DType, InplaceOp3, Layout, Result, Tensor, WithDType};

/// Adam's settings for one step of one parameter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdamStep {
    pub b1: f64,
    pub b2: f64,
    pub eps: f64,
    pub amsgrad: bool,
    /// Adam's L2 decay, added to the gradient (`g + wd·p`).
    pub l2: f64,
    /// AdamW's decoupled decay factor `1 − lr·wd` applied to the parameter.
    pub shrink: f64,
    pub lr: f64,
    pub step: u64,
}

/// The float types the kernels run on.
trait Real: WithDType + std::ops::Neg<Output = Self> {
    fn sqrt(self) -> Self;
}

impl Real for f32 {
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
}

impl Real for f64 {
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
}

fn range(l: &Layout) -> Result<std::ops::Range<usize>> {
    let (a, b) = l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("fused adam: not contiguous".into()))?;
    Ok(a..b)
}

/// Runs `$body` with `$dst` bound to the destination's elements and `$T` to their type.
macro_rules! on_dst {
    ($dst:expr, $l:expr, |$d:ident: $T:ident| $body:expr) => {
        match $dst {
            CpuStorage::F32(v) => {
                type $T = f32;
                let $d = &mut v[range($l)?];
                $body
            }
            CpuStorage::F64(v) => {
                type $T = f64;
                let $d = &mut v[range($l)?];
                $body
            }
            other => return Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "fused adam")),
        }
    };
}

/// A first or second moment: `m = β·m + (1−β)·g'` or `v = β·v + (1−β)·g'²`, where
/// `g' = g + l2·p`. In place on the moment; sources `[g, p]`.
struct Moment {
    beta: f64,
    square: bool,
    l2: f64,
}

impl Moment {
    /// The kernel compiled for AVX2 when the CPU has it (8 f32 lanes instead of SSE's 4: the
    /// crate is built for baseline x86-64); no FMA, so results are the same bits either way.
    fn run<T: Real>(&self, m: &mut [T], g: &[T], p: &[T]) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            #[target_feature(enable = "avx2")]
            unsafe fn wide<T: Real>(op: &Moment, m: &mut [T], g: &[T], p: &[T]) {
                op.kernel(m, g, p)
            }
            // SAFETY: the CPU has AVX2, checked just above
            return unsafe { wide(self, m, g, p) };
        }
        self.kernel(m, g, p)
    }

    #[inline(always)]
    fn kernel<T: Real>(&self, m: &mut [T], g: &[T], p: &[T]) {
        let (b, c, l2) = (T::from_f64(self.beta), T::from_f64(1.0 - self.beta), T::from_f64(self.l2));
        // separate loops keep each one branch-free, so they vectorise
        match (self.square, self.l2 != 0.0) {
            (false, false) => m.iter_mut().zip(g).for_each(|(m, &g)| *m = *m * b + g * c),
            (true, false) => m.iter_mut().zip(g).for_each(|(m, &g)| *m = *m * b + g * g * c),
            (false, true) => m.iter_mut().zip(g).zip(p).for_each(|((m, &g), &p)| *m = *m * b + (g + l2 * p) * c),
            (true, true) => m.iter_mut().zip(g).zip(p).for_each(|((m, &g), &p)| {
                let g = g + l2 * p;
                *m = *m * b + g * g * c
            }),
        }
    }
}

impl InplaceOp3 for Moment {
    fn name(&self) -> &'static str {
        "lightning-adam-moment"
    }
    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        g: &CpuStorage,
        gl: &Layout,
        p: &CpuStorage,
        pl: &Layout,
    ) -> Result<()> {
        on_dst!(dst, dst_l, |m: T| self.run::<T>(m, contiguous(g, gl, "gradient")?, contiguous(p, pl, "parameter")?));
        Ok(())
    }
}

/// AMSGrad's running maximum: `vmax = max(vmax, v)`. In place on `vmax`; sources `[v, v]`.
struct Maximum;

impl InplaceOp3 for Maximum {
    fn name(&self) -> &'static str {
        "lightning-adam-max"
    }
    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        v: &CpuStorage,
        vl: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<()> {
        fn run<T: WithDType>(m: &mut [T], v: &[T]) {
            for (m, &v) in m.iter_mut().zip(v) {
                if v > *m {
                    *m = v;
                }
            }
        }
        on_dst!(dst, dst_l, |m: T| run::<T>(m, contiguous(v, vl, "second moment")?));
        Ok(())
    }
}

/// The parameter update: `p = p·shrink − (lr/bc1)·m / (√v/√bc2 + eps)`. In place on `p`;
/// sources `[m, v]` (`v` is AMSGrad's maximum when on).
struct Apply {
    shrink: f64,
    step_size: f64,
    bc2_sqrt: f64,
    eps: f64,
}

impl Apply {
    /// As [`Moment::run`]: AVX2 when the CPU has it.
    fn run<T: Real>(&self, p: &mut [T], m: &[T], v: &[T]) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            #[target_feature(enable = "avx2")]
            unsafe fn wide<T: Real>(op: &Apply, p: &mut [T], m: &[T], v: &[T]) {
                op.kernel(p, m, v)
            }
            // SAFETY: the CPU has AVX2, checked just above
            return unsafe { wide(self, p, m, v) };
        }
        self.kernel(p, m, v)
    }

    #[inline(always)]
    fn kernel<T: Real>(&self, p: &mut [T], m: &[T], v: &[T]) {
        // √v/√bc2 as a product with the reciprocal: one division per element instead of two
        let (shrink, step, inv_bc2, eps) = (
            T::from_f64(self.shrink),
            T::from_f64(self.step_size),
            T::from_f64(1.0 / self.bc2_sqrt),
            T::from_f64(self.eps),
        );
        for ((p, &m), &v) in p.iter_mut().zip(m).zip(v) {
            *p = *p * shrink - step * (m / (v.sqrt() * inv_bc2 + eps));
        }
    }
}

impl InplaceOp3 for Apply {
    fn name(&self) -> &'static str {
        "lightning-adam-apply"
    }
    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        m: &CpuStorage,
        ml: &Layout,
        v: &CpuStorage,
        vl: &Layout,
    ) -> Result<()> {
        on_dst!(dst, dst_l, |p: T| self.run::<T>(
            p,
            contiguous(m, ml, "first moment")?,
            contiguous(v, vl, "second moment")?
        ));
        Ok(())
    }
}

/// Whether the fused path applies: CPU, f32 or f64, one dtype, contiguous, same shape.
fn fusable(p: &Tensor, g: &Tensor, state: &[Option<Tensor>]) -> bool {
    let ok = |t: &Tensor| t.device().is_cpu() && t.dtype() == p.dtype() && t.is_contiguous() && t.dims() == p.dims();
    matches!(p.dtype(), DType::F32 | DType::F64) && ok(p) && ok(g) && state.iter().flatten().all(ok)
}

/// One Adam/AdamW step of `p` in place, with the moments in `state` (exp_avg, exp_avg_sq,
/// max_exp_avg_sq) updated in place too; `false` (and nothing changed) when the tensors don't
/// allow the fused path.
pub(crate) fn adam_in_place(s: AdamStep, p: &Tensor, g: &Tensor, state: &mut [Option<Tensor>]) -> Result<bool> {
    if !fusable(p, g, state) {
        return Ok(false);
    }
    let zeros = |slot: &mut Option<Tensor>| -> Result<Tensor> {
        Ok(match slot {
            Some(t) => t.clone(),
            None => slot.insert(p.zeros_like()?).clone(),
        })
    };
    let (m, v) = (zeros(&mut state[0])?, zeros(&mut state[1])?);
    m.inplace_op3(g, p, &Moment { beta: s.b1, square: false, l2: s.l2 })?;
    v.inplace_op3(g, p, &Moment { beta: s.b2, square: true, l2: s.l2 })?;
    let second = if s.amsgrad {
        let vmax = zeros(&mut state[2])?;
        vmax.inplace_op3(&v, &v, &Maximum)?;
        vmax
    } else {
        v
    };
    let bc1 = 1.0 - s.b1.powi(s.step as i32);
    let bc2_sqrt = (1.0 - s.b2.powi(s.step as i32)).sqrt();
    p.inplace_op3(&m, &second, &Apply { shrink: s.shrink, step_size: s.lr / bc1, bc2_sqrt, eps: s.eps })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use crate::optim::engine::Rule;
    use crate::optim::{AdamConfig, AdamWConfig};

    /// The fused steps equal the tensor-op steps (the ones the torch parity tests check
    /// first), buffers included, over several steps.
    fn same_steps(rule: &impl Rule, dtype: DType, tol: f64) {
        let dev = Device::Cpu;
        let p0 = Tensor::randn(0f64, 1.0, (7, 5), &dev).unwrap().to_dtype(dtype).unwrap();
        let (p_fused, mut s_fused) = (p0.copy().unwrap(), vec![None, None, None]);
        let (mut p_ops, mut s_ops) = (p0.copy().unwrap(), vec![None, None, None]);
        for step in 1..=6 {
            let g = Tensor::randn(0f64, 1.0, (7, 5), &dev).unwrap().to_dtype(dtype).unwrap();
            assert!(rule.update_in_place(1e-2, step, &p_fused, &g, &mut s_fused).unwrap());
            p_ops = rule.update(1e-2, step, &p_ops, &g, &mut s_ops).unwrap();
        }
        let diff = |a: &Tensor, b: &Tensor| {
            let d = (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap()).unwrap();
            d.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap()
        };
        assert!(diff(&p_fused, &p_ops) <= tol, "parameters differ by {}", diff(&p_fused, &p_ops));
        for (a, b) in s_fused.iter().zip(&s_ops) {
            if let (Some(a), Some(b)) = (a, b) {
                assert!(diff(a, b) <= tol, "buffers differ by {}", diff(a, b));
            }
        }
    }

    #[test]
    fn fused_adam_equals_the_tensor_ops() {
        for dtype in [DType::F64, DType::F32] {
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            same_steps(&AdamConfig::default(), dtype, tol);
            same_steps(&AdamConfig { weight_decay: 0.1, amsgrad: true, ..Default::default() }, dtype, tol);
            same_steps(&AdamWConfig { weight_decay: 0.05, ..Default::default() }, dtype, tol);
            same_steps(&AdamWConfig { amsgrad: true, ..Default::default() }, dtype, tol);
        }
    }

    #[test]
    fn other_dtypes_and_layouts_take_the_tensor_ops() {
        let dev = Device::Cpu;
        let p = Tensor::zeros((3, 4), DType::BF16, &dev).unwrap();
        let g = Tensor::ones((3, 4), DType::BF16, &dev).unwrap();
        assert!(!AdamConfig::default().update_in_place(1e-3, 1, &p, &g, &mut [None, None, None]).unwrap());
        let p = Tensor::zeros((3, 4), DType::F32, &dev).unwrap();
        let g = Tensor::ones((4, 3), DType::F32, &dev).unwrap().t().unwrap();
        let mut state = [None, None, None];
        assert!(!AdamConfig::default().update_in_place(1e-3, 1, &p, &g, &mut state).unwrap());
        assert!(state.iter().all(Option::is_none), "nothing changes when the fused path is not taken");
    }
}
