//! What hooks see of the trainer: counters, flags, metrics and requests.

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::Device;

use crate::logging::store::{LogSite, LoopKind};
use crate::logging::{Log, LogScope, LogValue, Logger, MetricStore};
use crate::Result;

/// The entry point being run; `setup` and `teardown` receive it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// `Trainer::fit` (Lightning's `"fit"`).
    Fit,
    /// `Trainer::validate` (`"validate"`).
    Validate,
    /// `Trainer::test` (`"test"`).
    Test,
    /// `Trainer::predict` (`"predict"`).
    Predict,
}

impl Stage {
    /// Lightning's name for the stage: `"fit"`, `"validate"`, `"test"` or `"predict"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Fit => "fit",
            Stage::Validate => "validate",
            Stage::Test => "test",
            Stage::Predict => "predict",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the module's `on_train_batch_start` tells the loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flow {
    /// Train this batch.
    #[default]
    Continue,
    /// Skip the rest of this epoch and its validation (Lightning's `-1`).
    SkipEpoch,
}

impl From<()> for Flow {
    fn from(_: ()) -> Self {
        Flow::Continue
    }
}

/// The trainer's state, passed to hooks that take `trainer`.
///
/// Counters follow Lightning: `global_step` counts optimizer steps, `current_epoch`
/// the epochs completed before the running one.
#[derive(Debug)]
pub struct TrainerState {
    /// The entry point being run.
    pub(crate) stage: Stage,
    /// The epoch being run (0-based).
    pub(crate) current_epoch: usize,
    /// Optimizer steps taken.
    pub(crate) global_step: usize,
    /// Set to stop training after the current batch.
    pub(crate) should_stop: bool,
    /// `false` while validating, testing or predicting (candle layers like dropout take it).
    pub(crate) training: bool,
    /// `true` during the sanity-check validation batches.
    pub(crate) sanity_checking: bool,
    /// The device batches and parameters live on.
    pub(crate) device: Device,
    /// Training batches per epoch after `limit_train_batches`.
    pub(crate) num_training_batches: usize,
    /// Validation batches per run after `limit_val_batches` (0: no validation).
    pub(crate) num_val_batches: usize,
    /// The module in `fit` has no `validation_step`, so nothing validation logs exists.
    pub(crate) no_validation_step: bool,
    /// Batches of the validation or test run in progress, over all its loaders.
    pub(crate) num_eval_batches: usize,
    /// Loaders of the last `validate` or `test` (the columns of its results table).
    pub(crate) num_eval_loaders: usize,
    /// The loader of the evaluation batch in progress, when the loop reads several
    /// (`None` with one loader, and outside the batch hooks): logged keys get
    /// `/dataloader_idx_N`.
    pub(crate) dataloader_idx: Option<usize>,
    /// The `check_val_every_n_epoch` flag.
    pub(crate) check_val_every_n_epoch: Option<usize>,
    /// Whether validation runs once per epoch, at its end (`val_check_interval` = 1.0).
    pub(crate) val_check_once_per_epoch: bool,
    /// Batches per optimizer step (the `accumulate_grad_batches` flag; a
    /// `GradientAccumulationScheduler` changes it at epoch start).
    pub(crate) accumulate_grad_batches: usize,
    /// `false` under manual optimization.
    pub(crate) automatic_optimization: bool,
    /// Where checkpoints and logs go.
    pub(crate) default_root_dir: PathBuf,
    /// The first logger's run directory (`<root>/lightning_logs/version_N`), fixed when a
    /// fit, validate or test run starts; `None` without loggers.
    pub(crate) log_dir: Option<PathBuf>,
    /// The `precision` flag, if set: batches' floating-point tensors are cast to its dtype.
    pub(crate) precision: Option<crate::Precision>,
    /// Each optimizer parameter group's learning rate as Lightning's `LearningRateMonitor`
    /// names it (`lr-Adam`, `lr-Adam/pg2`), refreshed whenever a scheduler steps.
    pub(crate) learning_rates: Vec<(String, f64)>,
    /// SWALR, once `StochasticWeightAveraging` put it in place of the module's scheduler (as
    /// Lightning replaces `trainer.lr_scheduler_configs[0]`): from then on it alone steps,
    /// once per epoch, and sets the first optimizer's rates.
    pub(crate) replaced_scheduler: Option<crate::optim::swa_lr::SwaLr>,
    /// The epoch limit in force (`max_epochs`, Lightning's 1000 when no limit is set; `None`
    /// with `max_steps` alone).
    pub(crate) max_epochs: Option<usize>,
    /// Everything logged: read it through [`TrainerState::callback_metrics`] or [`TrainerState::metric`].
    pub(crate) metrics: MetricStore,
    /// Logging frequency in optimizer steps (the `log_every_n_steps` flag).
    pub(crate) log_every_n_steps: usize,
    pub(crate) loggers: Vec<Box<dyn Logger>>,
    /// The hook running now and what it may log (set by the generated hook dispatcher).
    pub(crate) hook: &'static str,
    pub(crate) scope: LogScope,
    pub(crate) running: LoopKind,
    /// The current batch's size, the default weight of its logged values.
    pub(crate) batch_size: usize,
    pub(crate) save_requests: Vec<SaveRequest>,
    /// `ModelCheckpoint`'s view after its last save, for `Logger::after_save_checkpoint`.
    pub(crate) saved_checkpoints: Option<crate::logging::SavedCheckpoints>,
    pub(crate) last_saved: Option<PathBuf>,
    /// The optimizers' and scheduler's states when a signal stopped `fit` between batches,
    /// for the checkpoints `on_exception` asks for (the loop that owned them is gone).
    pub(crate) stopped_optim: Option<(Vec<crate::optim::OptimizerState>, Option<serde_json::Value>)>,
    /// Training batches done in the current epoch (for mid-epoch resume).
    pub(crate) batches_done: usize,
    /// The module's parameters were moved or converted at set-up.
    pub(crate) relocated: bool,
    /// Under `bf16-mixed`: the f32 master weights, by the id of the bf16 variable the module
    /// computes with (the module's f32 variables from before the conversion; the optimizer
    /// updates them, checkpoints save them, and the module gets them back at the end of the run).
    pub(crate) masters: std::collections::HashMap<candle_core::TensorId, candle_core::Var>,
    /// Under `16-mixed`, during `fit`: the loss scaler.
    pub(crate) scaler: Option<crate::devices::grad_scaler::Scaler>,
    /// The process group of data-parallel training (`TrainerBuilder::ddp`).
    pub(crate) world: Option<std::sync::Arc<dyn crate::dist::Collective>>,
    /// Inside `on_train_epoch_end` of a finished epoch: a checkpoint saved now resumes at the next epoch.
    pub(crate) at_epoch_end: bool,
    /// Why `should_stop` was set, when the one who set it said ([`TrainerState::stop`]).
    pub(crate) stop_reason: Option<String>,
    /// `estimated_stepping_batches`, or why it is unknown; `None` outside `fit`.
    pub(crate) stepping_batches: Option<std::result::Result<usize, String>>,
    /// A run of the tuner (`lr_find`, `scale_batch_size`): the module's LR scheduler does not
    /// step and the stop reason is not printed (Lightning drops the schedulers of these runs).
    pub(crate) tuning: bool,
    /// Parameters that get no gradient (fine-tuning's `freeze`), saved in checkpoints.
    pub(crate) frozen: crate::finetune::frozen::Frozen,
}

