//! [`scaled_dot_product_attention`]: torch's fused attention as one candle op, with its own
//! CPU forward and backward for f32 and f64.
//!
//! Built from candle ops, attention keeps the scores, the probabilities and their
//! gradients, each a (T, T) matrix per head, and a softmax backward of several tensor
//! passes. This op keeps only the output and each row's log-sum-exp: the backward pass
//! recomputes one head's probabilities at a time (FlashAttention-2's arithmetic:
//! `dS = P ∘ (dP − rowsum(dO ∘ O))`), so it never holds more than two (T, T) blocks per
//! thread. The heads run in parallel on candle's thread pool when it has more than one
//! thread. On other devices and dtypes it is [`attention_composed`], candle ops with
//! gradients (candle-nn's `ops::softmax`, never the gradient-less `softmax_last_dim`).

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp3, DType, Device, Layout, Result, Shape, Storage, Tensor, WithDType, D,
};
use rayon::prelude::*;

use super::dropout::Mask;
use super::gemm::{matmul, Mat};
use super::math::{row_dot, row_max, row_sum, Real};
use super::op::contiguous;

/// The optional arguments of [`scaled_dot_product_attention`], as torch's
/// `attn_mask`, `is_causal`, `dropout_p` and `scale`.
#[derive(Clone, Debug, Default)]
pub struct AttentionOptions {
    mask: Option<Tensor>,
    causal: bool,
    dropout: f64,
    scale: Option<f64>,
}

impl AttentionOptions {
    /// No mask, not causal, no dropout, scale `1/√D`.
    pub fn new() -> Self {
        Self::default()
    }

    /// A mask broadcastable to `(…, Tq, Tk)`: an integer tensor (`u8`: nonzero = attend, as
    /// torch's boolean masks), or a float tensor added to the scaled scores. It gets no gradient.
    pub fn mask(mut self, mask: &Tensor) -> Self {
        self.mask = Some(mask.clone());
        self
    }

    /// Query `i` attends to keys `0..=i` only, aligned at the top left as torch's
    /// `is_causal` (with `Tq > Tk` the last queries see every key).
    pub fn causal(mut self, causal: bool) -> Self {
        self.causal = causal;
        self
    }

    /// Dropout on the attention probabilities, drawn from the trainer's seeded generator
    /// (see [`Dropout`](super::Dropout)). As torch's `dropout_p`, it applies whenever it is
    /// above zero: pass 0 in evaluation ([`is_training`](super::is_training) says which).
    pub fn dropout(mut self, p: f64) -> Self {
        self.dropout = p;
        self
    }

    /// The factor of `q·kᵀ` (default `1/√D`).
    pub fn scale(mut self, scale: f64) -> Self {
        self.scale = Some(scale);
        self
    }
}

