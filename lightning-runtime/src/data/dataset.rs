//! Map-style datasets and their loader, with background workers.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};

use super::Loader;
use crate::dist::Shard;
use crate::{Error, Result};

/// A data set read by index: torch's map-style `Dataset`.
pub trait Dataset: Send + Sync + 'static {
    /// One sample.
    type Item: Collate;
    /// The number of samples (torch's `__len__`).
    fn len(&self) -> usize;
    /// Whether there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Sample `index` (< `len`).
    fn get(&self, index: usize) -> Result<Self::Item>;
}

/// How samples become a batch (torch's `default_collate`): tensors are stacked on a new
/// first dimension, numbers become a 1-D tensor, tuples collate element-wise.
pub trait Collate: Sized + Send + 'static {
    /// What a batch of these is.
    type Batch: Send + 'static;
    /// Makes one batch of `items`, in order.
    fn collate(items: Vec<Self>) -> Result<Self::Batch>;
}

impl Collate for Tensor {
    type Batch = Tensor;
    fn collate(items: Vec<Tensor>) -> Result<Tensor> {
        Ok(Tensor::stack(&items, 0)?)
    }
}

macro_rules! numbers {
    ($($t:ty)*) => {$(
        impl Collate for $t {
            type Batch = Tensor;
            fn collate(items: Vec<$t>) -> Result<Tensor> {
                let n = items.len();
                Ok(Tensor::from_vec(items, n, &Device::Cpu)?)
            }
        }
    )*};
}

numbers!(u8 u32 i64 f32 f64);

macro_rules! tuples {
    ($(($($t:ident $v:ident),+))*) => {$(
        impl<$($t: Collate),+> Collate for ($($t,)+) {
            type Batch = ($($t::Batch,)+);
            fn collate(items: Vec<Self>) -> Result<Self::Batch> {
                $(let mut $v = Vec::with_capacity(items.len());)+
                for ($($t,)+) in items {
                    $($v.push($t);)+
                }
                Ok(($($t::collate($v)?,)+))
            }
        }
    )*};
}

#[allow(non_snake_case)]
mod tuple_impls {
    use super::*;
    tuples! {
        (A a)
        (A a, B b)
        (A a, B b, C c)
        (A a, B b, C c, D d)
    }
}

/// Batches from a [`Dataset`]: `batch_size`, seeded `shuffle`, `drop_last`, and
/// `num_workers` threads that prepare the next batches while the current one trains.
///
/// Batch `b` of an epoch is always made by worker `b % num_workers` and handed over in
/// order, so the batches are the same whatever `num_workers` is. Each worker keeps at most
/// `prefetch` batches ready. An error or a panic in a worker ends the epoch with a typed
/// error; dropping the iterator stops and joins the workers.
///
/// ```
/// use lightning::data::{Dataset, MapLoader};
/// use lightning::Loader;
///
/// struct Squares;
/// impl Dataset for Squares {
///     type Item = (f32, u32);
///     fn len(&self) -> usize { 10 }
///     fn get(&self, i: usize) -> lightning::Result<(f32, u32)> { Ok(((i * i) as f32, i as u32)) }
/// }
///
/// # fn main() -> lightning::Result<()> {
/// let mut loader = MapLoader::new(Squares, 4)?.num_workers(2);
/// let labels: Vec<u32> = loader.batches(0).map(|b| b.unwrap().1.to_vec1::<u32>().unwrap()).flatten().collect();
/// assert_eq!(labels, (0..10).collect::<Vec<u32>>());
/// # Ok(()) }
/// ```
pub struct MapLoader<D: Dataset> {
    dataset: Arc<D>,
    batch_size: usize,
    shuffle: Option<u64>,
    drop_last: bool,
    num_workers: usize,
    prefetch: usize,
    /// This rank's share under data-parallel training.
    shard: Option<Shard>,
}

impl<D: Dataset> MapLoader<D> {
    /// Batches of `batch_size` samples, in order, on the training thread; an error for a
    /// `batch_size` of 0.
    pub fn new(dataset: D, batch_size: usize) -> Result<Self> {
        super::check_batch_size(batch_size, || format!("MapLoader::new (dataset `{}`)", std::any::type_name::<D>()))?;
        Ok(MapLoader {
            dataset: Arc::new(dataset),
            batch_size,
            shuffle: None,
            drop_last: false,
            num_workers: 0,
            prefetch: 2,
            shard: None,
        })
    }