/// A checkpoint save asked for during a hook, carried out when the hook pass returns.
#[derive(Debug, Clone)]
pub(crate) struct SaveRequest {
    pub path: PathBuf,
    /// A checkpoint this one replaces, deleted only once the new one is safely written.
    pub replaces: Option<PathBuf>,
    /// Without optimizer state (`ModelCheckpoint::save_weights_only`).
    pub weights_only: bool,
}

impl TrainerState {
    pub(crate) fn new(stage: Stage, device: Device, default_root_dir: PathBuf) -> Self {
        TrainerState {
            stage,
            current_epoch: 0,
            global_step: 0,
            should_stop: false,
            training: stage == Stage::Fit,
            sanity_checking: false,
            device,
            num_training_batches: 0,
            num_val_batches: 0,
            no_validation_step: false,
            num_eval_batches: 0,
            num_eval_loaders: 1,
            dataloader_idx: None,
            check_val_every_n_epoch: Some(1),
            val_check_once_per_epoch: true,
            accumulate_grad_batches: 1,
            automatic_optimization: true,
            default_root_dir,
            log_dir: None,
            precision: None,
            learning_rates: Vec::new(),
            replaced_scheduler: None,
            max_epochs: None,
            metrics: MetricStore::default(),
            log_every_n_steps: 50,
            loggers: Vec::new(),
            hook: "",
            scope: LogScope::Forbidden,
            running: LoopKind::Train,
            batch_size: 1,
            save_requests: Vec::new(),
            saved_checkpoints: None,
            last_saved: None,
            stopped_optim: None,
            batches_done: 0,
            relocated: false,
            masters: std::collections::HashMap::new(),
            scaler: None,
            world: None,
            at_epoch_end: false,
            stop_reason: None,
            stepping_batches: None,
            tuning: false,
            frozen: Default::default(),
        }
    }

