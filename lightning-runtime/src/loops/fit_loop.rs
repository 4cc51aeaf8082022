//! Lightning's `_FitLoop`: set-up, then epochs until [`StopRules::done`], then the end hooks
//! (reference §2.3, §2.7).

use std::path::Path;
use std::time::Instant;

use super::optimization::Optimization;
use super::training_epoch::TrainingEpochLoop;
use super::{fit_setup, RunCtx};
use crate::data::loaders;
use crate::trainer::resume::Resume;
use crate::trainer::source::{self, Refetch, RunLoader, RunLoaders, Which};
use crate::trainer::stop::{self, StopReason};
use crate::trainer::{dispatch, estimate, hooks, save, Limit, TrainerConfig};
use crate::{CallbackList, DataModule, Error, LightningModule, Loader, Loaders, Result, Stage, TrainerState};

/// Where training starts: an epoch, and batches already done in it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Start {
    pub epoch: usize,
    pub skip_batches: usize,
}

/// When `fit` is done (Lightning's `_FitLoop.done`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StopRules {
    pub max_epochs: Option<usize>,
    pub max_steps: Option<usize>,
    pub min_epochs: Option<usize>,
    pub min_steps: Option<usize>,
}

impl StopRules {
    pub fn new(cfg: &TrainerConfig) -> Self {
        let max_epochs = cfg.effective_max_epochs();
        StopRules { max_epochs, max_steps: cfg.max_steps, min_epochs: cfg.min_epochs, min_steps: cfg.min_steps }
    }

    /// `max_steps` optimizer steps are done.
    pub fn steps_done(&self, s: &TrainerState) -> bool {
        self.max_steps.is_some_and(|m| s.global_step >= m)
    }

    /// `max_epochs` epochs are done.
    pub fn epochs_done(&self, s: &TrainerState) -> bool {
        self.max_epochs.is_some_and(|m| s.current_epoch >= m)
    }

    /// Whether a stop request may end training now: not before `min_epochs` and `min_steps`.
    pub fn may_stop(&self, s: &TrainerState) -> bool {
        self.min_epochs.is_none_or(|m| s.current_epoch >= m) && self.min_steps.is_none_or(|m| s.global_step >= m)
    }

    /// A stop request honoured now; one made too early is dropped, as Lightning does.
    pub fn stop_requested(&self, s: &mut TrainerState) -> bool {
        if s.should_stop && !self.may_stop(s) {
            s.should_stop = false;
            s.stop_reason = None;
        }
        s.should_stop
    }

    /// Lightning's `_FitLoop.done`: checked before each epoch.
    pub fn done(&self, s: &mut TrainerState) -> bool {
        self.epochs_done(s) || self.steps_done(s) || self.stop_requested(s)
    }

    /// Why the loop ended (`timed_out`: `max_time` ran out).
    pub fn reason(&self, s: &TrainerState, timed_out: bool, max_time: Option<std::time::Duration>) -> StopReason {
        if self.steps_done(s) {
            StopReason::MaxSteps(self.max_steps.unwrap_or_default())
        } else if let Some(m) = self.max_epochs.filter(|_| self.epochs_done(s)) {
            StopReason::MaxEpochs(m)
        } else if timed_out {
            StopReason::MaxTime(max_time.unwrap_or_default())
        } else {
            StopReason::ShouldStop(s.stop_reason.clone())
        }
    }
}

/// When validation runs inside `fit` (`check_val_every_n_epoch`, `val_check_interval`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ValCheck {
    /// Validation batches per run; 0 turns validation off.
    pub num_val: usize,
    /// `check_val_every_n_epoch`; `None` counts batches across epochs.
    pub every_n_epochs: Option<usize>,
    /// Validate every this many training batches.
    pub every_n_batches: usize,
    /// `val_check_interval` is the default 1.0: validate at each epoch's last batch.
    pub at_epoch_end: bool,
}

