//! Where a loop's batches come from: a loader given to the entry point, else the
//! module's `*_dataloader` hook (as Lightning falls back to the module's).

use crate::{LightningModule, Loader, Result, TrainerState};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Which {
    Train,
    Val,
    Test,
    Predict,
}

/// A loader given by the caller, or the module's.
pub enum EitherLoader<A, B> {
    Given(A),
    Module(B),
}

impl<T, A: Loader<Batch = T>, B: Loader<Batch = T>> Loader for EitherLoader<A, B> {
    type Batch = T;
    fn len(&self) -> usize {
        match self {
            EitherLoader::Given(a) => a.len(),
            EitherLoader::Module(b) => b.len(),
        }
    }
    fn batches(&mut self, epoch: usize) -> impl Iterator<Item = Result<T>> + '_ {
        let (mut a, mut b) = (None, None);
        match self {
            EitherLoader::Given(x) => a = Some(x.batches(epoch)),
            EitherLoader::Module(x) => b = Some(x.batches(epoch)),
        }
        a.into_iter().flatten().chain(b.into_iter().flatten())
    }
}

/// Gets a loop's loader; `None` when there is none.
pub(crate) fn get<M: LightningModule, L: Loader<Batch = M::Batch>>(
    given: &mut Option<L>,
    state: &mut TrainerState,
    model: &mut M,
    which: Which,
) -> Result<Option<EitherLoader<L, M::Loader>>> {
    if let Some(l) = given.take() {
        return Ok(Some(EitherLoader::Given(l)));
    }
    let l = match which {
        Which::Train if M::IMPL_TRAIN_DATALOADER => model.train_dataloader(state)?,
        Which::Val if M::IMPL_VAL_DATALOADER => model.val_dataloader(state)?,
        Which::Test if M::IMPL_TEST_DATALOADER => model.test_dataloader(state)?,
        Which::Predict if M::IMPL_PREDICT_DATALOADER => model.predict_dataloader(state)?,
        _ => return Ok(None),
    };
    Ok(Some(EitherLoader::Module(l)))
}
