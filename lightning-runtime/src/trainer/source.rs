//! Where a loop's batches come from: a loader given to the entry point, else the
//! datamodule's, else the module's `*_dataloader` hook (Lightning's order of precedence).

use super::dispatch;
use crate::{DataModule, Either, LightningModule, Loader, Result, TrainerState};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Which {
    Train,
    Val,
    Test,
    Predict,
}

/// A loader given by the caller, the datamodule's, or the module's: the trainer's own
/// choice. For a loader chosen at run time, use [`Either`](crate::Either).
pub(crate) enum EitherLoader<A, B, C> {
    Given(A),
    DataModule(B),
    Module(C),
}

impl<T, A: Loader<Batch = T>, B: Loader<Batch = T>, C: Loader<Batch = T>> Loader for EitherLoader<A, B, C> {
    type Batch = T;
    fn len(&self) -> usize {
        match self {
            EitherLoader::Given(a) => a.len(),
            EitherLoader::DataModule(b) => b.len(),
            EitherLoader::Module(c) => c.len(),
        }
    }
    fn batches(&mut self, epoch: usize) -> impl Iterator<Item = Result<T>> + '_ {
        let (mut a, mut b, mut c) = (None, None, None);
        match self {
            EitherLoader::Given(x) => a = Some(x.batches(epoch)),
            EitherLoader::DataModule(x) => b = Some(x.batches(epoch)),
            EitherLoader::Module(x) => c = Some(x.batches(epoch)),
        }
        a.into_iter().flatten().chain(b.into_iter().flatten()).chain(c.into_iter().flatten())
    }
    fn shard(&mut self, rank: usize, world: usize) -> Result<()> {
        match self {
            EitherLoader::Given(a) => a.shard(rank, world),
            EitherLoader::DataModule(b) => b.shard(rank, world),
            EitherLoader::Module(c) => c.shard(rank, world),
        }
    }
}

/// The loader a run reads: given, the datamodule's or the module's.
pub(crate) type RunLoader<L, DM, M> = EitherLoader<L, <DM as DataModule>::Loader, <M as LightningModule>::Loader>;

/// Gets a loop's loader; `None` when there is none.
pub(crate) fn get<M: LightningModule, DM: DataModule<Batch = M::Batch>, L: Loader<Batch = M::Batch>>(
    given: &mut Option<L>,
    state: &mut TrainerState,
    model: &mut M,
    dm: &mut DM,
    which: Which,
) -> Result<Option<RunLoader<L, DM, M>>> {
    if let Some(l) = given.take() {
        return Ok(Some(EitherLoader::Given(l)));
    }
    let l = match which {
        Which::Train => dispatch::train_dataloader(state, model, dm)?,
        Which::Val => dispatch::val_dataloader(state, model, dm)?,
        Which::Test => dispatch::test_dataloader(state, model, dm)?,
        Which::Predict => dispatch::predict_dataloader(state, model, dm)?,
    };
    Ok(l.map(|l| match l {
        Either::Left(from_dm) => EitherLoader::DataModule(from_dm),
        Either::Right(from_module) => EitherLoader::Module(from_module),
    }))
}