/// torch's `scaled_dot_product_attention`: `softmax(q·kᵀ·scale + mask) · v`, per head.
///
/// `q` is `(…, Tq, D)`, `k` is `(…, Tk, D)` and `v` is `(…, Tk, Dv)` with the same leading
/// dimensions (batch and heads: `(B, H, T, D)`); the output is `(…, Tq, Dv)`. A query row
/// that the mask hides from every key gives zeros, as torch's CPU kernel.
///
/// ```
/// use lightning::candle::{Device, Tensor};
/// use lightning::nn::{scaled_dot_product_attention, AttentionOptions};
/// let q = Tensor::randn(0f32, 1.0, (2, 4, 16, 8), &Device::Cpu)?; // (B, H, T, D)
/// let y = scaled_dot_product_attention(&q, &q, &q, &AttentionOptions::new().causal(true))?;
/// assert_eq!(y.dims(), &[2, 4, 16, 8]);
/// // the first query attends to the first key only
/// let first = y.narrow(2, 0, 1)?.flatten_all()?.to_vec1::<f32>()?;
/// assert_eq!(first, q.narrow(2, 0, 1)?.flatten_all()?.to_vec1::<f32>()?);
/// # Ok::<(), lightning::candle::Error>(())
/// ```
pub fn scaled_dot_product_attention(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttentionOptions) -> Result<Tensor> {
    let g = Geometry::of(q, k, v)?;
    let scale = opts.scale.unwrap_or(1.0 / (g.d as f64).sqrt());
    let mask = opts.mask.as_ref().map(|m| additive(m, q.dtype(), &g)).transpose()?;
    let drop = dropout_mask(opts.dropout, &g)?;
    let fast = q.device().is_cpu()
        && matches!(q.dtype(), DType::F32 | DType::F64)
        && k.dtype() == q.dtype()
        && v.dtype() == q.dtype()
        && g.n * g.tq * g.tk * g.d * g.dv > 0;
    if !fast {
        return composed(q, k, v, &g, (scale, opts.causal), mask.as_ref(), drop.map(|m| (m, opts.dropout)));
    }
    let op =
        SdpaOp { g, scale, causal: opts.causal, mask, drop: drop.map(|m| (m, opts.dropout)), lse: OnceLock::new() };
    q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

/// [`scaled_dot_product_attention`] of q, k and v stacked in one tensor `(3, …, T, D)`, as
/// self-attention's projections come: one gradient tensor for the three instead of three
/// that candle would pad to the stack's size and add.
///
/// ```
/// use lightning::candle::{Device, Tensor};
/// use lightning::nn::{scaled_dot_product_attention, self_attention_packed, AttentionOptions};
/// let qkv = Tensor::randn(0f32, 1.0, (3, 2, 4, 16, 8), &Device::Cpu)?; // (3, B, H, T, D)
/// let opts = AttentionOptions::new().causal(true);
/// let packed = self_attention_packed(&qkv, &opts)?;
/// let apart = scaled_dot_product_attention(&qkv.get(0)?, &qkv.get(1)?, &qkv.get(2)?, &opts)?;
/// assert_eq!(packed.dims(), &[2, 4, 16, 8]);
/// assert_eq!(packed.flatten_all()?.to_vec1::<f32>()?, apart.flatten_all()?.to_vec1::<f32>()?);
/// # Ok::<(), lightning::candle::Error>(())
/// ```
pub fn self_attention_packed(qkv: &Tensor, opts: &AttentionOptions) -> Result<Tensor> {
    if qkv.rank() < 3 || qkv.dim(0)? != 3 {
        candle_core::bail!("attention: a packed qkv has shape (3, …, T, D), got {:?}", qkv.dims())
    }
    let qkv = qkv.contiguous()?;
    let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
    let g = Geometry::of(&q, &k, &v)?;
    let scale = opts.scale.unwrap_or(1.0 / (g.d as f64).sqrt());
    let mask = opts.mask.as_ref().map(|m| additive(m, q.dtype(), &g)).transpose()?;
    let drop = dropout_mask(opts.dropout, &g)?.map(|m| (m, opts.dropout));
    if !(q.device().is_cpu() && matches!(q.dtype(), DType::F32 | DType::F64) && g.n * g.tq * g.d > 0) {
        return composed(&q, &k, &v, &g, (scale, opts.causal), mask.as_ref(), drop);
    }
    qkv.apply_op1(Packed(SdpaOp { g, scale, causal: opts.causal, mask, drop, lse: OnceLock::new() }))
}

/// [`scaled_dot_product_attention`] as a composition of candle ops with gradients (matmul,
/// candle-nn's `ops::softmax`): what the op runs on other devices and dtypes, and the
/// reference it is tested against. It keeps every (T, T) matrix for its backward pass.
pub fn attention_composed(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttentionOptions) -> Result<Tensor> {
    let g = Geometry::of(q, k, v)?;
    let scale = opts.scale.unwrap_or(1.0 / (g.d as f64).sqrt());
    let mask = opts.mask.as_ref().map(|m| additive(m, q.dtype(), &g)).transpose()?;
    let drop = dropout_mask(opts.dropout, &g)?;
    composed(q, k, v, &g, (scale, opts.causal), mask.as_ref(), drop.map(|m| (m, opts.dropout)))
}

/// The sizes of one call: `n` heads (the product of the leading dimensions) of `tq`
/// queries and `tk` keys of width `d`, values of width `dv`.
#[derive(Clone, Debug)]
struct Geometry {
    lead: Vec<usize>,
    n: usize,
    tq: usize,
    tk: usize,
    d: usize,
    dv: usize,
}

impl Geometry {
    fn of(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Geometry> {
        let (qd, kd, vd) = (q.dims(), k.dims(), v.dims());
        if qd.len() < 2 || kd.len() != qd.len() || vd.len() != qd.len() {
            candle_core::bail!("attention: q, k and v must have the same rank, at least 2 (…, T, D); got shapes {qd:?}, {kd:?}, {vd:?}")
        }
        let r = qd.len();
        if qd[..r - 2] != kd[..r - 2] || qd[..r - 2] != vd[..r - 2] {
            candle_core::bail!("attention: q, k and v must share their leading (batch, head) dimensions; got shapes {qd:?}, {kd:?}, {vd:?}")
        }
        if kd[r - 1] != qd[r - 1] || vd[r - 2] != kd[r - 2] {
            candle_core::bail!("attention: k must have q's width and v k's length: q (…, Tq, D), k (…, Tk, D), v (…, Tk, Dv); got shapes {qd:?}, {kd:?}, {vd:?}")
        }
        let lead = qd[..r - 2].to_vec();
        let n = lead.iter().product();
        Ok(Geometry { lead, n, tq: qd[r - 2], tk: kd[r - 2], d: qd[r - 1], dv: vd[r - 1] })
    }

    fn shape(&self, rows: usize, cols: usize) -> Shape {
        let mut s = self.lead.clone();
        s.extend([rows, cols]);
        s.into()
    }
}

/// The mask as an additive tensor of `dtype` broadcast to `(…, Tq, Tk)` (not copied).
fn additive(mask: &Tensor, dtype: DType, g: &Geometry) -> Result<Tensor> {
    let add = if mask.dtype().is_int() {
        let zeros = Tensor::zeros(mask.shape(), dtype, mask.device())?;
        mask.ne(0u8)?.where_cond(&zeros, &zeros.affine(1.0, f64::NEG_INFINITY)?)?
    } else {
        mask.to_dtype(dtype)?
    };
    let target = g.shape(g.tq, g.tk);
    add.broadcast_as(&target).map_err(|_| {
        candle_core::Error::Msg(format!(
            "attention: a mask of shape {:?} does not broadcast to the scores' shape {:?}",
            mask.dims(),
            target.dims()
        ))
    })
}

fn dropout_mask(p: f64, g: &Geometry) -> Result<Option<Mask>> {
    if !(0.0..1.0).contains(&p) {
        candle_core::bail!("attention: the dropout probability must be in [0, 1), got {p}")
    }
    Ok((p > 0.0).then(|| Mask::draw(p, g.n * g.tq * g.tk)))
}

fn composed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    g: &Geometry,
    (scale, causal): (f64, bool),
    mask: Option<&Tensor>,
    drop: Option<(Mask, f64)>,
) -> Result<Tensor> {
    let mut s = (q.contiguous()?.matmul(&k.transpose(D::Minus2, D::Minus1)?.contiguous()?)? * scale)?;
    if let Some(m) = mask {
        s = s.broadcast_add(m)?;
    }
    if causal {
        let bias: Vec<f32> =
            (0..g.tq * g.tk).map(|ij| if ij % g.tk > ij / g.tk { f32::NEG_INFINITY } else { 0.0 }).collect();
        s = s.broadcast_add(&Tensor::from_vec(bias, (g.tq, g.tk), q.device())?.to_dtype(q.dtype())?)?;
    }
    let p = if mask.is_some() {
        // a row hidden from every key gives zeros (torch's CPU kernel), not softmax's NaN
        let dead = s.max_keepdim(D::Minus1)?.eq(f64::NEG_INFINITY)?.broadcast_as(s.shape())?;
        let zeros = s.zeros_like()?;
        let p = candle_nn::ops::softmax(&dead.where_cond(&zeros, &s)?, D::Minus1)?;
        dead.where_cond(&zeros, &p)?
    } else {
        candle_nn::ops::softmax(&s, D::Minus1)?
    };
    let p = match drop {
        Some((m, prob)) => (&p * m.tensor(prob, p.shape(), p.dtype(), p.device())?)?,
        None => p,
    };
    p.matmul(&v.contiguous()?)
}

/// The fused op; `lse` keeps each query row's log-sum-exp from the forward pass for the
/// backward one (`+∞` for a row hidden from every key, so its probabilities recompute to 0).
struct SdpaOp {
    g: Geometry,
    scale: f64,
    causal: bool,
    mask: Option<Tensor>,
    drop: Option<(Mask, f64)>,
    lse: OnceLock<CpuStorage>,
}

/// A CPU storage's elements as `T`, from the start (the caller adds the layout's offsets).
fn cpu_slice<'a, T: WithDType>(s: &'a Storage, what: &str) -> Result<&'a [T]> {
    match s {
        Storage::Cpu(c) => T::cpu_storage_as_slice(c),
        _ => candle_core::bail!("attention: the {what} is not on the CPU"),
    }
}

