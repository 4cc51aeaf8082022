//! [`MaxPool2d`]: max pooling that records each window's argmax, optionally fused with a ReLU.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Result, Shape, Tensor, WithDType};

use candle_core::backend::BackendStorage;

use super::op::contiguous;
use super::LayerError;

/// Max pooling over `kernel` windows every `stride` pixels, without padding, as candle's
/// `max_pool2d_with_stride` (and like it, a NaN wins a window only as its first pixel). Its
/// backward pass sends each window's gradient to the window's first maximum, as PyTorch's
/// does. (candle 0.11's own backward scales it by the number of
/// maxima over the window size, so a 2×2 pool passes a quarter of the gradient.)
///
/// [`with_relu`](Self::with_relu) computes `relu(x).max_pool2d(..)` in the same pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaxPool2d {
    kernel: (usize, usize),
    stride: (usize, usize),
    relu: bool,
    name: String,
}

impl MaxPool2d {
    /// A square `kernel`, with the stride equal to it.
    pub fn new(kernel: usize) -> Self {
        MaxPool2d { kernel: (kernel, kernel), stride: (kernel, kernel), relu: false, name: "max_pool2d".into() }
    }

    /// A `kh × kw` window (the stride stays as it was).
    pub fn kernel(mut self, kh: usize, kw: usize) -> Self {
        self.kernel = (kh, kw);
        self
    }

    /// Moves the window by `sh` rows and `sw` columns.
    pub fn stride(mut self, sh: usize, sw: usize) -> Self {
        self.stride = (sh, sw);
        self
    }

    /// Applies a ReLU before pooling, in the same pass.
    pub fn with_relu(mut self) -> Self {
        self.relu = true;
        self
    }

    /// Names the layer in its errors.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The output's (height, width) for an input of shape `input`, or why the layer can't run
    /// on it.
    pub fn check(&self, input: &[usize]) -> std::result::Result<(usize, usize), LayerError> {
        let layer = || self.name.clone();
        for (setting, v) in
            [("kernel size", self.kernel.0.min(self.kernel.1)), ("stride", self.stride.0.min(self.stride.1))]
        {
            if v == 0 {
                return Err(LayerError::Zero { layer: layer(), setting });
            }
        }
        let &[_, _, h, w] = input else { return Err(LayerError::Rank { layer: layer(), input: input.to_vec() }) };
        if self.kernel.0 > h || self.kernel.1 > w {
            return Err(LayerError::KernelTooLarge {
                layer: layer(),
                kernel: self.kernel,
                padded: (h, w),
                input: input.to_vec(),
            });
        }
        Ok(((h - self.kernel.0) / self.stride.0 + 1, (w - self.kernel.1) / self.stride.1 + 1))
    }
}

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (oh, ow) = self.check(x.dims())?;
        if !x.device().is_cpu() || !matches!(x.dtype(), DType::F32 | DType::F64) {
            let x = if self.relu { x.relu()? } else { x.clone() };
            return x.max_pool2d_with_stride(self.kernel, self.stride);
        }
        let (n, c, h, w) = x.dims4()?;
        let op = PoolForward {
            g: PoolGeometry { planes: n * c, h, w, kernel: self.kernel, stride: self.stride, oh, ow, relu: self.relu },
            argmax: Mutex::new(None),
        };
        x.contiguous()?.apply_op1(op)
    }
}

#[derive(Clone, Copy, Debug)]
struct PoolGeometry {
    planes: usize,
    h: usize,
    w: usize,
    kernel: (usize, usize),
    stride: (usize, usize),
    oh: usize,
    ow: usize,
    relu: bool,
}

/// No gradient: the window's maximum was cut by the fused ReLU.
pub(super) const NONE: u32 = u32::MAX;

struct PoolForward {
    g: PoolGeometry,
    /// Per output element, the index of its maximum within the input plane.
    argmax: Mutex<Option<Arc<Vec<u32>>>>,
}

impl PoolForward {
    /// `fast` may pool a 2×2, stride-2 row (ReLU included) and say so: `f32` with AVX-512.
    fn run<T: WithDType>(
        &self,
        x: &[T],
        fast: impl Fn(&[T], usize, u32, &mut [T], &mut [u32]) -> bool,
    ) -> (CpuStorage, Shape) {
        let g = &self.g;
        let per_plane = g.oh * g.ow;
        let mut y = vec![T::from_f64(0.0); g.planes * per_plane];
        let mut arg = vec![0u32; y.len()];
        // Row by row: each output row starts from its windows' top-left pixels, then every
        // kernel row updates the whole output row (no per-window slicing).
        for ((plane, y), arg) in
            x.chunks_exact(g.h * g.w).zip(y.chunks_exact_mut(per_plane)).zip(arg.chunks_exact_mut(per_plane))
        {
            for (oh, (y, arg)) in y.chunks_exact_mut(g.ow).zip(arg.chunks_exact_mut(g.ow)).enumerate() {
                let r0 = oh * g.stride.0;
                if g.kernel == (2, 2) && g.stride == (2, 2) {
                    let (rows, base) = (&plane[r0 * g.w..][..2 * g.w], (r0 * g.w) as u32);
                    if !fast(rows, g.w, base, y, arg) {
                        pool_2x2_row(rows, g.w, base, y, arg);
                        if g.relu {
                            relu_row(y, arg);
                        }
                    }
                    continue;
                }
                for (ow, (b, a)) in y.iter_mut().zip(arg.iter_mut()).enumerate() {
                    *a = (r0 * g.w + ow * g.stride.1) as u32;
                    *b = plane[*a as usize];
                }
                for r in r0..r0 + g.kernel.0 {
                    let row = &plane[r * g.w..][..g.w];
                    for (ow, (b, a)) in y.iter_mut().zip(arg.iter_mut()).enumerate() {
                        let c0 = ow * g.stride.1;
                        for (i, &v) in row[c0..c0 + g.kernel.1].iter().enumerate() {
                            // `>` keeps the first maximum
                            *a = if v > *b { (r * g.w + c0 + i) as u32 } else { *a };
                            *b = if v > *b { v } else { *b };
                        }
                    }
                }
                if g.relu {
                    relu_row(y, arg);
                }
            }
        }
        *self.argmax.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(arg));
        (T::to_cpu_storage_owned(y), (g.planes, g.oh, g.ow).into())
    }
}

