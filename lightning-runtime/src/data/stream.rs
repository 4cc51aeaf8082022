//! Iterable-style data: batches from a stream whose length is unknown.

use std::marker::PhantomData;

use super::{Collate, Loader};
use crate::Result;

/// Batches of `batch_size` samples from a stream made anew each epoch (torch's
/// `IterableDataset`). Its length is unknown (`len` is `usize::MAX`): the trainer sees the
/// end of the stream one batch ahead, so epoch-end validation, checkpoints and epoch
/// schedulers run as usual; `limit_*_batches` counts and `val_check_interval` as a batch
/// count work, fractions of an unknown epoch do not.
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
    _items: PhantomData<fn() -> (I, T)>,
}

impl<F, I, T> StreamLoader<F, I, T>
where
    F: FnMut(usize) -> I,
    I: Iterator<Item = Result<T>>,
    T: Collate,
{
    pub fn new(make: F, batch_size: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(crate::Error::Data("batch_size must be at least 1".into()));
        }
        Ok(StreamLoader { make, batch_size, _items: PhantomData })
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

    fn batches(&mut self, epoch: usize) -> impl Iterator<Item = Result<T::Batch>> + '_ {
        let mut items = (self.make)(epoch);
        let size = self.batch_size;
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed {
                return None;
            }
            let mut chunk = Vec::with_capacity(size);
            for item in items.by_ref().take(size) {
                match item {
                    Ok(t) => chunk.push(t),
                    Err(e) => {
                        failed = true;
                        return Some(Err(e));
                    }
                }
            }
            (!chunk.is_empty()).then(|| T::collate(chunk))
        })
    }
}