impl ValCheck {
    /// Whether epoch `epoch` validates at all.
    pub fn this_epoch(&self, epoch: usize) -> bool {
        self.num_val > 0 && self.every_n_epochs.is_none_or(|n| (epoch + 1).is_multiple_of(n))
    }

    /// Lightning's `_should_check_val_fx`, after batch `batch_idx` of epoch `epoch`, with
    /// `total_batches` done in the whole fit; `stopping`: training stops after this batch.
    pub fn should_check_val(
        &self,
        epoch: usize,
        batch_idx: usize,
        total_batches: usize,
        last: bool,
        stopping: bool,
    ) -> bool {
        let counter = if self.every_n_epochs.is_none() { total_batches } else { batch_idx + 1 };
        self.this_epoch(epoch) && (counter % self.every_n_batches == 0 || (last && self.at_epoch_end) || stopping)
    }
}

/// The fit loop's state between its set-up and its end.
pub(crate) struct FitLoop<M: LightningModule, VL> {
    pub opt: Optimization<M::Optim>,
    pub val: Option<VL>,
    /// Validation batches to read from each validation loader (`limit_val_batches` applies
    /// to each, as in Lightning).
    pub val_counts: Vec<usize>,
    pub rules: StopRules,
    pub val_check: ValCheck,
    /// Training batches per epoch (after `limit_train_batches`).
    pub num_train: usize,
    /// The training loader knows its length (not a stream).
    pub sized: bool,
    pub started: Instant,
    pub timed_out: bool,
    /// Training batches done in this fit, across epochs.
    pub total_batches: usize,
    /// The epochs the training and validation loaders were last fetched in
    /// (`reload_dataloaders_every_n_epochs`).
    pub loaded: Loaded,
}

/// When the loaders were last fetched from their hooks (Lightning's
/// `_last_train_dl_reload_epoch`, `_last_val_dl_reload_epoch`).
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub train: usize,
    pub val: usize,
}

impl Loaded {
    /// Lightning's `_should_reload_*_dl`: `n` epochs (not 0) since `last`.
    fn due(n: usize, epoch: usize, last: usize) -> bool {
        n > 0 && epoch >= last + n
    }
}

/// `fit`: `setup`, resume, optimizers, `on_fit_start`, sanity check, epochs, `on_fit_end`,
/// `teardown`.
pub(crate) fn run<M, L, DM, T, V>(
    mut ctx: RunCtx<'_, M, L, DM>,
    mut train: Option<T>,
    mut val: Option<V>,
    resume: Option<&Path>,
) -> Result<StopReason>
where
    M: LightningModule,
    L: CallbackList<M>,
    DM: DataModule<Batch = M::Batch>,
    T: Loader<Batch = M::Batch>,
    V: Loaders<Batch = M::Batch>,
{
    hooks::setup(Stage::Fit, ctx.state, ctx.model, ctx.cbs, ctx.dm)?;
    // dropout masks start from the trainer's seed; a resume continues the checkpoint's draws
    crate::nn::set_dropout_state(crate::nn::DropoutState { seed: ctx.cfg.dropout_seed(), counter: 0 });
    let pending = match resume {
        Some(path) => Some(Resume::read(path, ctx.state, ctx.model, ctx.cbs, ctx.dm)?),
        None => None,
    };
    let start = match pending.as_ref().map(Resume::start) {
        Some((epoch, skip_batches)) => Start { epoch, skip_batches },
        None => Start::default(),
    };
    let resumed = pending.is_some();
    let early = early_train_loader(&mut ctx, &mut train)?;
    let mut opt = fit_setup::optimization(&mut ctx, pending)?;
    if ctx.cfg.enable_model_summary {
        fit_setup::print_summary(ctx.model, &mut opt.optim);
    }
    dispatch::on_fit_start(ctx.state, ctx.model, ctx.cbs)?;
    let (mut train_loader, val_loader) = loaders(&mut ctx, early, &mut train, &mut val, resumed)?;
    let mut fit = FitLoop::new(&mut ctx, opt, &train_loader, val_loader, start, resume)?;
    let stopped = fit.run(&mut ctx, &mut train_loader, start, resume)?;
    dispatch::on_fit_end(ctx.state, ctx.model, ctx.cbs)?;
    hooks::teardown(Stage::Fit, ctx.state, ctx.model, ctx.cbs, ctx.dm)?;
    Ok(stopped)
}