/// The broadcast mask as seen by one head: `data[head[h] + i·si + j·sj]`.
struct MaskView<'a, T> {
    data: &'a [T],
    head: Vec<usize>,
    si: usize,
    sj: usize,
}

impl<'a, T: WithDType> MaskView<'a, T> {
    fn new(s: &'a Storage, l: &Layout, g: &Geometry) -> Result<Self> {
        let stride = l.stride();
        let r = stride.len();
        let head = (0..g.n)
            .map(|mut h| {
                let mut off = l.start_offset();
                for (dim, st) in g.lead.iter().zip(&stride[..r - 2]).rev() {
                    off += (h % dim) * st;
                    h /= dim;
                }
                off
            })
            .collect();
        Ok(MaskView { data: cpu_slice(s, "mask")?, head, si: stride[r - 2], sj: stride[r - 1] })
    }
}

/// What the per-head kernels share.
struct Kernel<'a, T> {
    g: &'a Geometry,
    scale: T,
    causal: bool,
    mask: Option<MaskView<'a, T>>,
    /// The dropout mask and `1/(1-p)`.
    drop: Option<(Mask, T)>,
}

impl<T: Real> Kernel<'_, T> {
    /// Head `h`'s scores `q·kᵀ·scale + mask` into `s` (Tq×Tk), −∞ where a key is hidden.
    fn scores(&self, h: usize, q: &[T], k: &[T], s: &mut [T]) {
        let Geometry { tq, tk, d, .. } = *self.g;
        matmul((tq, tk, d), s, false, Mat(q, (d, 1)), Mat(k, (1, d)));
        for (i, row) in s.chunks_exact_mut(tk).enumerate() {
            match &self.mask {
                Some(m) => {
                    let base = &m.data[m.head[h] + i * m.si..];
                    for (j, x) in row.iter_mut().enumerate() {
                        *x = *x * self.scale + base[j * m.sj];
                    }
                }
                None => row.iter_mut().for_each(|x| *x *= self.scale),
            }
            if self.causal && i + 1 < tk {
                row[i + 1..].fill(T::from_f64(f64::NEG_INFINITY));
            }
        }
    }

    /// Multiplies head `h`'s probabilities `p` by the dropout mask and `1/(1-p)`.
    fn drop(&self, h: usize, p: &mut [T]) {
        if let Some((mask, keep)) = &self.drop {
            let base = h * p.len();
            for (j, x) in p.iter_mut().enumerate() {
                *x = if mask.keep(base + j) { *x * *keep } else { T::zero() };
            }
        }
    }

    fn forward_head(&self, h: usize, (q, k, v): (&[T], &[T], &[T]), out: &mut [T], lse: &mut [T], s: &mut [T]) {
        let Geometry { tq, tk, dv, .. } = *self.g;
        self.scores(h, q, k, s);
        for (row, l) in s.chunks_exact_mut(tk).zip(lse.iter_mut()) {
            let max = row_max(row);
            if max == T::from_f64(f64::NEG_INFINITY) {
                row.fill(T::zero());
                *l = T::from_f64(f64::INFINITY);
                continue;
            }
            // the map and the sum apart, so that each vectorises
            row.iter_mut().for_each(|x| *x = (*x - max).exp());
            let sum = row_sum(row, |v| v);
            let inv = T::from_f64(1.0) / sum;
            row.iter_mut().for_each(|x| *x *= inv);
            *l = max + sum.ln();
        }
        self.drop(h, s);
        matmul((tq, dv, tk), out, false, Mat(s, (tk, 1)), Mat(v, (dv, 1)));
    }

    /// Head `h`'s dq, dk and dv; `s` and `dp` are Tq×Tk scratch blocks.
    fn backward_head(
        &self,
        h: usize,
        (q, k, v): (&[T], &[T], &[T]),
        (o, dout, lse): (&[T], &[T], &[T]),
        (dq, dk, dv): (&mut [T], &mut [T], &mut [T]),
        s: &mut [T],
        dp: &mut [T],
    ) {
        let Geometry { tq, tk, d, dv: e, .. } = *self.g;
        self.scores(h, q, k, s);
        for (row, &l) in s.chunks_exact_mut(tk).zip(lse) {
            row.iter_mut().for_each(|x| *x = (*x - l).exp());
        }
        // dV = P'ᵀ·dO, P' the probabilities after dropout
        let p_dropped: &[T] = if self.drop.is_some() {
            dp.copy_from_slice(s);
            self.drop(h, dp);
            dp
        } else {
            s
        };
        matmul((tk, e, tq), dv, false, Mat(p_dropped, (1, tk)), Mat(dout, (e, 1)));
        // dP' = dO·Vᵀ, then dP = dP'·mask/(1-p)
        matmul((tq, tk, e), dp, false, Mat(dout, (e, 1)), Mat(v, (1, e)));
        self.drop(h, dp);
        // dS·scale = P ∘ (dP − rowsum(dO ∘ O))·scale, into `s`
        for i in 0..tq {
            let di = row_dot(&dout[i * e..(i + 1) * e], &o[i * e..(i + 1) * e]);
            let (srow, dprow) = (&mut s[i * tk..(i + 1) * tk], &dp[i * tk..(i + 1) * tk]);
            for (x, &g) in srow.iter_mut().zip(dprow) {
                *x = *x * (g - di) * self.scale;
            }
        }
        matmul((tq, d, tk), dq, false, Mat(s, (tk, 1)), Mat(k, (d, 1)));
        matmul((tk, d, tq), dk, false, Mat(s, (1, tk)), Mat(q, (d, 1)));
    }
}

