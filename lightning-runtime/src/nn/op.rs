//! The candle custom-op plumbing the layers share: the dispatch over f32/f64 and the
//! contiguous slices, so that each kernel is one function generic over the element type.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, WithDType};

/// The elements of a contiguous CPU storage (the layers pass contiguous tensors).
pub(crate) fn contiguous<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [T]> {
    let (start, end) =
        l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg(format!("{what} is not contiguous")))?;
    Ok(&T::cpu_storage_as_slice(s)?[start..end])
}

/// Calls `$f::<f32>` or `$f::<f64>` after the storage's dtype; other dtypes are an error (the
/// layers send them to candle's own ops before they get here).
macro_rules! float_dispatch {
    ($s:expr, $name:expr, $f:ident ( $($arg:expr),* )) => {
        match $s {
            CpuStorage::F32(_) => $f::<f32, _>($($arg),*),
            CpuStorage::F64(_) => $f::<f64, _>($($arg),*),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), $name)),
        }
    };
}

/// A layer's forward kernel `y = f(x, w) [+ b]` and its gradients.
pub(crate) trait LayerKernel: Send + Sync + 'static {
    const NAME: &'static str;
    fn forward<T: WithDType>(&self, x: &[T], w: &[T], b: Option<&[T]>) -> Result<(CpuStorage, Shape)>;
    /// The gradients of the input (when it needs one), the weight and the bias (`bias`).
    fn grads(&self, x: &Tensor, w: &Tensor, bias: bool, dy: &Tensor) -> Result<[Option<Tensor>; 3]>;
}

/// A [`LayerKernel`] as a candle op: `x.apply_op2(w, ..)` without a bias,
/// `x.apply_op3(w, b, ..)` with one.
pub(crate) struct LayerOp<K>(pub K);

impl<K: LayerKernel> CustomOp2 for LayerOp<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        self.run((s1, l1), (s2, l2), None)
    }
    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let [dx, dw, _] = self.0.grads(x, w, false, dy)?;
        Ok((dx, dw))
    }
}

impl<K: LayerKernel> CustomOp3 for LayerOp<K> {
    fn name(&self) -> &'static str {
        K::NAME
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
        self.run((s1, l1), (s2, l2), Some((s3, l3)))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let [dx, dw, db] = self.0.grads(x, w, b.track_op(), dy)?;
        Ok((dx, dw, db))
    }
}

impl<K: LayerKernel> LayerOp<K> {
    fn run(
        &self,
        x: (&CpuStorage, &Layout),
        w: (&CpuStorage, &Layout),
        b: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        fn f<T: WithDType, K: LayerKernel>(
            k: &K,
            x: (&CpuStorage, &Layout),
            w: (&CpuStorage, &Layout),
            b: Option<(&CpuStorage, &Layout)>,
        ) -> Result<(CpuStorage, Shape)> {
            let b = b.map(|(s, l)| contiguous::<T>(s, l, "bias")).transpose()?;
            k.forward(contiguous::<T>(x.0, x.1, "input")?, contiguous::<T>(w.0, w.1, "weight")?, b)
        }
        float_dispatch!(x.0, K::NAME, f(&self.0, x, w, b))
    }
}

/// A backward kernel of two operands (an output gradient and a forward operand).
pub(crate) trait GradKernel: Send + Sync + 'static {
    const NAME: &'static str;
    fn run<T: WithDType>(&self, a: &[T], b: &[T]) -> Result<(CpuStorage, Shape)>;
}

/// A [`GradKernel`] as a candle op without a backward of its own: `a.apply_op2_no_bwd(b, ..)`.
pub(crate) struct GradOp<K>(pub K);

impl<K: GradKernel> CustomOp2 for GradOp<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        fn f<T: WithDType, K: GradKernel>(
            k: &K,
            s1: &CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            k.run(contiguous::<T>(s1, l1, "output gradient")?, contiguous::<T>(s2, l2, "operand")?)
        }
        float_dispatch!(s1, K::NAME, f(&self.0, s1, l1, s2, l2))
    }
}