/// The training loader when it is known before `configure_optimizers`: given to `fit`, or
/// fetched early because `configure_optimizers` reads `estimated_stepping_batches` (Lightning
/// then calls the loader hooks early). Sharded, counted and estimated now. `None` when it is
/// fetched later, in Lightning's usual order.
fn early_train_loader<M, L, DM, T>(
    ctx: &mut RunCtx<'_, M, L, DM>,
    train: &mut Option<T>,
) -> Result<Option<Option<RunLoader<T, DM, M>>>>
where
    M: LightningModule,
    L: CallbackList<M>,
    DM: DataModule<Batch = M::Batch>,
    T: Loader<Batch = M::Batch>,
{
    let (cfg, state) = (ctx.cfg, &mut *ctx.state);
    if !(train.is_some() || M::ESTIMATE_IN_CONFIGURE_OPTIMIZERS) {
        state.stepping_batches = Some(estimate::stepping_batches(cfg, cfg.accumulate_grad_batches, None));
        return Ok(None);
    }
    let mut early = source::get(train, state, ctx.model, ctx.cbs, ctx.dm, Which::Train)?;
    let len = match &mut early {
        Some(t) => {
            let (rank, world) = (state.global_rank(), state.world_size());
            if world > 1 {
                t.shard(rank, world)?;
            }
            state.num_training_batches = cfg.limit_train_batches.apply(t.len(), "limit_train_batches")?;
            Some(t.len())
        }
        None => None,
    };
    state.stepping_batches = Some(estimate::stepping_batches(cfg, cfg.accumulate_grad_batches, len));
    Ok(Some(early))
}

/// The sanity check (unless resumed), then the training loader and the validation loader,
/// each sharded under DDP. No training loader at all is an error naming the hook to write.
#[allow(clippy::type_complexity)]
fn loaders<M, L, DM, T, V>(
    ctx: &mut RunCtx<'_, M, L, DM>,
    early: Option<Option<RunLoader<T, DM, M>>>,
    train: &mut Option<T>,
    val: &mut Option<V>,
    resumed: bool,
) -> Result<(RunLoader<T, DM, M>, Option<RunLoaders<V, DM, M>>)>
where
    M: LightningModule,
    L: CallbackList<M>,
    DM: DataModule<Batch = M::Batch>,
    T: Loader<Batch = M::Batch>,
    V: Loaders<Batch = M::Batch>,
{
    let cfg = ctx.cfg;
    let val_enabled = M::IMPL_VALIDATION_STEP && !cfg.limit_val_batches.is_zero();
    let sanity = val_enabled && !resumed && cfg.num_sanity_val_steps > 0;
    let mut val_loader = if sanity { fit_setup::sanity_check(ctx, val)? } else { None };
    let train_loader = match early {
        Some(t) => t,
        None => source::get(train, ctx.state, ctx.model, ctx.cbs, ctx.dm, Which::Train)?,
    };
    let mut train_loader =
        train_loader.ok_or(Error::MissingHook { module: M::NAME, hook: dispatch::name::TRAIN_DATALOADER })?;
    if val_enabled && !sanity {
        val_loader = source::get_eval(val, ctx.state, ctx.model, ctx.cbs, ctx.dm, Which::Val)?;
    }
    warn_skipped_validation::<M, DM>(ctx.state, val.is_some(), val_enabled && val_loader.is_none());
    let (rank, world) = (ctx.state.global_rank(), ctx.state.world_size());
    if world > 1 {
        train_loader.shard(rank, world)?;
        if let Some(vl) = &mut val_loader {
            vl.shard_all(rank, world)?;
        }
    }
    Ok((train_loader, val_loader))
}