fn parallel(n: usize) -> bool {
    n > 1 && candle_core::utils::get_num_threads() > 1
}

impl SdpaOp {
    fn kernel<'a, T: Real>(&'a self, mask: Option<MaskView<'a, T>>) -> Kernel<'a, T> {
        Kernel {
            g: &self.g,
            scale: T::from_f64(self.scale),
            causal: self.causal,
            mask,
            drop: self.drop.map(|(m, p)| (m, T::from_f64(1.0 / (1.0 - p)))),
        }
    }

    fn forward<T: Real>(&self, q: &[T], k: &[T], v: &[T]) -> Result<(CpuStorage, Shape)> {
        let Geometry { n, tq, tk, d, dv, .. } = self.g;
        let guard = self.mask.as_ref().map(|m| m.storage_and_layout());
        let mask = guard.as_ref().map(|(s, l)| MaskView::new(s, l, &self.g)).transpose()?;
        let kernel = self.kernel(mask);
        let mut out = vec![T::zero(); n * tq * dv];
        let mut lse = vec![T::zero(); n * tq];
        let heads = |h: usize| (&q[h * tq * d..][..tq * d], &k[h * tk * d..][..tk * d], &v[h * tk * dv..][..tk * dv]);
        let run =
            |s: &mut Vec<T>, (h, (o, l)): (usize, (&mut [T], &mut [T]))| kernel.forward_head(h, heads(h), o, l, s);
        if parallel(n) {
            let chunks = out.par_chunks_mut(tq * dv).zip(lse.par_chunks_mut(tq)).enumerate();
            chunks.for_each_init(|| vec![T::zero(); tq * tk], run);
        } else {
            let mut s = vec![T::zero(); tq * tk];
            out.chunks_mut(tq * dv).zip(lse.chunks_mut(tq)).enumerate().for_each(|c| run(&mut s, c));
        }
        // set once: candle runs an op's forward once
        let _ = self.lse.set(T::to_cpu_storage_owned(lse));
        Ok((T::to_cpu_storage_owned(out), self.g.shape(tq, dv)))
    }

