//! The driver every entry point shares: the run's state and callbacks, the body, and what
//! happens after it (on an error: `on_exception`; always: loggers, weights, DDP).

use super::{dispatch, logs, save, threads, Limit, RunCallbacks, Trainer, TrainerConfig};
use crate::dist::Collective;
use crate::{
    CallbackList, Chain, DataModule, Error, LightningModule, Logger, ModelCheckpoint, Profiler, Profiling, ProgressBar,
    Result, Stage, TrainerState,
};

/// The callbacks and files of one run besides the trainer's own: the module's
/// `configure_callbacks`, the progress bar and the checkpoint callback (taken from the
/// trainer for the run and given back after it).
struct RunScope<M: LightningModule> {
    extra: Option<M::Callbacks>,
    bar: Option<(ProgressBar,)>,
    checkpoint: Option<(ModelCheckpoint,)>,
    log_files: Vec<(String, String)>,
}

impl<C, P: Profiler> Trainer<C, P> {
    /// Runs one entry point: builds the callback list (the trainer's, the module's
    /// `configure_callbacks`, the default checkpoint), runs `body`, and on error calls
    /// `on_exception` (callbacks, then the datamodule) and returns the error. No end or
    /// teardown hook runs after an error.
    pub(super) fn run<M, DM, R>(
        &mut self,
        stage: Stage,
        model: &mut M,
        dm: &mut DM,
        body: impl FnOnce(&TrainerConfig, &mut TrainerState, &mut M, &mut RunCallbacks<'_, C, M, P>, &mut DM) -> Result<R>,
    ) -> Result<(R, TrainerState)>
    where
        M: LightningModule,
        C: CallbackList<M>,
        DM: DataModule<Batch = M::Batch>,
    {
        // signals stop a fit after the current batch until on_exception has saved
        let _armed = (stage == Stage::Fit).then(crate::trainer::interrupt::arm);
        let (mut state, parked_loggers) = self.start_state(stage, model);
        // dropout layers train during fit's training batches only; the caller's flag comes back after
        let _mode = crate::nn::TrainingFlag::set(state.training);
        let mut scope = self.take_scope(stage, state.is_global_zero());
        self.profiler.setup(stage);
        let result = self.run_body(&mut scope, &mut state, model, dm, body);
        let result = result.inspect_err(|e| self.on_run_error(&mut scope, &mut state, model, dm, e));
        self.end_run(scope, state, model, parked_loggers, result)
    }

    /// The run's state from the flags (and an earlier fit's counters); the thread count set.
    /// Returns the loggers parked on ranks other than 0, which log nothing.
    fn start_state<M: LightningModule>(&mut self, stage: Stage, model: &M) -> (TrainerState, Vec<Box<dyn Logger>>) {
        let mut state = TrainerState::new(stage, self.device.clone(), self.config.default_root_dir.clone());
        if stage != Stage::Fit {
            // as in Lightning, counters of an earlier fit stay (loggers write at that step)
            (state.current_epoch, state.global_step) = self.last_run.unwrap_or((0, 0));
        }
        state.accumulate_grad_batches = self.config.accumulate_grad_batches;
        state.precision = self.config.precision;
        if stage == Stage::Fit && self.config.precision.is_some_and(crate::Precision::scales_loss) {
            state.scaler = Some(crate::devices::grad_scaler::Scaler::new(self.config.grad_scaler.unwrap_or_default()));
        }
        state.automatic_optimization = M::AUTOMATIC_OPTIMIZATION;
        state.check_val_every_n_epoch = self.config.check_val_every_n_epoch;
        state.max_epochs = self.config.effective_max_epochs();
        state.log_every_n_steps = self.config.log_every_n_steps;
        state.tuning = self.tuning;
        state.loggers = std::mem::take(&mut self.loggers);
        state.world = self.world.clone();
        // under DDP only rank 0 logs, draws the bar and writes checkpoints
        let parked = if state.is_global_zero() { Vec::new() } else { std::mem::take(&mut state.loggers) };
        state.val_check_once_per_epoch = self.config.val_check_interval == Limit::Fraction(1.0);
        let foreign = state.world.is_some() || crate::dist::runtime_started();
        threads::apply(threads::choose(self.config.threads, &self.device, model.parameters()), foreign);
        if self.device.is_cpu() {
            super::malloc::keep_freed_buffers();
        }
        (state, parked)
    }

    /// The run's own callbacks and the files for its log directory, taken from the trainer.
    fn take_scope<M: LightningModule>(&mut self, stage: Stage, rank_zero: bool) -> RunScope<M> {
        // every rank runs the checkpoint callback (its best path and score are the same
        // everywhere, since it watches metrics reduced over the ranks); rank 0 alone writes
        let checkpoint = if stage == Stage::Fit { self.checkpoint.take().map(|c| (c,)) } else { None };
        let bar =
            (stage != Stage::Predict && self.config.enable_progress_bar && rank_zero).then(|| (ProgressBar::new(),));
        let log_files = if stage == Stage::Predict { Vec::new() } else { std::mem::take(&mut self.log_files) };
        RunScope { extra: None, bar, checkpoint, log_files }
    }

    /// The callback list of the run, built where it is used (it borrows the scope's parts).
    fn with_callbacks<M, T>(
        profiler: &mut P,
        callbacks: &mut C,
        scope: &mut RunScope<M>,
        f: impl FnOnce(&mut RunCallbacks<'_, C, M, P>) -> T,
    ) -> T
    where
        M: LightningModule,
    {
        let mut tail = Chain(&mut scope.bar, &mut scope.checkpoint);
        let mut inner = Chain(&mut scope.extra, &mut tail);
        let mut user = Chain(callbacks, &mut inner);
        f(&mut Chain(&mut Profiling(profiler), &mut user))
    }

    /// Everything up to and including `body`: the module's callbacks, the state-key check,
    /// hyperparameters, the shared log directory, the log files; a barrier after `body`.
    fn run_body<M, DM, R>(
        &mut self,
        scope: &mut RunScope<M>,
        state: &mut TrainerState,
        model: &mut M,
        dm: &mut DM,
        body: impl FnOnce(&TrainerConfig, &mut TrainerState, &mut M, &mut RunCallbacks<'_, C, M, P>, &mut DM) -> Result<R>,
    ) -> Result<R>
    where
        M: LightningModule,
        C: CallbackList<M>,
        DM: DataModule<Batch = M::Batch>,
    {
        if !state.tuning {
            scope.extra = dispatch::configure_callbacks(state, model, &mut ())?;
            warn_unrun_finders::<M>(state.stage, scope.extra.is_some());
        }
        let mut keys = Vec::new();
        <RunCallbacks<'_, C, M, P>>::state_keys(&mut keys);
        keys.sort_unstable();
        if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::DuplicateStateKey(w[0]));
        }
        if state.stage != Stage::Predict {
            logs::hyperparams(state, model)?;
        }
        if let Some(world) = state.world.clone().filter(|w| w.world_size() > 1) {
            // rank 0's log directory, where the checkpoint callback saves on every rank
            state.log_dir = crate::dist::broadcast_path(world.as_ref(), state.log_dir.take())?;
        }
        let config = &self.config;
        if state.is_global_zero() {
            save::log_files(state.log_dir.as_deref().unwrap_or(&config.default_root_dir), &scope.log_files)?;
        }
        let out = Self::with_callbacks(&mut self.profiler, &mut self.callbacks, scope, |cbs| {
            body(config, state, model, cbs, dm)
        })?;
        if let Some(world) = state.world.as_ref().filter(|w| w.world_size() > 1) {
            // rank 0's checkpoints are on disk before any rank reads them
            world.barrier()?;
        }
        Ok(out)
    }

    /// A failed run: `on_exception`, the checkpoints it asked for, and a SLURM requeue on
    /// SIGUSR1. Their own errors are dropped: the run's error is what the caller needs.
    fn on_run_error<M, DM>(
        &mut self,
        scope: &mut RunScope<M>,
        state: &mut TrainerState,
        model: &mut M,
        dm: &mut DM,
        e: &Error,
    ) where
        M: LightningModule,
        C: CallbackList<M>,
        DM: DataModule<Batch = M::Batch>,
    {
        Self::with_callbacks(&mut self.profiler, &mut self.callbacks, scope, |cbs| {
            // The run's error is what the caller needs; a failing on_exception cannot replace it.
            let _ = dispatch::on_exception(state, model, cbs, dm, e);
            // checkpoints on_exception asked for (OnExceptionCheckpoint): weights, counters and
            // callback states, and the optimizer states the loop left when a signal stopped it
            let _ = save::flush(state, model, cbs, dm, None);
        });
        if let Error::Interrupted { signal: crate::Signal::Usr1, .. } = e {
            if self.config.auto_requeue && state.is_global_zero() {
                crate::trainer::requeue::requeue_slurm_job();
            }
        }
    }

    /// After the run, failed or not: the checkpoint callback and the loggers go back to the
    /// trainer, the module gets its f32 weights back, the loggers finish, and under DDP a
    /// failed rank ends the job.
    fn end_run<M: LightningModule, R>(
        &mut self,
        scope: RunScope<M>,
        mut state: TrainerState,
        model: &mut M,
        mut parked_loggers: Vec<Box<dyn Logger>>,
        result: Result<R>,
    ) -> Result<(R, TrainerState)> {
        if let Some((c,)) = scope.checkpoint {
            self.checkpoint = Some(c);
        }
        // mixed precision: the module ends the run holding the f32 master weights, as Lightning's
        // (whose module stays f32 under autocast), after a failed run too
        let restored = match crate::devices::relocate::restore(model.parameters(), &state.device, &state.masters) {
            Some(r) => {
                state.masters.clear();
                model.relocate_fields(&r)
            }
            None => Ok(()),
        };
        // the stage's profile, as Lightning's `profiler.describe()` at teardown: before the
        // loggers finish (drawing `metrics.png` is not the stage's time)
        let dir = state.log_dir.clone().unwrap_or_else(|| self.config.default_root_dir.clone());
        let rank = (state.world_size() > 1).then(|| state.global_rank());
        let profiled = self.profiler.finish(state.stage, &dir, rank);
        let finalized = logs::finalize(&mut state, if result.is_ok() { "success" } else { "failed" });
        self.loggers = std::mem::take(&mut state.loggers);
        self.loggers.append(&mut parked_loggers);
        if let (Err(e), Some(world)) = (&result, &self.world) {
            stop_other_ranks(world.as_ref(), e);
        }
        let r = result?;
        restored?;
        finalized?;
        profiled?;
        Ok((r, state))
    }
}

/// A failed rank under DDP: the other ranks would otherwise wait for it forever.
fn stop_other_ranks(world: &dyn Collective, e: &Error) {
    if world.world_size() <= 1 {
        return;
    }
    if let Error::Interrupted { .. } = e {
        // a signal stops every rank after the same batch (the loop syncs it): no
        // rank waits for another; wait for rank 0's on_exception checkpoint
        let _ = world.barrier();
    } else {
        // the other ranks would wait for this one in their next collective operation
        eprintln!("rank {} of {}: {e}; ending the job", world.rank(), world.world_size());
        world.abort(1);
    }
}

/// The finder callbacks search before `fit` runs, from the trainer's own list: one that
/// `configure_callbacks` returns comes too late, and says so instead of doing nothing.
fn warn_unrun_finders<M: LightningModule>(stage: Stage, configured: bool) {
    if stage == Stage::Fit && configured && <M::Callbacks as CallbackList<M>>::__TUNES {
        crate::dist::rank_zero_warn(
            "a `LearningRateFinder` or `BatchSizeFinder` returned by `configure_callbacks` does not run: the search runs before `fit` asks the module for its callbacks; give it to `Trainer::builder().callbacks(..)`",
        );
    }
}
