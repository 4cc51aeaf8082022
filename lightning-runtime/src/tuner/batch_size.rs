//! `Tuner::scale_batch_size`: the largest batch size whose steps fit, and its options.

use std::time::Duration;

use super::batch_search::{binsearch, power, Outcome, Trial};
use super::snapshot::Snapshot;
use super::trial::{verdict, StepClock};
use super::{info, Tuner};
use crate::contract::module::requirements::{HasConfigureOptimizers, HasTrainDataloader, HasTrainingStep};
use std::borrow::BorrowMut;

use crate::data::Loader;
use crate::{Data, DataModule, Error, FitData, FitOutcome, LightningModule, Limit, Result, Trainer};

/// Where the batch size lives: the module (for its `train_dataloader`) or the datamodule
/// (Lightning's `batch_arg_name` attribute, `batch_size` by default). Its loader hook must
/// build the loader with [`batch_size`](Self::batch_size): each trial calls it again.
///
/// ```
/// struct Digits { batch_size: usize }
/// impl lightning::tuner::BatchSizeAttr for Digits {
///     fn batch_size(&self) -> usize { self.batch_size }
///     fn set_batch_size(&mut self, batch_size: usize) { self.batch_size = batch_size }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no batch size for the batch size finder to set: implement `lightning::tuner::BatchSizeAttr` for it",
    label = "no `BatchSizeAttr`",
    note = "`BatchSizeFinder` and `Tuner::scale_batch_size` set the size through `BatchSizeAttr::set_batch_size`, and the `train_dataloader` hook reads it"
)]
pub trait BatchSizeAttr {
    /// The batch size the loader hook uses now.
    fn batch_size(&self) -> usize;
    /// Sets it, for the next call of the loader hook.
    fn set_batch_size(&mut self, batch_size: usize);
}

/// How `scale_batch_size` searches (Lightning's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchSizeMode {
    /// Double until a trial fails; keep the last size that fit (`"power"`, the default).
    #[default]
    Power,
    /// Double until a trial fails, then bisect between the last fit and the failure (`"binsearch"`).
    BinSearch,
}

/// The options of [`Tuner::scale_batch_size`], with Lightning's defaults: power mode,
/// `steps_per_trial` 3, `init_val` 2, `max_trials` 25, and no time budget.
///
/// A trial is too large when its run fails with an out-of-memory error (CUDA's or cuBLAS's
/// allocation failure, as Lightning's `is_oom_error`), or, with
/// [`max_step_time`](Self::max_step_time), when its mean training step (batch start to
/// batch end: step, backward, update; the first, warm-up step left out when the trial has
/// more) takes longer than that. On the CPU, candle aborts
/// the process when an allocation fails, so there the time budget is the rule that stops
/// the growth; without one the search grows until the batch holds the whole training set
/// or `max_trials` runs out.
#[derive(Debug, Clone)]
#[must_use]
pub struct ScaleBatchSize {
    mode: BatchSizeMode,
    steps_per_trial: usize,
    init_val: usize,
    max_trials: usize,
    max_step_time: Option<Duration>,
}

impl Default for ScaleBatchSize {
    fn default() -> Self {
        Self::new()
    }
}

impl ScaleBatchSize {
    /// Lightning's defaults.
    pub fn new() -> Self {
        ScaleBatchSize {
            mode: BatchSizeMode::Power,
            steps_per_trial: 3,
            init_val: 2,
            max_trials: 25,
            max_step_time: None,
        }
    }
    /// Power (default) or binary search.
    pub fn mode(mut self, mode: BatchSizeMode) -> Self {
        self.mode = mode;
        self
    }
    /// Optimizer steps each trial runs (default 3).
    pub fn steps_per_trial(mut self, steps: usize) -> Self {
        self.steps_per_trial = steps;
        self
    }
    /// The first batch size tried (default 2).
    pub fn init_val(mut self, batch_size: usize) -> Self {
        self.init_val = batch_size;
        self
    }
    /// At most this many trials (in binsearch mode: trials that fit), default 25.
    pub fn max_trials(mut self, trials: usize) -> Self {
        self.max_trials = trials;
        self
    }
    /// A trial whose mean training step, after its first, takes longer is too large (ours;
    /// Lightning has only out-of-memory errors).
    pub fn max_step_time(mut self, budget: Duration) -> Self {
        self.max_step_time = Some(budget);
        self
    }

    fn check(&self) -> Result<()> {
        let zero =
            [("steps_per_trial", self.steps_per_trial), ("init_val", self.init_val), ("max_trials", self.max_trials)]
                .into_iter()
                .find(|(_, v)| *v == 0);
        match zero {
            Some((name, _)) => Err(Error::Tuner(format!("scale_batch_size: {name} is 0; it must be at least 1"))),
            None => Ok(()),
        }
    }
}

/// What `scale_batch_size` found: the batch size now set, and every trial in order.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSizeSearch {
    /// The largest batch size that fit (Lightning's return value).
    pub batch_size: usize,
    /// The trials, in the order they ran.
    pub trials: Vec<Trial>,
}