    fn backward<T: Real>(&self, t: [&Tensor; 5]) -> Result<[Tensor; 3]> {
        let Geometry { n, tq, tk, d, dv, .. } = self.g;
        let (mut dq, mut dk, mut dvv) =
            (vec![T::zero(); n * tq * d], vec![T::zero(); n * tk * d], vec![T::zero(); n * tk * dv]);
        self.backward_into(t, (&mut dq, &mut dk, &mut dvv))?;
        let dev = Device::Cpu;
        Ok([
            Tensor::from_vec(dq, t[0].shape(), &dev)?,
            Tensor::from_vec(dk, t[1].shape(), &dev)?,
            Tensor::from_vec(dvv, t[2].shape(), &dev)?,
        ])
    }

    /// dq, dk and dv of `[q, k, v, out, dout]` (contiguous or not; views are read in place).
    #[allow(clippy::type_complexity)]
    fn backward_into<T: Real>(&self, t: [&Tensor; 5], (dq, dk, dvv): (&mut [T], &mut [T], &mut [T])) -> Result<()> {
        let Geometry { n, tq, tk, d, dv, .. } = self.g;
        let mut c = Vec::with_capacity(5);
        for x in t {
            c.push(x.contiguous()?);
        }
        let guards: Vec<_> = c.iter().map(|x| x.storage_and_layout()).collect();
        let names = ["query", "key", "value", "output", "output gradient"];
        let mut sl: [&[T]; 5] = [&[]; 5];
        for ((slot, (g, l)), name) in sl.iter_mut().zip(&guards).zip(names) {
            let all = cpu_slice::<T>(g, name)?;
            *slot = &all[l.start_offset()..l.start_offset() + l.shape().elem_count()];
        }
        let [qs, ks, vs, os, dos] = sl;
        let lse = T::cpu_storage_as_slice(
            self.lse.get().ok_or_else(|| candle_core::Error::Msg("attention: backward before forward".into()))?,
        )?;
        let mask_guard = self.mask.as_ref().map(|m| m.storage_and_layout());
        let mask = mask_guard.as_ref().map(|(s, l)| MaskView::new(s, l, &self.g)).transpose()?;
        let kernel = self.kernel(mask);
        let run = |bufs: &mut (Vec<T>, Vec<T>), (h, ((a, b), c)): (usize, ((&mut [T], &mut [T]), &mut [T]))| {
            let ins = (&qs[h * tq * d..][..tq * d], &ks[h * tk * d..][..tk * d], &vs[h * tk * dv..][..tk * dv]);
            let outs = (&os[h * tq * dv..][..tq * dv], &dos[h * tq * dv..][..tq * dv], &lse[h * tq..][..tq]);
            kernel.backward_head(h, ins, outs, (a, b, c), &mut bufs.0, &mut bufs.1)
        };
        let scratch = || (vec![T::zero(); tq * tk], vec![T::zero(); tq * tk]);
        if parallel(n) {
            let chunks = dq.par_chunks_mut(tq * d).zip(dk.par_chunks_mut(tk * d)).zip(dvv.par_chunks_mut(tk * dv));
            chunks.enumerate().for_each_init(scratch, run);
        } else {
            let mut bufs = scratch();
            let chunks = dq.chunks_mut(tq * d).zip(dk.chunks_mut(tk * d)).zip(dvv.chunks_mut(tk * dv));
            chunks.enumerate().for_each(|c| run(&mut bufs, c));
        }
        drop(guards);
        Ok(())
    }
}

