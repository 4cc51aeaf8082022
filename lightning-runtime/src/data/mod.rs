//! Data loaders: the `Loader` trait the loops read from, and an in-memory `DataLoader`.

mod dataset;
pub mod download;
pub(crate) mod either;
pub mod idx;
mod idx_dataset;
pub(crate) mod loaders;
pub mod mnist;
mod pixels;
mod stream;

use std::marker::PhantomData;

use candle_core::{Tensor, D};
use rand::{seq::SliceRandom, SeedableRng};

use crate::dist::Shard;
use crate::{Error, Result};

pub use dataset::{Collate, Dataset, MapLoader};
pub use idx_dataset::{IdxDataset, IdxFile};
pub use loaders::{EachLoader, Loaders};
pub use pixels::{to_unit_f32, Pixels};
pub use stream::StreamLoader;

/// A source of batches, re-read every epoch.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a data loader",
    label = "not a `lightning::Loader`",
    note = "a module's `*_dataloader` hooks return `lightning::Result<DataLoader>` (or another `Loader`); only a datamodule's return `Result<Option<..>>`, for a loader it may not have"
)]
pub trait Loader {
    /// What one batch is (what the step hooks take).
    type Batch;
    /// Batches per epoch.
    fn len(&self) -> usize;
    /// Whether an epoch has no batch.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The batches of one epoch (`epoch` seeds shuffling).
    fn batches(&mut self, epoch: usize) -> impl Iterator<Item = Result<Self::Batch>> + '_;
    /// Data-parallel training: from now on, yield only rank `rank`'s share of every epoch out
    /// of `world` ranks (torch's `DistributedSampler`). Loaders that cannot shard say so.
    fn shard(&mut self, rank: usize, world: usize) -> Result<()> {
        let _ = rank;
        if world == 1 {
            return Ok(());
        }
        Err(Error::Data(format!(
            "{} cannot be sharded for data-parallel training: implement `Loader::shard` for it, or use a `DataLoader`, `MapLoader` or `StreamLoader`",
            std::any::type_name::<Self>()
        )))
    }
}

/// A borrowed loader: how the finder callbacks sweep over the loader given to `fit` before
/// `fit` itself reads it.
impl<L: Loader + ?Sized> Loader for &mut L {
    type Batch = L::Batch;
    fn len(&self) -> usize {
        (**self).len()
    }
    fn batches(&mut self, epoch: usize) -> impl Iterator<Item = Result<Self::Batch>> + '_ {
        (**self).batches(epoch)
    }
    fn shard(&mut self, rank: usize, world: usize) -> Result<()> {
        (**self).shard(rank, world)
    }
}

/// `batch_size` 0 is refused, naming the loader (`what`, e.g. `MapLoader::new`) so a script
/// with several loaders shows which one.
pub(crate) fn check_batch_size(batch_size: usize, what: impl FnOnce() -> String) -> Result<()> {
    if batch_size == 0 {
        return Err(Error::Data(format!("{}: batch_size is 0; it must be at least 1", what())));
    }
    Ok(())
}

/// The loader type of a module without `*_dataloader` hooks: always empty.
#[derive(Debug)]
pub struct NoLoader<B>(PhantomData<fn() -> B>);

impl<B> Default for NoLoader<B> {
    fn default() -> Self {
        NoLoader(PhantomData)
    }
}

impl<B> Loader for NoLoader<B> {
    type Batch = B;
    fn len(&self) -> usize {
        0
    }
    fn batches(&mut self, _: usize) -> impl Iterator<Item = Result<B>> + '_ {
        std::iter::empty()
    }
}

/// Batches of `(inputs, targets)` from two tensors whose first dimension is the sample.
///
/// ```
/// use lightning::{DataLoader, Loader};
/// use candle_core::{Tensor, Device};
/// # fn main() -> lightning::Result<()> {
/// let x = Tensor::arange(0f32, 10., &Device::Cpu)?.reshape((10, 1))?;
/// let y = Tensor::arange(0u32, 10, &Device::Cpu)?;
/// let mut loader = DataLoader::new(x, y, 4)?.shuffle(7).drop_last(true);
/// assert_eq!(loader.len(), 2);
/// let sizes: Vec<usize> = loader.batches(0).map(|b| b.unwrap().1.dim(0).unwrap()).collect();
/// assert_eq!(sizes, [4, 4]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DataLoader {
    inputs: Tensor,
    targets: Tensor,
    batch_size: usize,
    shuffle: Option<u64>,
    drop_last: bool,
    /// This rank's share under data-parallel training.
    shard: Option<Shard>,
    /// The inputs are u8 pixels, scaled to f32 `b / 255` batch by batch.
    scale_u8: bool,
}

