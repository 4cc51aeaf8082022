//! [`TrainerState`]'s read accessors: hooks read the counters and flags, and only the trainer
//! writes them (a hook asks to stop with [`TrainerState::request_stop`]).

use std::path::Path;

use candle_core::Device;

use crate::logging::MetricStore;
use crate::{Stage, TrainerState};

impl TrainerState {
    /// The entry point being run.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The epoch being run (0-based).
    pub fn current_epoch(&self) -> usize {
        self.current_epoch
    }

    /// Optimizer steps taken.
    pub fn global_step(&self) -> usize {
        self.global_step
    }

    /// Set to stop training after the current batch.
    pub fn should_stop(&self) -> bool {
        self.should_stop
    }

    /// `false` while validating, testing or predicting (candle layers like dropout take it).
    pub fn training(&self) -> bool {
        self.training
    }

    /// `true` during the sanity-check validation batches.
    pub fn sanity_checking(&self) -> bool {
        self.sanity_checking
    }

    /// The device batches and parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Training batches per epoch after `limit_train_batches`.
    pub fn num_training_batches(&self) -> usize {
        self.num_training_batches
    }

    /// Validation batches per run after `limit_val_batches` (0: no validation), summed over
    /// the validation loaders (Lightning's `sum(trainer.num_val_batches)`).
    pub fn num_val_batches(&self) -> usize {
        self.num_val_batches
    }

    /// Batches of the validation or test run in progress, over all its loaders.
    pub fn num_eval_batches(&self) -> usize {
        self.num_eval_batches
    }

    /// The index of the loader whose batch is being evaluated, when the loop reads several
    /// (Lightning's `dataloader_idx`); `None` with one loader and outside the batch hooks.
    pub fn dataloader_idx(&self) -> Option<usize> {
        self.dataloader_idx
    }

    /// The `check_val_every_n_epoch` flag.
    pub fn check_val_every_n_epoch(&self) -> Option<usize> {
        self.check_val_every_n_epoch
    }

    /// Whether validation runs once per epoch, at its end (`val_check_interval` = 1.0).
    pub fn val_check_once_per_epoch(&self) -> bool {
        self.val_check_once_per_epoch
    }

    /// Batches per optimizer step (the `accumulate_grad_batches` flag; a
    /// `GradientAccumulationScheduler` changes it at epoch start).
    pub fn accumulate_grad_batches(&self) -> usize {
        self.accumulate_grad_batches
    }

    /// `false` under manual optimization.
    pub fn automatic_optimization(&self) -> bool {
        self.automatic_optimization
    }

    /// Where checkpoints and logs go.
    pub fn default_root_dir(&self) -> &Path {
        &self.default_root_dir
    }

    /// The first logger's run directory (`<root>/lightning_logs/version_N`), fixed when a
    /// fit, validate or test run starts; `None` without loggers.
    pub fn log_dir(&self) -> Option<&Path> {
        self.log_dir.as_deref()
    }

    /// The `precision` flag, if set: batches' floating-point tensors are cast to its dtype.
    pub fn precision(&self) -> Option<crate::Precision> {
        self.precision
    }

    /// Under `16-mixed`, during `fit`: the loss scaler's state (the scale the next loss is
    /// multiplied by, and the good steps in a row since it last changed).
    pub fn grad_scaler(&self) -> Option<crate::GradScalerState> {
        self.scaler.as_ref().map(|s| s.state_dict())
    }

    /// Each optimizer parameter group's learning rate as Lightning's `LearningRateMonitor`
    /// names it (`lr-Adam`, `lr-Adam/pg2`), refreshed whenever a scheduler steps.
    pub fn learning_rates(&self) -> &[(String, f64)] {
        &self.learning_rates
    }

    /// The epoch limit in force (Lightning's `trainer.max_epochs`): the `max_epochs` flag, 1000
    /// when neither it nor `max_steps` is set, `None` with `max_steps` alone.
    pub fn max_epochs(&self) -> Option<usize> {
        self.max_epochs
    }

    /// Everything logged: read it through [`TrainerState::callback_metrics`] or [`TrainerState::metric`].
    pub fn metrics(&self) -> &MetricStore {
        &self.metrics
    }

    /// Logging frequency in optimizer steps (the `log_every_n_steps` flag).
    pub fn log_every_n_steps(&self) -> usize {
        self.log_every_n_steps
    }
}