impl CustomOp3 for SdpaOp {
    fn name(&self) -> &'static str {
        "lightning-sdpa"
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
            CpuStorage::F32(_) => self.forward::<f32>(
                contiguous(s1, l1, "query")?,
                contiguous(s2, l2, "key")?,
                contiguous(s3, l3, "value")?,
            ),
            CpuStorage::F64(_) => self.forward::<f64>(
                contiguous(s1, l1, "query")?,
                contiguous(s2, l2, "key")?,
                contiguous(s3, l3, "value")?,
            ),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "lightning-sdpa")),
        }
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        dout: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let t = [q, k, v, out, dout];
        let [dq, dk, dv] = match q.dtype() {
            DType::F32 => self.backward::<f32>(t)?,
            DType::F64 => self.backward::<f64>(t)?,
            other => return Err(candle_core::Error::UnsupportedDTypeForOp(other, "lightning-sdpa")),
        };
        Ok((q.track_op().then_some(dq), k.track_op().then_some(dk), v.track_op().then_some(dv)))
    }
}

/// The fused op over a stacked `(3, …, T, D)` q, k and v.
struct Packed(SdpaOp);

impl CustomOp1 for Packed {
    fn name(&self) -> &'static str {
        "lightning-sdpa-packed"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn split<T: Real>(op: &SdpaOp, all: &[T]) -> Result<(CpuStorage, Shape)> {
            let third = all.len() / 3;
            op.forward(&all[..third], &all[third..2 * third], &all[2 * third..])
        }
        match s {
            CpuStorage::F32(_) => split::<f32>(&self.0, contiguous(s, l, "qkv")?),
            CpuStorage::F64(_) => split::<f64>(&self.0, contiguous(s, l, "qkv")?),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "lightning-sdpa-packed")),
        }
    }

    fn bwd(&self, qkv: &Tensor, out: &Tensor, dout: &Tensor) -> Result<Option<Tensor>> {
        fn grads<T: Real>(op: &SdpaOp, qkv: &Tensor, out: &Tensor, dout: &Tensor) -> Result<Tensor> {
            let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
            let mut g = vec![T::zero(); qkv.elem_count()];
            let third = g.len() / 3;
            let (dq, rest) = g.split_at_mut(third);
            let (dk, dv) = rest.split_at_mut(third);
            op.backward_into([&q, &k, &v, out, dout], (dq, dk, dv))?;
            Tensor::from_vec(g, qkv.shape(), &Device::Cpu)
        }
        match qkv.dtype() {
            DType::F32 => grads::<f32>(&self.0, qkv, out, dout).map(Some),
            DType::F64 => grads::<f64>(&self.0, qkv, out, dout).map(Some),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other, "lightning-sdpa-packed")),
        }
    }
}