/// Lightning's two warnings when the validation loop cannot run: a validation loader (given,
/// the datamodule's or the module's) without `validation_step`, or the step without a
/// loader. `given`: a loader passed to `fit` and not taken.
fn warn_skipped_validation<M: LightningModule, DM: DataModule>(state: &mut TrainerState, given: bool, no_loader: bool) {
    let (step, loader) = (dispatch::name::VALIDATION_STEP, dispatch::name::VAL_DATALOADER);
    state.no_validation_step = !M::IMPL_VALIDATION_STEP;
    if !M::IMPL_VALIDATION_STEP && (given || M::IMPL_VAL_DATALOADER || DM::IMPL_VAL_DATALOADER) {
        crate::dist::rank_zero_warn(format_args!(
            "a validation loader was given, but `{}` has no `{step}`: skipping the validation loop (write `{step}` to validate)",
            M::NAME
        ));
    } else if no_loader {
        crate::dist::rank_zero_warn(format_args!(
            "`{}` has a `{step}` but no validation loader: skipping the validation loop (pass one with `Data::loader(train).val(val)`, or write `{loader}`)",
            M::NAME
        ));
    }
}

impl<M: LightningModule, VL: Loaders<Batch = M::Batch>> FitLoop<M, VL> {
    /// Counts the batches (`limit_*` flags), sets the state's counts and estimate, and checks
    /// a resumed position against the loader.
    fn new<L, DM, TL: Loader>(
        ctx: &mut RunCtx<'_, M, L, DM>,
        opt: Optimization<M::Optim>,
        train: &TL,
        val: Option<VL>,
        start: Start,
        resume: Option<&Path>,
    ) -> Result<Self> {
        let (cfg, state) = (ctx.cfg, &mut *ctx.state);
        let num_train = cfg.limit_train_batches.apply(train.len(), "limit_train_batches")?;
        let sized = train.len() != usize::MAX;
        let val_counts = match &val {
            Some(v) => loaders::counts(v, cfg.limit_val_batches, "limit_val_batches", usize::MAX)?,
            None => Vec::new(),
        };
        let num_val = val_counts.iter().sum();
        state.num_training_batches = num_train;
        state.num_val_batches = num_val;
        state.stepping_batches = Some(estimate::stepping_batches(cfg, cfg.accumulate_grad_batches, Some(train.len())));
        if sized && start.skip_batches > num_train {
            return Err(Error::CheckpointField {
                path: resume.map(Path::to_path_buf),
                field: "batches_done".into(),
                reason: format!(
                    "is {}, more than the {num_train} training batches of an epoch here (a changed loader, batch size or world size?)",
                    start.skip_batches
                ),
            });
        }
        let every_n_batches = every_n_batches(cfg, num_train)?;
        let val_check = ValCheck {
            num_val,
            every_n_epochs: cfg.check_val_every_n_epoch,
            every_n_batches,
            at_epoch_end: cfg.val_check_interval == Limit::Fraction(1.0),
        };
        let rules = StopRules::new(cfg);
        let started = Instant::now();
        let loaded = Loaded { train: start.epoch, val: start.epoch };
        Ok(FitLoop {
            loaded,
            opt,
            val,
            val_counts,
            rules,
            val_check,
            num_train,
            sized,
            started,
            timed_out: false,
            total_batches: 0,
        })
    }

