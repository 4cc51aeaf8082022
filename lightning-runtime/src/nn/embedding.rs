//! [`Embedding`]: candle-nn's lookup table with its own CPU forward and backward.
//!
//! candle's `index_select` backward builds a zero tensor of the table's size and calls
//! `index_add` through its generic strided kernel. Here the forward pass copies rows and
//! the backward pass adds each output-gradient row into its table row in one pass.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Module, Result, Shape, Tensor, WithDType};
use candle_nn::VarBuilder;

use super::check_sizes;
use super::op::contiguous;
use crate::devices::relocate::{Relocate, Relocation};

/// A table of `n` vectors of size `d` (variable `weight`, shape (n, d), as candle-nn's);
/// indices of any shape `(…)` give vectors `(…, d)`.
#[derive(Clone, Debug)]
pub struct Embedding {
    weight: Tensor,
}

/// candle-nn's `embedding`: a table of `n` vectors of size `d` drawn from N(0, 1), as the
/// variable `weight` under `vb`'s prefix (torch's `nn.Embedding` initialisation too).
///
/// ```
/// use lightning::candle::{DType, Device, Module, Tensor};
/// use lightning::candle_nn::{VarBuilder, VarMap};
///
/// let vars = VarMap::new();
/// let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
/// let wte = lightning::nn::embedding(65, 32, vb.pp("wte"))?;
/// let ids = Tensor::new(&[[1u32, 5, 7], [0, 64, 3]], &Device::Cpu)?;
/// assert_eq!(wte.forward(&ids)?.dims(), &[2, 3, 32]);
/// assert!(wte.forward(&Tensor::new(&[65u32], &Device::Cpu)?).is_err()); // out of range
/// # Ok::<(), lightning::candle::Error>(())
/// ```
pub fn embedding(n: usize, d: usize, vb: VarBuilder) -> Result<Embedding> {
    let prefix = vb.prefix();
    let layer = if prefix.is_empty() { "embedding" } else { prefix.as_str() };
    check_sizes(layer, &[("n", n), ("d", d)], &[n, d])?;
    Ok(candle_nn::embedding(n, d, vb)?.into())
}

impl From<candle_nn::Embedding> for Embedding {
    fn from(e: candle_nn::Embedding) -> Self {
        Embedding { weight: e.embeddings().clone() }
    }
}

impl Embedding {
    /// A table from a (n, d) tensor.
    pub fn new(weight: Tensor) -> Self {
        Embedding { weight }
    }

    /// The table, (n, d): one row per id.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl Module for Embedding {
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (n, d) = self.weight.dims2()?;
        let mut shape = ids.dims().to_vec();
        shape.push(d);
        let fast = self.weight.device().is_cpu() && matches!(self.weight.dtype(), DType::F32 | DType::F64);
        if !fast || !ids.dtype().is_int() {
            return candle_nn::Embedding::new(self.weight.clone(), d).forward(ids);
        }
        let flat = ids.flatten_all()?.contiguous()?;
        self.weight.contiguous()?.apply_op2(&flat, EmbeddingOp { n, d })?.reshape(shape)
    }
}

impl Relocate for Embedding {
    fn relocate(&mut self, to: &Relocation) -> crate::Result<()> {
        self.weight = to.tensor(&self.weight)?;
        Ok(())
    }
}

/// Rows `ids` of a (n, d) table.
#[derive(Clone, Copy, Debug)]
struct EmbeddingOp {
    n: usize,
    d: usize,
}

/// The indices as `usize`, each checked to be below `n`.
fn indices(s: &CpuStorage, l: &Layout, n: usize) -> Result<Vec<usize>> {
    fn check<I: Copy + TryInto<usize> + std::fmt::Display>(ids: &[I], n: usize) -> Result<Vec<usize>> {
        ids.iter()
            .map(|&i| match i.try_into() {
                Ok(u) if u < n => Ok(u),
                _ => candle_core::bail!("embedding: index {i} is out of range for a table of {n} rows"),
            })
            .collect()
    }
    match s {
        CpuStorage::U8(_) => check(contiguous::<u8>(s, l, "indices")?, n),
        CpuStorage::U32(_) => check(contiguous::<u32>(s, l, "indices")?, n),
        CpuStorage::I64(_) => check(contiguous::<i64>(s, l, "indices")?, n),
        other => candle_core::bail!("embedding: indices must be u8, u32 or i64, got {:?}", other.dtype()),
    }
}

impl EmbeddingOp {
    fn gather<T: WithDType>(&self, w: &[T], ids: &[usize]) -> (CpuStorage, Shape) {
        let mut y = Vec::with_capacity(ids.len() * self.d);
        for &i in ids {
            y.extend_from_slice(&w[i * self.d..(i + 1) * self.d]);
        }
        (T::to_cpu_storage_owned(y), (ids.len(), self.d).into())
    }
}

impl CustomOp2 for EmbeddingOp {
    fn name(&self) -> &'static str {
        "lightning-embedding"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let ids = indices(s2, l2, self.n)?;
        match s1 {
            CpuStorage::F32(_) => Ok(self.gather(contiguous::<f32>(s1, l1, "table")?, &ids)),
            CpuStorage::F64(_) => Ok(self.gather(contiguous::<f64>(s1, l1, "table")?, &ids)),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "lightning-embedding")),
        }
    }

    fn bwd(&self, _w: &Tensor, ids: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dw = dy.contiguous()?.apply_op2_no_bwd(ids, &ScatterAdd(*self))?;
        Ok((Some(dw), None))
    }
}

/// The table's gradient: output-gradient row `r` added into table row `ids[r]`.
struct ScatterAdd(EmbeddingOp);

impl ScatterAdd {
    fn run<T: WithDType>(&self, dy: &[T], ids: &[usize]) -> (CpuStorage, Shape) {
        let d = self.0.d;
        let mut dw = vec![T::zero(); self.0.n * d];
        for (&i, row) in ids.iter().zip(dy.chunks_exact(d)) {
            for (a, &g) in dw[i * d..(i + 1) * d].iter_mut().zip(row) {
                *a += g;
            }
        }
        (T::to_cpu_storage_owned(dw), (self.0.n, d).into())
    }
}

impl CustomOp2 for ScatterAdd {
    fn name(&self) -> &'static str {
        "lightning-embedding-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let ids = indices(s2, l2, self.0.n)?;
        match s1 {
            CpuStorage::F32(_) => Ok(self.run(contiguous::<f32>(s1, l1, "output gradient")?, &ids)),
            CpuStorage::F64(_) => Ok(self.run(contiguous::<f64>(s1, l1, "output gradient")?, &ids)),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "lightning-embedding-grad")),
        }
    }
}
