//! `LearningRateMonitor`: logs every parameter group's learning rate.

use crate::{Log, Result, TrainerState};

/// When `LearningRateMonitor` logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoggingInterval {
    /// At every training step (Lightning's `logging_interval="step"`).
    Step,
    /// At every epoch start (`"epoch"`).
    Epoch,
}

/// Lightning's `LearningRateMonitor`: logs `lr-Adam` (and `lr-Adam/pg2`, … for more
/// parameter groups; `lr-Adam-1` for a second optimizer) at every training step, or at every
/// epoch start with `LoggingInterval::Epoch`. The values reach the loggers like any logged
/// value (every `log_every_n_steps` steps for step logging).
#[derive(Debug, Clone)]
pub struct LearningRateMonitor {
    interval: LoggingInterval,
}

impl Default for LearningRateMonitor {
    fn default() -> Self {
        Self::new()
    }
}

impl LearningRateMonitor {
    /// Logs at every step.
    pub fn new() -> Self {
        LearningRateMonitor { interval: LoggingInterval::Step }
    }
    /// Logs at every step (default) or every epoch (Lightning's `logging_interval`).
    pub fn logging_interval(mut self, interval: LoggingInterval) -> Self {
        self.interval = interval;
        self
    }

    fn log(&self, trainer: &mut TrainerState, opts: Log) -> Result<()> {
        for (name, lr) in trainer.learning_rates.clone() {
            trainer.log_with(&name, lr, opts)?;
        }
        Ok(())
    }
}

#[lightning_macros::callback]
impl LearningRateMonitor {
    fn on_train_batch_start(&mut self, trainer: &mut TrainerState) -> Result<()> {
        if self.interval == LoggingInterval::Step {
            self.log(trainer, Log::new().on_step(true).on_epoch(false))?;
        }
        Ok(())
    }
    fn on_train_epoch_start(&mut self, trainer: &mut TrainerState) -> Result<()> {
        if self.interval == LoggingInterval::Epoch {
            self.log(trainer, Log::new())?;
        }
        Ok(())
    }
}