impl<C, P: crate::Profiler> Tuner<'_, C, P> {
    /// Lightning's `Tuner.scale_batch_size` for a module whose `train_dataloader` reads its
    /// batch size from the module ([`BatchSizeAttr`]): runs `steps_per_trial` training steps
    /// at growing batch sizes (calling `train_dataloader` again for each), keeps the largest
    /// that fit, sets it on the module and puts the module's weights back. As in Lightning,
    /// loaders given directly (`Data::loader`) cannot be rescaled, so there is no such form.
    pub fn scale_batch_size<M>(&mut self, model: &mut M, opts: ScaleBatchSize) -> Result<BatchSizeSearch>
    where
        M: LightningModule + HasTrainingStep + HasConfigureOptimizers + HasTrainDataloader + BatchSizeAttr,
    {
        let (mut dm, train, _) = FitData::<M>::into_parts(Data::module());
        scale_module(self.trainer, &opts, model, dm.borrow_mut(), train)
    }

    /// [`scale_batch_size`](Self::scale_batch_size) with the batch size on a datamodule, whose
    /// `train_dataloader` each trial calls again (Lightning's `trainer.datamodule.batch_size`).
    pub fn scale_batch_size_datamodule<M, DM>(
        &mut self,
        model: &mut M,
        datamodule: &mut DM,
        opts: ScaleBatchSize,
    ) -> Result<BatchSizeSearch>
    where
        M: LightningModule + HasTrainingStep + HasConfigureOptimizers,
        DM: DataModule<Batch = M::Batch> + BatchSizeAttr,
    {
        opts.check()?;
        let (before, snapshot) = (datamodule.batch_size(), Snapshot::take(model.parameters())?);
        let found = search(self.trainer, &opts, |run, bs| {
            datamodule.set_batch_size(bs);
            run.fit(model, Data::datamodule(&mut *datamodule))
        });
        datamodule.set_batch_size(found.as_ref().map_or(before, |f| f.batch_size));
        snapshot.restore(model.parameters())?;
        found
    }
}

/// The search with the batch size on the module, each trial's loader from the module's
/// (or `dm`'s) `train_dataloader`: what [`Tuner::scale_batch_size`] and the
/// [`BatchSizeFinder`](super::BatchSizeFinder) callback run. `train` is the training loader
/// given to the fit, if any: such a loader cannot be rescaled. The trials do not validate.
pub(crate) fn scale_module<C, P, M, DM, T>(
    trainer: &Trainer<C, P>,
    opts: &ScaleBatchSize,
    model: &mut M,
    dm: &mut DM,
    train: Option<T>,
) -> Result<BatchSizeSearch>
where
    P: crate::Profiler,
    M: LightningModule + BatchSizeAttr,
    DM: DataModule<Batch = M::Batch>,
    T: Loader<Batch = M::Batch>,
{
    if train.is_some() {
        return Err(Error::Tuner("the batch size finder cannot rescale loaders given to `fit` (`Data::loader`): let the module's (or the datamodule's) `train_dataloader` build the loader from its batch size, and pass `Data::module()` (or the datamodule)".into()));
    }
    opts.check()?;
    let (before, snapshot) = (model.batch_size(), Snapshot::take(model.parameters())?);
    let found = search(trainer, opts, |run, bs| {
        model.set_batch_size(bs);
        run.fit_inner(model, dm, None::<T>, None::<T>)
    });
    model.set_batch_size(found.as_ref().map_or(before, |f| f.batch_size));
    snapshot.restore(model.parameters())?;
    found
}

/// Runs the search, one short `fit` per trial through `fit_at(run, batch_size)`.
fn search<C, P: crate::Profiler>(
    trainer: &Trainer<C, P>,
    opts: &ScaleBatchSize,
    mut fit_at: impl FnMut(&mut Trainer<(StepClock,)>, usize) -> Result<FitOutcome>,
) -> Result<BatchSizeSearch> {
    let mut trials = Vec::new();
    let mut last = None;
    let trial = |bs: usize| -> Result<Outcome> {
        let mut run = trainer.for_tuning((StepClock::default(),), |c| {
            c.max_steps = Some(opts.steps_per_trial);
            c.limit_train_batches = Limit::Fraction(1.0);
        });
        let fitted = fit_at(&mut run, bs);
        let clock = &run.callbacks().0;
        check_rescaled(&mut last, bs, clock.num_batches)?;
        let fits = verdict(fitted, clock, opts.max_step_time)?;
        match &fits {
            Ok(()) => info(trainer, format_args!("Batch size {bs} succeeded")),
            Err(why) => info(trainer, format_args!("Batch size {bs} failed: {why}")),
        }
        trials.push(Trial { batch_size: bs, failure: fits.clone().err() });
        Ok(Outcome { fits, covers_dataset: clock.num_batches <= 1 })
    };
    let batch_size = match opts.mode {
        BatchSizeMode::Power => power(opts.init_val, opts.max_trials, trial),
        BatchSizeMode::BinSearch => binsearch(opts.init_val, opts.max_trials, trial),
    }?;
    info(
        trainer,
        format_args!("Finished batch size finder, will continue with full run using batch size {batch_size}"),
    );
    Ok(BatchSizeSearch { batch_size, trials })
}

/// A loader hook that ignores the batch size would make every trial the same (and the
/// search "succeed" up to `max_trials`): when a larger size leaves the epoch with as many
/// batches as before (more than one), the hook did not read it.
fn check_rescaled(last: &mut Option<(usize, usize)>, bs: usize, batches: usize) -> Result<()> {
    let ignored = matches!(*last, Some((before, n)) if bs > before && batches == n && n > 1 && n != usize::MAX);
    if ignored {
        return Err(Error::Tuner(format!(
            "the training loader did not change with the batch size: {batches} batches an epoch at batch size {bs} as at {}; build it in `train_dataloader` from the batch size that `BatchSizeAttr::set_batch_size` sets",
            last.map_or(0, |l| l.0)
        )));
    }
    *last = Some((bs, batches));
    Ok(())
}