    /// Sets `training` and the flag `lightning::nn`'s dropout layers read on this thread.
    pub(crate) fn set_training(&mut self, training: bool) {
        self.training = training;
        crate::nn::set_training(training);
    }

    /// Lightning's `self.log(name, value)` with the hook's defaults: per step in
    /// `training_step` and the training batch and optimization hooks, per epoch (the mean
    /// weighted by batch size) in validation and test and in every epoch hook. Logging from a
    /// hook where Lightning forbids it is an error. A tensor stays on its device until read.
    pub fn log(&mut self, name: &str, value: impl LogValue) -> Result<()> {
        self.log_with(name, value, Log::default())
    }

    /// `log` with options: `trainer.log_with("loss", &loss, Log::new().prog_bar(true))`.
    pub fn log_with(&mut self, name: &str, value: impl LogValue, opts: Log) -> Result<()> {
        let v = value.into_metric()?;
        let synced = match self.group() {
            Some(world) if opts.sync_dist => Some(crate::dist::sync_metric(world, &v, opts.reduce)?),
            _ => None,
        };
        let dataloader_idx = self.dataloader_idx;
        let site = LogSite {
            scope: self.scope,
            hook: self.hook,
            loop_kind: self.running,
            batch_size: self.batch_size,
            dataloader_idx,
        };
        match dataloader_idx {
            Some(i) if opts.add_dataloader_idx => {
                self.metrics.log(&format!("{name}/dataloader_idx_{i}"), v, synced, opts, site)
            }
            _ => self.metrics.log(name, v, synced, opts, site),
        }
    }

    /// Lightning's `self.log(name, metric)` for a [`Metric`](crate::metrics::Metric): its
    /// value over the epoch, computed from the state of all ranks under DDP, is logged as
    /// an epoch value and returned, and the metric is reset for the next epoch. Call it
    /// once per epoch from an epoch-end hook (`on_validation_epoch_end`,
    /// `on_train_epoch_end`, ...), on every rank: elsewhere it is an error.
    ///
    /// ```ignore
    /// fn validation_step(&mut self, batch: &(Tensor, Tensor)) -> lightning::Result<()> {
    ///     self.acc.update((&self.forward(&batch.0)?, &batch.1))
    /// }
    /// fn on_validation_epoch_end(&mut self, trainer: &mut TrainerState) -> lightning::Result<()> {
    ///     trainer.log_metric("val_acc", &mut self.acc)?;
    ///     Ok(())
    /// }
    /// ```
    pub fn log_metric<M>(&mut self, name: &str, metric: &mut M) -> Result<f64>
    where
        M: crate::metrics::Metric<Output = f64> + Clone,
    {
        self.log_metric_with(name, metric, Log::default())
    }