    /// Reshuffles every epoch, from `seed` and the epoch number.
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.shuffle = Some(seed);
        self
    }

    /// Drops the last batch when it is smaller than `batch_size` (torch's `drop_last`; off).
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// Background threads preparing batches (0: on the training thread).
    pub fn num_workers(mut self, n: usize) -> Self {
        self.num_workers = n;
        self
    }

    /// Batches each worker keeps ready (at least 1).
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = n.max(1);
        self
    }

    /// The data set.
    pub fn dataset(&self) -> &Arc<D> {
        &self.dataset
    }

    /// Samples an epoch yields: this rank's share when sharded.
    fn epoch_samples(&self) -> usize {
        super::epoch_samples(self.dataset.len(), self.shard)
    }

    fn plan(&self, epoch: usize) -> Vec<Vec<usize>> {
        let idx = super::epoch_order(self.dataset.len(), self.shuffle, self.shard, epoch);
        let mut batches: Vec<Vec<usize>> = idx.chunks(self.batch_size).map(<[usize]>::to_vec).collect();
        if self.drop_last && batches.last().is_some_and(|b| b.len() < self.batch_size) {
            batches.pop();
        }
        batches
    }
}

fn make<D: Dataset>(dataset: &D, indices: &[usize]) -> Result<<D::Item as Collate>::Batch> {
    let items = indices.iter().map(|&i| dataset.get(i)).collect::<Result<Vec<_>>>()?;
    D::Item::collate(items)
}

/// Runs `make` and turns a panic into an error.
fn guarded<D: Dataset>(dataset: &D, indices: &[usize]) -> Result<<D::Item as Collate>::Batch> {
    match catch_unwind(AssertUnwindSafe(|| make(dataset, indices))) {
        Ok(r) => r,
        Err(p) => {
            let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
            Err(Error::Data(format!("a data-loader worker panicked: {}", msg.unwrap_or_else(|| "(no message)".into()))))
        }
    }
}

/// An epoch's batches made by worker threads, handed over in order.
struct Workers<B> {
    receivers: Vec<Receiver<Result<B>>>,
    handles: Vec<JoinHandle<()>>,
    next: usize,
    total: usize,
    failed: bool,
}

impl<B> Iterator for Workers<B> {
    type Item = Result<B>;
    fn next(&mut self) -> Option<Result<B>> {
        if self.failed || self.next >= self.total {
            return None;
        }
        let w = self.next % self.receivers.len();
        self.next += 1;
        let r = self.receivers[w]
            .recv()
            .unwrap_or_else(|_| Err(Error::Data("a data-loader worker stopped without a batch".into())));
        self.failed = r.is_err();
        Some(r)
    }
}

impl<B> Drop for Workers<B> {
    fn drop(&mut self) {
        // closing the channels makes every worker's next send fail, so it returns
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

impl<D: Dataset> Loader for MapLoader<D> {
    type Batch = <D::Item as Collate>::Batch;

    fn len(&self) -> usize {
        let n = self.epoch_samples();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    fn shard(&mut self, rank: usize, world: usize) -> Result<()> {
        self.shard = Shard::of(rank, world)?;
        Ok(())
    }

    fn batches(&mut self, epoch: usize) -> impl Iterator<Item = Result<Self::Batch>> + '_ {
        let plan = self.plan(epoch);
        let total = plan.len();
        if self.num_workers == 0 {
            let dataset = self.dataset.clone();
            // the same contract as the workers: a panic is an error, an error ends the epoch
            let batches = plan.into_iter().map(move |b| guarded(&*dataset, &b));
            return either::Left(batches.scan(false, |failed, r| {
                if *failed {
                    return None;
                }
                *failed = r.is_err();
                Some(r)
            }));
        }
        let n = self.num_workers.min(total.max(1));
        let plan = Arc::new(plan);
        let mut receivers = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for w in 0..n {
            let (tx, rx) = sync_channel(self.prefetch);
            let (dataset, plan) = (self.dataset.clone(), plan.clone());
            let spawned = std::thread::Builder::new().name(format!("data-worker-{w}")).spawn(move || {
                for b in (w..plan.len()).step_by(n) {
                    let r = guarded(&*dataset, &plan[b]);
                    let stop = r.is_err();
                    if tx.send(r).is_err() || stop {
                        return;
                    }
                }
            });
            match spawned {
                Ok(h) => {
                    receivers.push(rx);
                    handles.push(h);
                }
                Err(e) => {
                    let err = Error::Data(format!("cannot start a data-loader worker: {e}"));
                    drop(Workers { receivers, handles, next: 0, total: 0, failed: true });
                    return either::Right(either::Right(std::iter::once(Err(err))));
                }
            }
        }
        either::Right(either::Left(Workers { receivers, handles, next: 0, total, failed: false }))
    }
}

/// A two-way iterator choice without boxing.
mod either {
    pub enum Either<A, B> {
        Left(A),
        Right(B),
    }
    pub use Either::{Left, Right};

    impl<T, A: Iterator<Item = T>, B: Iterator<Item = T>> Iterator for Either<A, B> {
        type Item = T;
        fn next(&mut self) -> Option<T> {
            match self {
                Left(a) => a.next(),
                Right(b) => b.next(),
            }
        }
    }
}
