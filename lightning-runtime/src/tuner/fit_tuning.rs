//! What the finder callbacks tune: the `fit` about to start, with its trainer's flags, its
//! module and the data given to it (Lightning runs the finders in `on_fit_start`).

use super::batch_size::{scale_module, BatchSizeAttr, BatchSizeSearch, ScaleBatchSize};
use super::lr_find::{sweep, LrFind, UpdateLr};
use super::LrFinder;
use crate::data::Loader;
use crate::{DataModule, LightningModule, Result, Trainer};

/// The fit a finder callback tunes before it starts. The trainer implements it; a callback
/// reaches it only through the finders' hidden `__tune` method.
#[doc(hidden)]
pub trait TuneFit<M: LightningModule> {
    /// Whether the fit resumes from a checkpoint (the finders then leave it alone).
    fn resuming(&self) -> bool;
    /// Whether this process is rank 0 (the finders' messages are said there).
    fn is_global_zero(&self) -> bool;
    /// The number of processes of the run.
    fn world_size(&self) -> usize;
    /// [`Tuner::lr_find_with`](super::Tuner::lr_find_with) on the fit's data.
    fn lr_find<U: UpdateLr<M>>(&mut self, opts: &mut LrFind<U>) -> Result<LrFinder>;
    /// [`Tuner::scale_batch_size`](super::Tuner::scale_batch_size) on the fit's module.
    fn scale_batch_size(&mut self, opts: &ScaleBatchSize) -> Result<BatchSizeSearch>
    where
        M: BatchSizeAttr;
}

/// A `fit`'s module and data, lent to its finder callbacks before it runs.
pub struct FitTuning<'a, M, DM, T> {
    trainer: &'a Trainer<()>,
    model: &'a mut M,
    dm: &'a mut DM,
    train: Option<&'a mut T>,
    resuming: bool,
}

impl<'a, M, DM, T> FitTuning<'a, M, DM, T> {
    /// `trainer`: the fit's flags, devices and process group (without its callbacks).
    pub(crate) fn new(
        trainer: &'a Trainer<()>,
        model: &'a mut M,
        dm: &'a mut DM,
        train: Option<&'a mut T>,
        resuming: bool,
    ) -> Self {
        FitTuning { trainer, model, dm, train, resuming }
    }
}

impl<M, DM, T> TuneFit<M> for FitTuning<'_, M, DM, T>
where
    M: LightningModule,
    DM: DataModule<Batch = M::Batch>,
    T: Loader<Batch = M::Batch>,
{
    fn resuming(&self) -> bool {
        self.resuming
    }
    fn is_global_zero(&self) -> bool {
        self.trainer.is_global_zero()
    }
    fn world_size(&self) -> usize {
        self.trainer.world_size()
    }
    fn lr_find<U: UpdateLr<M>>(&mut self, opts: &mut LrFind<U>) -> Result<LrFinder> {
        // no validation loaders: the sweep does not validate
        let train = self.train.as_deref_mut();
        sweep(self.trainer, self.model, self.dm, train, None::<&mut T>, opts)
    }
    fn scale_batch_size(&mut self, opts: &ScaleBatchSize) -> Result<BatchSizeSearch>
    where
        M: BatchSizeAttr,
    {
        scale_module(self.trainer, opts, self.model, self.dm, self.train.as_deref_mut())
    }
}