impl DataLoader {
    /// Batches of `batch_size` samples, in order, the last one possibly smaller.
    pub fn new(inputs: Tensor, targets: Tensor, batch_size: usize) -> Result<Self> {
        check_batch_size(batch_size, || "DataLoader::new".into())?;
        let (n, m) = (inputs.dims().first().copied(), targets.dims().first().copied());
        if n.is_none() || n != m {
            return Err(Error::Data(format!(
                "inputs {:?} and targets {:?} must have the same number of samples in their first dimension",
                inputs.dims(),
                targets.dims()
            )));
        }
        Ok(DataLoader { inputs, targets, batch_size, shuffle: None, drop_last: false, shard: None, scale_u8: false })
    }

    /// The inputs are u8 pixels (0 to 255): each batch becomes f32 `b / 255` as it is
    /// gathered, so memory holds one byte a pixel instead of four. An error unless the
    /// inputs are u8. [`mnist::MnistSplit::loader`] sets it.
    pub fn scale_u8(mut self) -> Result<Self> {
        if self.inputs.dtype() != candle_core::DType::U8 {
            return Err(Error::Data(format!(
                "DataLoader::scale_u8: the inputs are {:?}, not u8 pixels; leave it off for inputs already in f32",
                self.inputs.dtype()
            )));
        }
        self.scale_u8 = true;
        Ok(self)
    }

    /// Reshuffles every epoch, from `seed` and the epoch number (reproducible).
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.shuffle = Some(seed);
        self
    }

    /// Drops a last batch smaller than `batch_size`.
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// Samples in the data set.
    pub fn num_samples(&self) -> usize {
        self.inputs.dim(0).unwrap_or(0)
    }

    /// Samples an epoch yields: this rank's share when sharded.
    fn epoch_samples(&self) -> usize {
        epoch_samples(self.num_samples(), self.shard)
    }

    /// The batch size.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The sample order of an epoch, `None` for 0, 1, 2, ….
    fn order(&self, epoch: usize) -> Option<Vec<u32>> {
        if self.shuffle.is_none() && self.shard.is_none() {
            return None;
        }
        Some(epoch_order(self.num_samples(), self.shuffle, self.shard, epoch).into_iter().map(|i| i as u32).collect())
    }
}

/// Samples an epoch of `n` yields: this rank's share when sharded. Shared by the loaders.
pub(crate) fn epoch_samples(n: usize, shard: Option<Shard>) -> usize {
    shard.map_or(n, |s| s.samples(n))
}

/// The sample indices of an epoch: 0‥n, shuffled with `seed` and the epoch (the same on every
/// rank), then this rank's share when sharded. Shared by the loaders.
pub(crate) fn epoch_order(n: usize, seed: Option<u64>, shard: Option<Shard>, epoch: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    if let Some(seed) = seed {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        idx.shuffle(&mut rng);
    }
    match shard {
        Some(s) => s.indices(&idx),
        None => idx,
    }
}

impl Loader for DataLoader {
    type Batch = (Tensor, Tensor);

    fn shard(&mut self, rank: usize, world: usize) -> Result<()> {
        self.shard = Shard::of(rank, world)?;
        Ok(())
    }

    fn len(&self) -> usize {
        let n = self.epoch_samples();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    fn batches(&mut self, epoch: usize) -> impl Iterator<Item = Result<(Tensor, Tensor)>> + '_ {
        let order = self.order(epoch);
        let n = self.epoch_samples();
        (0..self.len()).map(move |b| {
            let start = b * self.batch_size;
            let len = self.batch_size.min(n - start);
            let (x, y) = match &order {
                None => (self.inputs.narrow(0, start, len)?, self.targets.narrow(0, start, len)?),
                Some(order) => {
                    let ids = Tensor::from_slice(&order[start..start + len], len, self.inputs.device())?;
                    (self.inputs.index_select(&ids, 0)?, self.targets.index_select(&ids, 0)?)
                }
            };
            Ok((if self.scale_u8 { to_unit_f32(&x)? } else { x }, y))
        })
    }
}

/// Row-wise argmax accuracy of `logits` (N, C) against integer `targets` (N).
pub fn accuracy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let pred = logits.argmax(D::Minus1)?;
    let targets = targets.to_dtype(pred.dtype())?;
    Ok(pred.eq(&targets)?.to_dtype(candle_core::DType::F32)?.mean_all()?)
}
