//! Iterable-style data: batches from a stream whose length is unknown.

use std::marker::PhantomData;

use super::{Collate, Loader};
use crate::dist::Shard;
use crate::Result;

/// Batches of `batch_size` samples from a stream made anew each epoch (torch's
/// `IterableDataset`). Its length is unknown (`len` is `usize::MAX`): the trainer sees the
/// end of the stream one batch ahead, so epoch-end validation, checkpoints and epoch
/// schedulers run as usual; `limit_*_batches` counts and `val_check_interval` as a batch
/// count work, fractions of an unknown epoch do not.
///
/// Under DDP every rank makes the same stream and keeps its share: of each `world ×
/// batch_size` samples, positions `rank, rank + world, …`. At the end, the last
/// `len % world` samples are dropped (at most `world - 1`, as torch's `DistributedSampler`
/// with `drop_last=True`), so that every rank takes the same number of steps.
///
/// ```
/// use lightning::data::StreamLoader;
/// use lightning::Loader;
/// let mut l = StreamLoader::new(|_epoch| (0..5u32).map(|i| Ok((i as f32, i))), 2).unwrap();
/// assert_eq!(l.batches(0).count(), 3);
/// ```
pub struct StreamLoader<F, I, T> {
    make: F,
    batch_size: usize,
    shard: Option<Shard>,
    _items: PhantomData<fn() -> (I, T)>,
}

impl<F, I, T> StreamLoader<F, I, T>
where
    F: FnMut(usize) -> I,
    I: Iterator<Item = Result<T>>,
    T: Collate,
{
    /// Batches of `batch_size` samples from `make(epoch)`, the stream of each epoch; an
    /// error for a `batch_size` of 0.
    pub fn new(make: F, batch_size: usize) -> Result<Self> {
        super::check_batch_size(batch_size, || "StreamLoader::new".into())?;
        Ok(StreamLoader { make, batch_size, shard: None, _items: PhantomData })
    }
}

impl<F, I, T> Loader for StreamLoader<F, I, T>
where
    F: FnMut(usize) -> I,
    I: Iterator<Item = Result<T>>,
    T: Collate,
{
    type Batch = T::Batch;

    fn len(&self) -> usize {
        usize::MAX
    }

    fn shard(&mut self, rank: usize, world: usize) -> Result<()> {
        self.shard = Shard::of(rank, world)?;
        Ok(())
    }

    fn batches(&mut self, epoch: usize) -> impl Iterator<Item = Result<T::Batch>> + '_ {
        let mut items = (self.make)(epoch);
        let size = self.batch_size;
        let (rank, world) = self.shard.map_or((0, 1), |s| (s.rank(), s.world()));
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed {
                return None;
            }
            // one round: the next `world × size` samples, of which this rank keeps every
            // world-th; a short last round is cut to a multiple of `world`
            let mut round = Vec::with_capacity(size * world);
            for item in items.by_ref().take(size * world) {
                match item {
                    Ok(t) => round.push(t),
                    Err(e) => {
                        failed = true;
                        return Some(Err(e));
                    }
                }
            }
            round.truncate(round.len() / world * world);
            let mine: Vec<T> = round.into_iter().skip(rank).step_by(world).collect();
            (!mine.is_empty()).then(|| T::collate(mine))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(n: u32, batch: usize, world: usize) -> Vec<Vec<Vec<u32>>> {
        (0..world)
            .map(|rank| {
                let mut l = StreamLoader::new(move |_| (0..n).map(Ok::<u32, crate::Error>), batch).unwrap();
                l.shard(rank, world).unwrap();
                l.batches(0).map(|b| b.unwrap().to_vec1::<u32>().unwrap()).collect()
            })
            .collect()
    }

    #[test]
    fn ranks_interleave_a_stream_and_take_equal_steps() {
        // 11 samples, batch 2, 3 ranks: rounds of 6; the last round's 5 cut to 3
        assert_eq!(shares(11, 2, 3), [vec![vec![0, 3], vec![6]], vec![vec![1, 4], vec![7]], vec![vec![2, 5], vec![8]]]);
        // fewer samples at the end than ranks: no last batch for anyone
        assert_eq!(shares(7, 2, 3).iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
        // one rank: the plain stream
        assert_eq!(shares(5, 2, 1), [vec![vec![0, 1], vec![2, 3], vec![4]]]);
        let mut l = StreamLoader::new(|_| (0..3u32).map(Ok::<u32, crate::Error>), 2).unwrap();
        assert!(l.shard(3, 3).is_err());
    }
}