    /// `log_metric` with options (`prog_bar`, `logger`).
    pub fn log_metric_with<M>(&mut self, name: &str, metric: &mut M, opts: Log) -> Result<f64>
    where
        M: crate::metrics::Metric<Output = f64> + Clone,
    {
        if self.scope != LogScope::EpochOnly {
            return Err(crate::Error::MetricLoggedPerBatch { hook: self.hook, name: name.to_owned() });
        }
        let value = self.compute_metric(metric)?;
        self.log_with(name, value, opts)?;
        metric.reset();
        Ok(value)
    }

    /// A metric's value over the state of all ranks (every rank must call it, as it is a
    /// collective operation under DDP); the metric itself is left as it is.
    pub fn compute_metric<M>(&self, metric: &M) -> Result<M::Output>
    where
        M: crate::metrics::Metric + Clone,
    {
        match &self.world {
            Some(world) => metric.compute_synced(world.as_ref()),
            None => metric.compute(),
        }
    }

    /// Lightning's `self.log_dict(...)`: logs each `(name, value)` pair as [`log`](Self::log)
    /// would, stopping at the first error.
    ///
    /// ```ignore
    /// trainer.log_dict([("val_loss", &loss), ("val_acc", &acc)])?;
    /// ```
    pub fn log_dict<K: AsRef<str>, V: LogValue>(&mut self, metrics: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        self.log_dict_with(metrics, Log::default())
    }

    /// `log_dict` with the same options for every value, as `log_with`:
    /// `trainer.log_dict_with([("val_loss", &loss), ("val_acc", &acc)], Log::new().prog_bar(true))`.
    pub fn log_dict_with<K: AsRef<str>, V: LogValue>(
        &mut self,
        metrics: impl IntoIterator<Item = (K, V)>,
        opts: Log,
    ) -> Result<()> {
        for (name, value) in metrics {
            self.log_with(name.as_ref(), value, opts)?;
        }
        Ok(())
    }

    /// Lightning's `trainer.callback_metrics`: every logged metric's latest value (epoch
    /// values once their epoch ended), read back from the device now.
    pub fn callback_metrics(&self) -> Result<BTreeMap<String, f64>> {
        self.metrics.callback_metrics()
    }

    /// One entry of `callback_metrics`, reading back only that value.
    pub fn metric(&self, name: &str) -> Result<Option<f64>> {
        self.metrics.get(name)
    }

    /// Records the hook now running and where it may log; returns the outer hook's, which
    /// the dispatcher puts back when the hook returns.
    #[doc(hidden)]
    #[inline]
    pub fn __enter_hook(&mut self, hook: &'static str, scope: LogScope) -> (&'static str, LogScope) {
        (std::mem::replace(&mut self.hook, hook), std::mem::replace(&mut self.scope, scope))
    }

    /// Asks for a checkpoint at `path`; it is written when the current hook pass returns,
    /// atomically (a crash leaves the old file or the new one, never half of one).
    pub fn save_checkpoint(&mut self, path: impl Into<PathBuf>) {
        self.save_requests.push(SaveRequest { path: path.into(), replaces: None, weights_only: false });
    }

    /// Puts SWALR in place of the module's scheduler. Its rates are what `learning_rates`
    /// reports from now on; the loop sets them on the optimizer before its next step.
    pub(crate) fn replace_lr_scheduler(&mut self, swa: crate::optim::swa_lr::SwaLr) {
        for (slot, lr) in self.learning_rates.iter_mut().zip(swa.rates()) {
            slot.1 = *lr;
        }
        self.replaced_scheduler = Some(swa);
    }

    /// Lightning's `trainer.should_stop = True`: training stops after the current batch (under
    /// DDP, every rank stops after the same batch). [`TrainerState::stop`] also says why.
    pub fn request_stop(&mut self) {
        self.should_stop = true;
    }

    /// Sets `should_stop` and says why: `fit` prints the reason when it stops ("`Trainer.fit`
    /// stopped: `trainer.should_stop()` was set: {reason}") and returns it in
    /// `FitOutcome::stopped`. `EarlyStopping` and `Timer` stop this way.
    pub fn stop(&mut self, reason: impl Into<String>) {
        self.should_stop = true;
        self.stop_reason = Some(reason.into());
    }