/// The common 2×2, stride-2 window over two input rows of width `w` starting at plane index
/// `base`, as a branch-free tournament: top pair, bottom pair, then the two winners. Ties go
/// to the earlier pixel, as in the general loop.
#[inline]
fn pool_2x2_row<T: WithDType>(rows: &[T], w: usize, base: u32, y: &mut [T], arg: &mut [u32]) {
    let (top, bottom) = rows.split_at(w);
    let pairs = top.chunks_exact(2).zip(bottom.chunks_exact(2));
    for (ow, ((t, b), (y, a))) in pairs.zip(y.iter_mut().zip(arg.iter_mut())).enumerate() {
        // comparisons as integers and values as `if x > y { x } else { y }` compile to
        // maxss/cmov; with `bool` selects the compiler emitted branches that mispredict
        let t1 = (t[1] > t[0]) as u32;
        let top = if t[1] > t[0] { t[1] } else { t[0] };
        let b1 = (b[1] > b[0]) as u32;
        let bottom = if b[1] > b[0] { b[1] } else { b[0] };
        let down = (bottom > top) as u32;
        *y = if bottom > top { bottom } else { top };
        *a = base + 2 * ow as u32 + down * (w as u32 + b1) + (1 - down) * t1;
    }
}

/// `PoolForward::run`'s `fast` row for `f32`: AVX-512's when the CPU has it.
#[cfg(target_arch = "x86_64")]
fn fast_f32_row(relu: bool) -> impl Fn(&[f32], usize, u32, &mut [f32], &mut [u32]) -> bool {
    let simd = super::max_pool2d_avx512::Avx512::detect();
    move |rows, w, base, y, arg| simd.map(|s| s.pool_2x2_row(rows, w, base, relu, y, arg)).is_some()
}

#[cfg(not(target_arch = "x86_64"))]
fn fast_f32_row(_relu: bool) -> impl Fn(&[f32], usize, u32, &mut [f32], &mut [u32]) -> bool {
    |_, _, _, _, _| false
}

/// The fused ReLU: a non-positive maximum becomes 0 and passes no gradient.
fn relu_row<T: WithDType>(y: &mut [T], arg: &mut [u32]) {
    let zero = T::from_f64(0.0);
    for (b, a) in y.iter_mut().zip(arg.iter_mut()) {
        if *b <= zero {
            (*b, *a) = (zero, NONE);
        }
    }
}

impl CustomOp1 for PoolForward {
    fn name(&self) -> &'static str {
        "lightning-max-pool2d"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (storage, _) = match s {
            CpuStorage::F32(_) => self.run(contiguous::<f32>(s, l, "max_pool2d input")?, fast_f32_row(self.g.relu)),
            CpuStorage::F64(_) => self.run(contiguous::<f64>(s, l, "max_pool2d input")?, |_, _, _, _, _| false),
            other => return Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "lightning max_pool2d")),
        };
        let dims = l.dims();
        Ok((storage, (dims[0], dims[1], self.g.oh, self.g.ow).into()))
    }
    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        let argmax = self.argmax.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let argmax = argmax.ok_or_else(|| candle_core::Error::Msg("max_pool2d: backward before forward".into()))?;
        let op = PoolBackward { g: self.g, argmax, input: x.dims().to_vec() };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

/// Scatters each output gradient to its window's maximum. Applied as `dy.apply_op1(..)`.
struct PoolBackward {
    g: PoolGeometry,
    argmax: Arc<Vec<u32>>,
    input: Vec<usize>,
}

impl PoolBackward {
    fn run<T: WithDType>(&self, dy: &[T]) -> CpuStorage {
        let g = &self.g;
        let mut dx = vec![T::from_f64(0.0); g.planes * g.h * g.w];
        let per_plane = g.oh * g.ow;
        for ((dx, dy), arg) in
            dx.chunks_exact_mut(g.h * g.w).zip(dy.chunks_exact(per_plane)).zip(self.argmax.chunks_exact(per_plane))
        {
            for (&d, &a) in dy.iter().zip(arg) {
                if a != NONE {
                    dx[a as usize] += d;
                }
            }
        }
        T::to_cpu_storage_owned(dx)
    }
}

impl CustomOp1 for PoolBackward {
    fn name(&self) -> &'static str {
        "lightning-max-pool2d-grad"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let storage = match s {
            CpuStorage::F32(_) => self.run(contiguous::<f32>(s, l, "max_pool2d input")?),
            CpuStorage::F64(_) => self.run(contiguous::<f64>(s, l, "max_pool2d input")?),
            other => return Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "lightning max_pool2d")),
        };
        Ok((storage, self.input.clone().into()))
    }
}

/// No tensors: nothing to move (so `#[derive(Relocate)]` takes a pool field).
impl crate::Relocate for MaxPool2d {
    fn relocate(&mut self, _: &crate::Relocation) -> crate::Result<()> {
        Ok(())
    }
}