    /// `on_train_start`, the epochs until [`StopRules::done`], `on_train_end`; nothing but a
    /// warning when there is no training batch.
    fn run<L, DM, TL>(
        &mut self,
        ctx: &mut RunCtx<'_, M, L, DM>,
        train: &mut TL,
        start: Start,
        resume: Option<&Path>,
    ) -> Result<StopReason>
    where
        L: CallbackList<M>,
        DM: DataModule<Batch = M::Batch>,
        TL: Loader<Batch = M::Batch> + Refetch<M, DM>,
        VL: Refetch<M, DM>,
    {
        if self.num_train == 0 {
            let limit = if train.len() > 0 { " after `limit_train_batches`" } else { "" };
            crate::dist::rank_zero_warn(format_args!(
                "the training loader has no batches{limit}: `fit` trains nothing"
            ));
            return Ok(StopReason::NoTrainingBatches);
        }
        warn_if_logs_never_due(ctx, self.num_train);
        dispatch::on_train_start(ctx.state, ctx.model, ctx.cbs)?;
        ctx.state.current_epoch = start.epoch;
        warn_if_nothing_to_do(&self.rules, ctx.state.global_step, &start, resume);
        let mut skip = start.skip_batches;
        while !self.rules.done(ctx.state) {
            if skip == 0 {
                self.reload_train(ctx, train)?;
            }
            let mut epoch = TrainingEpochLoop::new(ctx, skip);
            crate::profiler::start(ctx.cbs, crate::profiler::actions::TRAINING_EPOCH);
            let ran = epoch.run(self, ctx, train);
            crate::profiler::stop(ctx.cbs, crate::profiler::actions::TRAINING_EPOCH);
            ran?;
            self.on_advance_end(ctx, &epoch)?;
            skip = 0;
        }
        let stopped = self.rules.reason(ctx.state, self.timed_out, ctx.cfg.max_time);
        stop::report(ctx.state, &stopped);
        dispatch::on_train_end(ctx.state, ctx.model, ctx.cbs)?;
        Ok(stopped)
    }