    /// Lightning's `trainer.estimated_stepping_batches`: the optimizer steps `fit` will take,
    /// known in `configure_optimizers` (and after), so a schedule can span the run. Lightning's
    /// arithmetic: `max_steps` when no epoch limit is set, else
    /// `ceil(batches per epoch / accumulate_grad_batches) × max_epochs`, capped by `max_steps`,
    /// where the batches are the training loader's per rank after `limit_train_batches`.
    ///
    /// A loader given to `fit` (`Data::loader(..)`) is known from the start. One from `train_dataloader` or
    /// a datamodule is fetched before `configure_optimizers` when `configure_optimizers`
    /// itself reads the estimate (as Lightning fetches it when the property is read there),
    /// otherwise at its usual place, after `on_fit_start` and the sanity check.
    ///
    /// An error says why there is no estimate: outside `fit`; a stream of unknown length with
    /// no `limit_train_batches(n)` or `max_steps`; or a hook that reads it before a
    /// `train_dataloader` loader is fetched.
    ///
    /// ```
    /// use lightning::prelude::*;
    /// # fn configure(trainer: &mut TrainerState, vars: &candle_nn::VarMap) -> lightning::Result<(AdamW, OneCycleLr, SchedulerConfig)> {
    /// // in `fn configure_optimizers(&mut self, trainer: &mut TrainerState)`:
    /// let total = trainer.estimated_stepping_batches()?;
    /// Ok((AdamW::with_lr(vars, 1e-3)?, OneCycleLr::new(1e-2, total), SchedulerConfig::every_step()))
    /// # }
    /// ```
    pub fn estimated_stepping_batches(&self) -> Result<usize> {
        match &self.stepping_batches {
            Some(Ok(n)) => Ok(*n),
            Some(Err(why)) => Err(crate::Error::config("estimated_stepping_batches", why.clone())),
            None => Err(crate::Error::config("estimated_stepping_batches", "known only during `fit`")),
        }
    }

    /// What to add to "`key` was not logged" when no validation batch ran, so the message
    /// names the cause (an empty validation set) rather than the symptom.
    pub(crate) fn unlogged_cause(&self, key: &str) -> String {
        if self.num_val_batches > 0 || self.stage != crate::Stage::Fit {
            return String::new();
        }
        let step = crate::trainer::dispatch::name::VALIDATION_STEP;
        if self.no_validation_step {
            return format!(
                "; the module has no `{step}`, so nothing validation logs exists; write one, or monitor a \
                 training metric instead of `{key}`"
            );
        }
        format!(
            "; no validation batch ran: the validation loader is empty, missing, or limited to 0 \
             batches, so nothing `{step}` logs exists; give it samples, or monitor a training metric \
             instead of `{key}`"
        )
    }

    /// The last checkpoint written in this run.
    pub fn last_checkpoint(&self) -> Option<&std::path::Path> {
        self.last_saved.as_deref()
    }

    pub(crate) fn request_save(&mut self, path: PathBuf, replaces: Option<PathBuf>, weights_only: bool) {
        self.save_requests.push(SaveRequest { path, replaces, weights_only });
    }
}

impl TrainerState {
    /// This process's rank among all (Lightning's `trainer.global_rank`); 0 without DDP.
    pub fn global_rank(&self) -> usize {
        self.world.as_ref().map_or(0, |w| w.rank())
    }

    /// The rank within this node (Lightning's `trainer.local_rank`).
    pub fn local_rank(&self) -> usize {
        self.world.as_ref().map_or(0, |w| w.local_rank())
    }

    /// Processes training together (Lightning's `trainer.world_size`); 1 without DDP.
    pub fn world_size(&self) -> usize {
        self.world.as_ref().map_or(1, |w| w.world_size())
    }

    /// Whether this is rank 0, the one that logs and saves (Lightning's `is_global_zero`,
    /// for `rank_zero_only`-style code in hooks).
    pub fn is_global_zero(&self) -> bool {
        self.global_rank() == 0
    }
}
