//! The CPU kernels of [`Conv2d`](super::Conv2d): im2col / col2im and `gemm`, wrapped as candle
//! custom ops. The forward op keeps its im2col matrix for the weight gradient.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, Result, Shape, Tensor, WithDType};

use super::gemm::{matmul, Mat};
use super::op::{GradKernel, GradOp, LayerKernel};

/// Sizes of one convolution: input (n, c, h, w), weight (o, c, kh, kw), output (n, o, oh, ow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geometry {
    /// Rows of the im2col matrix: one per (channel, kernel row, kernel column).
    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }
    /// Columns of the im2col matrix: one per output pixel.
    fn p(&self) -> usize {
        self.oh * self.ow
    }
    fn image(&self) -> usize {
        self.c * self.h * self.w
    }
    fn weight_shape(&self) -> Shape {
        (self.o, self.c, self.kh, self.kw).into()
    }
    fn input_shape(&self) -> Shape {
        (self.n, self.c, self.h, self.w).into()
    }
    /// The output columns `ow` whose input column `ow * stride + off` lies inside the image.
    fn valid_cols(&self, off: isize) -> (usize, usize) {
        let s = self.stride as isize;
        let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
        let hi = if (self.w as isize) <= off { 0 } else { (self.w as isize - off + s - 1) / s };
        let (lo, hi) = (lo as usize, (hi as usize).min(self.ow));
        (lo.min(hi), hi)
    }
    /// For kernel offset (i, j): the input row of output row `oh`, if inside the image, and
    /// the column offset.
    fn input_row(&self, oh: usize, i: usize) -> Option<usize> {
        let ih = (oh * self.stride + i * self.dilation) as isize - self.padding as isize;
        (ih >= 0 && (ih as usize) < self.h).then_some(ih as usize)
    }
    fn col_offset(&self, j: usize) -> isize {
        (j * self.dilation) as isize - self.padding as isize
    }
}

/// Appends image `x` (c, h, w) to `col` as the (k, p) im2col matrix. Appending rather than
/// writing into a zeroed buffer saves a memset of the whole matrix (several MB per batch).
fn im2col<T: WithDType>(g: &Geometry, x: &[T], col: &mut Vec<T>) {
    let zero = T::from_f64(0.0);
    let zeros = |col: &mut Vec<T>, n: usize| col.extend(std::iter::repeat_n(zero, n));
    col.reserve(g.k() * g.p());
    for c in 0..g.c {
        let plane = &x[c * g.h * g.w..][..g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let off = g.col_offset(j);
                let (lo, hi) = g.valid_cols(off);
                for oh in 0..g.oh {
                    let Some(ih) = g.input_row(oh, i) else {
                        zeros(col, g.ow);
                        continue;
                    };
                    let src = &plane[ih * g.w..][..g.w];
                    zeros(col, lo);
                    if g.stride == 1 && hi > lo {
                        let start = (lo as isize + off) as usize;
                        col.extend_from_slice(&src[start..start + (hi - lo)]);
                    } else {
                        col.extend((lo..hi).map(|ow| src[(ow as isize * g.stride as isize + off) as usize]));
                    }
                    zeros(col, g.ow - hi);
                }
            }
        }
    }
}

/// Adds the (k, p) matrix `col` back into image `dx` (c, h, w): the adjoint of [`im2col`].
fn col2im<T: WithDType>(g: &Geometry, col: &[T], dx: &mut [T]) {
    let p = g.p();
    for c in 0..g.c {
        let plane = &mut dx[c * g.h * g.w..][..g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = &col[((c * g.kh + i) * g.kw + j) * p..][..p];
                let off = g.col_offset(j);
                let (lo, hi) = g.valid_cols(off);
                for oh in 0..g.oh {
                    let Some(ih) = g.input_row(oh, i) else { continue };
                    let src = &row[oh * g.ow..][..g.ow];
                    let dst = &mut plane[ih * g.w..][..g.w];
                    if g.stride == 1 && hi > lo {
                        // a contiguous run: the compiler vectorises this add
                        let start = (lo as isize + off) as usize;
                        for (d, &v) in dst[start..start + (hi - lo)].iter_mut().zip(&src[lo..hi]) {
                            *d += v;
                        }
                        continue;
                    }
                    for (ow, &v) in src.iter().enumerate().take(hi).skip(lo) {
                        dst[(ow as isize * g.stride as isize + off) as usize] += v;
                    }
                }
            }
        }
    }
}

/// `y = conv(x, w) [+ b]`; keeps the im2col matrices when a backward pass will need them.
pub(crate) struct ConvForward {
    pub g: Geometry,
    pub keep_cols: bool,
    pub cols: Mutex<Option<Arc<CpuStorage>>>,
}

impl LayerKernel for ConvForward {
    const NAME: &'static str = "lightning-conv2d";