    /// `reload_dataloaders_every_n_epochs`: the training loader from its hook again, before
    /// `on_train_epoch_start` (Lightning's `setup_data` in `on_advance_start`), counted and
    /// sharded as at the start.
    fn reload_train<L, DM, TL>(&mut self, ctx: &mut RunCtx<'_, M, L, DM>, train: &mut TL) -> Result<()>
    where
        L: CallbackList<M>,
        DM: DataModule<Batch = M::Batch>,
        TL: Loader<Batch = M::Batch> + Refetch<M, DM>,
    {
        let (cfg, epoch) = (ctx.cfg, ctx.state.current_epoch);
        if !train.is_hooked() || !Loaded::due(cfg.reload_dataloaders_every_n_epochs, epoch, self.loaded.train) {
            return Ok(());
        }
        self.loaded.train = epoch;
        let Some(mut fresh) = TL::refetch(ctx.state, ctx.model, ctx.cbs, ctx.dm, Which::Train)? else {
            return Ok(());
        };
        let (rank, world) = (ctx.state.global_rank(), ctx.state.world_size());
        if world > 1 {
            fresh.shard(rank, world)?;
        }
        self.num_train = cfg.limit_train_batches.apply(fresh.len(), "limit_train_batches")?;
        self.sized = fresh.len() != usize::MAX;
        self.val_check.every_n_batches = every_n_batches(cfg, self.num_train)?;
        ctx.state.num_training_batches = self.num_train;
        *train = fresh;
        Ok(())
    }

    /// `reload_dataloaders_every_n_epochs`: the validation loaders from their hook again,
    /// before a validation run (Lightning's `_EvaluationLoop.setup_data`).
    pub fn reload_val<L, DM>(&mut self, ctx: &mut RunCtx<'_, M, L, DM>) -> Result<()>
    where
        L: CallbackList<M>,
        DM: DataModule<Batch = M::Batch>,
        VL: Refetch<M, DM>,
    {
        let (cfg, epoch) = (ctx.cfg, ctx.state.current_epoch);
        let hooked = self.val.as_ref().is_some_and(Refetch::is_hooked);
        if !hooked || !Loaded::due(cfg.reload_dataloaders_every_n_epochs, epoch, self.loaded.val) {
            return Ok(());
        }
        self.loaded.val = epoch;
        let Some(mut fresh) = VL::refetch(ctx.state, ctx.model, ctx.cbs, ctx.dm, Which::Val)? else {
            return Ok(());
        };
        let (rank, world) = (ctx.state.global_rank(), ctx.state.world_size());
        if world > 1 {
            fresh.shard_all(rank, world)?;
        }
        self.val_counts = loaders::counts(&fresh, cfg.limit_val_batches, "limit_val_batches", usize::MAX)?;
        self.val_check.num_val = self.val_counts.iter().sum();
        ctx.state.num_val_batches = self.val_check.num_val;
        self.val = Some(fresh);
        Ok(())
    }

    /// After an epoch (Lightning's `_FitLoop.on_advance_end`): epoch schedulers of a skipped
    /// epoch, the epoch's logs and `on_train_epoch_end`, the checkpoints asked for, plateau
    /// schedulers, the next epoch.
    fn on_advance_end<L, DM>(&mut self, ctx: &mut RunCtx<'_, M, L, DM>, epoch: &TrainingEpochLoop) -> Result<()>
    where
        L: CallbackList<M>,
        DM: DataModule<Batch = M::Batch>,
    {
        let RunCtx { state, model, cbs, dm, .. } = ctx;
        let next = epoch.epoch + 1;
        // Skipped epochs (Flow::SkipEpoch) still step epoch schedulers (Lightning PR #21307).
        if epoch.skipped {
            self.opt.update_lr_schedulers(state, *model, *cbs, crate::Interval::Epoch, next, false)?;
        }
        // A checkpoint saved now resumes at the next epoch only if this one is done;
        // after `max_steps` or `should_stop` mid-epoch it resumes at the next batch.
        state.at_epoch_end = epoch.skipped || epoch.finished;
        let world = state.world.clone();
        state.metrics.epoch_end(crate::logging::store::LoopKind::Train, world.as_deref())?;
        dispatch::on_train_epoch_end(state, *model, *cbs)?;
        state.sync_should_stop()?;
        save::flush(state, *model, *cbs, *dm, Some(&mut self.opt.optim))?;
        crate::trainer::logs::after_epoch(state, crate::logging::store::LoopKind::Train)?;
        state.at_epoch_end = false;
        // Plateau schedulers step after validation and the epoch-end hooks (Lightning's
        // `update_plateau_schedulers`), with the metric they monitor.
        if epoch.finished {
            self.opt.update_lr_schedulers(state, *model, *cbs, crate::Interval::Epoch, next, true)?;
        }
        state.current_epoch += 1;
        Ok(())
    }
}

/// Training batches between validation runs: `val_check_interval` as a count, or as a
/// fraction of the epoch's `num_train` batches.
fn every_n_batches(cfg: &TrainerConfig, num_train: usize) -> Result<usize> {
    Ok(match cfg.val_check_interval {
        Limit::Batches(n) => n.max(1),
        other => other.apply(num_train, "val_check_interval")?.max(1),
    })
}

/// Lightning's warning when an epoch is shorter than `log_every_n_steps`: values logged per
/// step would never reach the loggers.
fn warn_if_logs_never_due<M, L, DM>(ctx: &RunCtx<'_, M, L, DM>, num_train: usize) {
    let every = ctx.cfg.log_every_n_steps;
    if !ctx.state.loggers.is_empty() && num_train < every {
        crate::dist::rank_zero_warn(format_args!(
            "the number of training batches ({num_train}) is smaller than the logging interval \
             `log_every_n_steps={every}`: set a lower value for `log_every_n_steps` to see the logs of the training steps"
        ));
    }
}

/// Lightning warns when `fit` has nothing to do: `max_epochs=0`, or a resumed run already
/// past `max_epochs` or `max_steps`.
fn warn_if_nothing_to_do(rules: &StopRules, step: usize, start: &Start, resume: Option<&Path>) {
    let from = resume.map(|p| format!(" (resumed from {})", p.display())).unwrap_or_default();
    if let Some(m) = rules.max_epochs.filter(|&m| start.epoch >= m) {
        let what = if m == 0 {
            "`max_epochs=0`".to_string()
        } else {
            format!("epoch {} is past `max_epochs={m}`", start.epoch)
        };
        crate::dist::rank_zero_warn(format_args!(
            "{what}{from}: `fit` trains nothing; raise `max_epochs` to train more"
        ));
    } else if let Some(m) = rules.max_steps.filter(|&m| step >= m) {
        crate::dist::rank_zero_warn(format_args!(
            "step {step} is past `max_steps={m}`{from}: `fit` trains nothing; raise `max_steps` to train more"
        ));
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn state(epoch: usize, step: usize, stop: bool) -> TrainerState {
        let mut s = TrainerState::new(Stage::Fit, Device::Cpu, std::env::temp_dir());
        s.current_epoch = epoch;
        s.global_step = step;
        s.should_stop = stop;
        s
    }

    fn rules(max_epochs: Option<usize>, max_steps: Option<usize>, min_epochs: Option<usize>) -> StopRules {
        StopRules { max_epochs, max_steps, min_epochs, min_steps: None }
    }

    #[test]
    fn done_at_max_epochs_or_max_steps() {
        let r = rules(Some(3), Some(100), None);
        assert!(!r.done(&mut state(2, 99, false)));
        assert!(r.done(&mut state(3, 10, false)));
        assert!(r.done(&mut state(1, 100, false)));
        assert_eq!(r.reason(&state(1, 100, false), false, None), StopReason::MaxSteps(100));
        assert_eq!(r.reason(&state(3, 10, false), false, None), StopReason::MaxEpochs(3));
        // no limit at all (max_epochs = -1 and max_steps = -1): only a stop request ends it
        assert!(!rules(None, None, None).done(&mut state(1_000, 1_000_000, false)));
    }

    #[test]
    fn a_stop_request_before_min_epochs_is_dropped() {
        let r = rules(Some(10), None, Some(2));
        let mut early = state(1, 5, true);
        assert!(!r.done(&mut early));
        assert!(!early.should_stop, "Lightning forgets a request made before min_epochs");
        let mut later = state(2, 5, true);
        assert!(r.done(&mut later));
        assert!(matches!(r.reason(&later, false, None), StopReason::ShouldStop(_)));
    }

    fn val(every_n_epochs: Option<usize>, every_n_batches: usize, at_epoch_end: bool) -> ValCheck {
        ValCheck { num_val: 2, every_n_epochs, every_n_batches, at_epoch_end }
    }

    #[test]
    fn should_check_val_at_epoch_end_by_default() {
        let v = val(Some(1), 10, true);
        assert!(!v.should_check_val(0, 3, 4, false, false));
        assert!(v.should_check_val(0, 4, 5, true, false), "the epoch's last batch");
        assert!(v.should_check_val(0, 2, 3, false, true), "training stops after this batch");
        assert!(!ValCheck { num_val: 0, ..v }.should_check_val(0, 4, 5, true, false), "no val batches");
    }

    #[test]
    fn should_check_val_every_n_epochs_and_batches() {
        // check_val_every_n_epoch = 2: epochs 1, 3, ... validate
        let v = val(Some(2), 10, true);
        assert!(!v.should_check_val(0, 9, 10, true, false));
        assert!(v.should_check_val(1, 9, 20, true, false));
        // val_check_interval = 3 batches within each epoch
        let v = val(Some(1), 3, false);
        let checks: Vec<_> = (0..7).filter(|&i| v.should_check_val(0, i, i + 1, i == 6, false)).collect();
        assert_eq!(checks, [2, 5]);
        // check_val_every_n_epoch = None: every 4 batches counted across epochs
        let v = val(None, 4, false);
        assert!(v.should_check_val(1, 0, 4, false, false));
        assert!(!v.should_check_val(1, 3, 7, false, false));
    }
}
