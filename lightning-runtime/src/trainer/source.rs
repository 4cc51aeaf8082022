//! Where a loop's batches come from: a loader given to the entry point, else the
//! datamodule's, else the module's `*_dataloader` hook (Lightning's order of precedence).

use super::dispatch;
use crate::{CallbackList, DataModule, EachLoader, Either, LightningModule, Loader, Loaders, Result, TrainerState};

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
pub(crate) fn get<M, CL, DM, L>(
    given: &mut Option<L>,
    state: &mut TrainerState,
    model: &mut M,
    cbs: &mut CL,
    dm: &mut DM,
    which: Which,
) -> Result<Option<RunLoader<L, DM, M>>>
where
    M: LightningModule,
    CL: CallbackList<M>,
    DM: DataModule<Batch = M::Batch>,
    L: Loader<Batch = M::Batch>,
{
    if let Some(l) = given.take() {
        return Ok(Some(EitherLoader::Given(l)));
    }
    Ok(from_hooks(state, model, cbs, dm, which)?.map(|l| match l {
        Either::Left(from_dm) => EitherLoader::DataModule(from_dm),
        Either::Right(from_module) => EitherLoader::Module(from_module),
    }))
}

/// The datamodule's loader of a loop, else the module's (Lightning's `_DataHookSelector`).
fn from_hooks<M: LightningModule, CL: CallbackList<M>, DM: DataModule<Batch = M::Batch>>(
    state: &mut TrainerState,
    model: &mut M,
    cbs: &mut CL,
    dm: &mut DM,
    which: Which,
) -> Result<Option<Either<DM::Loader, M::Loader>>> {
    match which {
        Which::Train => dispatch::train_dataloader(state, model, cbs, dm),
        Which::Val => dispatch::val_dataloader(state, model, cbs, dm),
        Which::Test => dispatch::test_dataloader(state, model, cbs, dm),
        Which::Predict => dispatch::predict_dataloader(state, model, cbs, dm),
    }
}

/// The loaders an evaluation loop reads: given (one or several), the datamodule's or the
/// module's (one each).
pub(crate) enum EvalLoaders<A, B, C> {
    Given(A),
    DataModule(B),
    Module(C),
}

/// The evaluation loaders a run reads: given, the datamodule's or the module's.
pub(crate) type RunLoaders<V, DM, M> = EvalLoaders<V, <DM as DataModule>::Loader, <M as LightningModule>::Loader>;

impl<T, A: Loaders<Batch = T>, B: Loader<Batch = T>, C: Loader<Batch = T>> Loaders for EvalLoaders<A, B, C> {
    type Batch = T;
    fn count(&self) -> usize {
        match self {
            EvalLoaders::Given(a) => a.count(),
            EvalLoaders::DataModule(_) | EvalLoaders::Module(_) => 1,
        }
    }
    fn len_of(&self, idx: usize) -> usize {
        match self {
            EvalLoaders::Given(a) => a.len_of(idx),
            EvalLoaders::DataModule(b) => Loaders::len_of(b, idx),
            EvalLoaders::Module(c) => Loaders::len_of(c, idx),
        }
    }
    fn shard_all(&mut self, rank: usize, world: usize) -> Result<()> {
        match self {
            EvalLoaders::Given(a) => a.shard_all(rank, world),
            EvalLoaders::DataModule(b) => Loader::shard(b, rank, world),
            EvalLoaders::Module(c) => Loader::shard(c, rank, world),
        }
    }
    fn each<V: EachLoader<T>>(&mut self, visit: &mut V) -> Result<()> {
        match self {
            EvalLoaders::Given(a) => a.each(visit),
            EvalLoaders::DataModule(b) => visit.loader(0, b),
            EvalLoaders::Module(c) => visit.loader(0, c),
        }
    }
}

/// Gets an evaluation loop's loaders; `None` when there are none.
pub(crate) fn get_eval<M, CL, DM, V>(
    given: &mut Option<V>,
    state: &mut TrainerState,
    model: &mut M,
    cbs: &mut CL,
    dm: &mut DM,
    which: Which,
) -> Result<Option<RunLoaders<V, DM, M>>>
where
    M: LightningModule,
    CL: CallbackList<M>,
    DM: DataModule<Batch = M::Batch>,
    V: Loaders<Batch = M::Batch>,
{
    if let Some(l) = given.take() {
        return Ok(Some(EvalLoaders::Given(l)));
    }
    Ok(from_hooks(state, model, cbs, dm, which)?.map(|l| match l {
        Either::Left(from_dm) => EvalLoaders::DataModule(from_dm),
        Either::Right(from_module) => EvalLoaders::Module(from_module),
    }))
}

/// A run's loaders fetched again from their hooks (`reload_dataloaders_every_n_epochs`).
pub(crate) trait Refetch<M: LightningModule, DM: DataModule<Batch = M::Batch>>: Sized {
    /// From a hook (the module's or the datamodule's): given loaders are kept.
    fn is_hooked(&self) -> bool;
    /// The hook's loaders now; `None` when the hook has none.
    fn refetch<CL: CallbackList<M>>(
        state: &mut TrainerState,
        model: &mut M,
        cbs: &mut CL,
        dm: &mut DM,
        which: Which,
    ) -> Result<Option<Self>>;
}

impl<M, DM, L> Refetch<M, DM> for RunLoader<L, DM, M>
where
    M: LightningModule,
    DM: DataModule<Batch = M::Batch>,
    L: Loader<Batch = M::Batch>,
{
    fn is_hooked(&self) -> bool {
        !matches!(self, EitherLoader::Given(_))
    }
    fn refetch<CL: CallbackList<M>>(
        state: &mut TrainerState,
        model: &mut M,
        cbs: &mut CL,
        dm: &mut DM,
        which: Which,
    ) -> Result<Option<Self>> {
        get(&mut None, state, model, cbs, dm, which)
    }
}

impl<M, DM, V> Refetch<M, DM> for RunLoaders<V, DM, M>
where
    M: LightningModule,
    DM: DataModule<Batch = M::Batch>,
    V: Loaders<Batch = M::Batch>,
{
    fn is_hooked(&self) -> bool {
        !matches!(self, EvalLoaders::Given(_))
    }
    fn refetch<CL: CallbackList<M>>(
        state: &mut TrainerState,
        model: &mut M,
        cbs: &mut CL,
        dm: &mut DM,
        which: Which,
    ) -> Result<Option<Self>> {
        get_eval(&mut None, state, model, cbs, dm, which)
    }
}