    fn forward<T: WithDType>(&self, x: &[T], w: &[T], b: Option<&[T]>) -> Result<(CpuStorage, Shape)> {
        let g = &self.g;
        let (k, p) = (g.k(), g.p());
        let mut y = Vec::with_capacity(g.n * g.o * p);
        let mut cols = Vec::with_capacity(if self.keep_cols { g.n * k * p } else { k * p });
        for n in 0..g.n {
            if !self.keep_cols {
                cols.clear();
            }
            im2col(g, &x[n * g.image()..][..g.image()], &mut cols);
            let col = &cols[cols.len() - k * p..];
            // the output starts as the bias (or zero) and the product is added to it
            for o in 0..g.o {
                y.extend(std::iter::repeat_n(b.map_or(T::from_f64(0.0), |b| b[o]), p));
            }
            let out = &mut y[n * g.o * p..][..g.o * p];
            matmul((g.o, p, k), out, b.is_some(), Mat(w, (k, 1)), Mat(col, (p, 1)));
        }
        if self.keep_cols {
            *self.cols.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(T::to_cpu_storage_owned(cols)));
        }
        Ok((T::to_cpu_storage_owned(y), (g.n, g.o, g.oh, g.ow).into()))
    }

    fn grads(&self, x: &Tensor, w: &Tensor, bias: bool, grad: &Tensor) -> Result<[Option<Tensor>; 3]> {
        let grad = grad.contiguous()?;
        let dx =
            if x.track_op() { Some(grad.apply_op2_no_bwd(w, &GradOp(ConvInputGrad { g: self.g }))?) } else { None };
        if !w.track_op() && !bias {
            return Ok([dx, None, None]);
        }
        let cols = self.cols.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // one pass gives the weight gradient and, in an extra column, the bias gradient
        let both = grad.apply_op2_no_bwd(x, &GradOp(ConvWeightGrad { g: self.g, cols, bias }))?;
        let k = self.g.k();
        let dw =
            w.track_op().then(|| both.narrow(1, 0, k)?.contiguous()?.reshape(self.g.weight_shape())).transpose()?;
        let db = if bias { Some(both.narrow(1, k, 1)?.flatten_all()?) } else { None };
        Ok([dx, dw, db])
    }
}

/// `dx = col2im(wᵀ · dy)`, image by image. Applied as `dy.apply_op2(w)`.
struct ConvInputGrad {
    g: Geometry,
}

impl GradKernel for ConvInputGrad {
    const NAME: &'static str = "lightning-conv2d-input-grad";

    fn run<T: WithDType>(&self, dy: &[T], w: &[T]) -> Result<(CpuStorage, Shape)> {
        let g = &self.g;
        let (k, p) = (g.k(), g.p());
        let mut dx = vec![T::from_f64(0.0); g.n * g.image()];
        let mut dcol = vec![T::from_f64(0.0); k * p];
        for n in 0..g.n {
            // wᵀ is (k, o): element (r, o) of it is w[o * k + r]
            matmul((k, p, g.o), &mut dcol, false, Mat(w, (1, k)), Mat(&dy[n * g.o * p..][..g.o * p], (p, 1)));
            col2im(g, &dcol, &mut dx[n * g.image()..][..g.image()]);
        }
        Ok((T::to_cpu_storage_owned(dx), g.input_shape()))
    }
}

/// `dw = Σₙ dyₙ · colₙᵀ`, from the forward pass's im2col matrices when it kept them, as an
/// (o, k) matrix; with `bias`, an (o, k + 1) one whose last column is `db = Σₙ,ₚ dy`.
/// Applied as `dy.apply_op2(x)`.
struct ConvWeightGrad {
    g: Geometry,
    cols: Option<Arc<CpuStorage>>,
    bias: bool,
}

impl GradKernel for ConvWeightGrad {
    const NAME: &'static str = "lightning-conv2d-weight-grad";

    fn run<T: WithDType>(&self, dy: &[T], x: &[T]) -> Result<(CpuStorage, Shape)> {
        let g = &self.g;
        let (k, p) = (g.k(), g.p());
        let kept = match self.cols.as_deref() {
            Some(c) => Some(T::cpu_storage_as_slice(c)?),
            None => None,
        };
        let mut scratch = Vec::new();
        let mut dw = vec![T::from_f64(0.0); g.o * k];
        let mut db = vec![T::from_f64(0.0); if self.bias { g.o } else { 0 }];
        for n in 0..g.n {
            let col: &[T] = match kept {
                Some(c) => &c[n * k * p..][..k * p],
                None => {
                    scratch.clear();
                    im2col(g, &x[n * g.image()..][..g.image()], &mut scratch);
                    &scratch
                }
            };
            // colᵀ is (p, k): element (q, r) of it is col[r * p + q]
            let dyn_ = &dy[n * g.o * p..][..g.o * p];
            matmul((g.o, k, p), &mut dw, n > 0, Mat(dyn_, (p, 1)), Mat(col, (1, p)));
            for (b, row) in db.iter_mut().zip(dyn_.chunks_exact(p)) {
                *b += row.iter().fold(T::from_f64(0.0), |s, &v| s + v);
            }
        }
        if !self.bias {
            return Ok((T::to_cpu_storage_owned(dw), (g.o, k).into()));
        }
        let mut both = Vec::with_capacity(g.o * (k + 1));
        for (row, b) in dw.chunks_exact(k).zip(db) {
            both.extend_from_slice(row);
            both.push(b);
        }
        Ok((T::to_cpu_storage_owned(both), (g.o, k + 1).into()))
    }
}
