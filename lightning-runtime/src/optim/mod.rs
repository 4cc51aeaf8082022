//! Optimizers and learning-rate schedulers, and what `configure_optimizers` may return.

mod adamw;
mod scheduler;
mod sgd;

pub use adamw::{AdamW, AdamWConfig};
pub use scheduler::{Interval, LrScheduler, NoScheduler, SchedulerConfig, StepLr};
pub use sgd::{Sgd, SgdConfig};

use crate::{Gradients, Result};

/// An optimizer: updates variables from their gradients.
pub trait Optimizer {
    /// One update from the accumulated gradients; variables without a gradient are left alone.
    fn step(&mut self, grads: &Gradients) -> Result<()>;
    /// The current learning rate.
    fn learning_rate(&self) -> f64;
    /// Sets the learning rate (schedulers do this after each `lr_scheduler_step`).
    fn set_learning_rate(&mut self, lr: f64);
}

/// What `configure_optimizers` returns: an optimizer, optionally with a scheduler.
///
/// Implemented for every [`Optimizer`], for `(optimizer, scheduler)` (stepped every
/// epoch, like Lightning's default) and for `(optimizer, SchedulerConfig)`.
pub trait Optimizers {
    type Optimizer: Optimizer;
    type Scheduler: LrScheduler;
    /// The optimizer and, if any, the scheduler with its configuration.
    fn parts(&mut self) -> (&mut Self::Optimizer, Option<(&mut Self::Scheduler, &SchedulerConfig)>);
}

static EPOCH_CONFIG: SchedulerConfig = SchedulerConfig::every_epoch();

impl<O: Optimizer> Optimizers for O {
    type Optimizer = O;
    type Scheduler = NoScheduler;
    fn parts(&mut self) -> (&mut O, Option<(&mut NoScheduler, &SchedulerConfig)>) {
        (self, None)
    }
}

impl<O: Optimizer, S: LrScheduler> Optimizers for (O, S) {
    type Optimizer = O;
    type Scheduler = S;
    fn parts(&mut self) -> (&mut O, Option<(&mut S, &SchedulerConfig)>) {
        (&mut self.0, Some((&mut self.1, &EPOCH_CONFIG)))
    }
}

impl<O: Optimizer, S: LrScheduler> Optimizers for (O, S, SchedulerConfig) {
    type Optimizer = O;
    type Scheduler = S;
    fn parts(&mut self) -> (&mut O, Option<(&mut S, &SchedulerConfig)>) {
        (&mut self.0, Some((&mut self.1, &self.2)))
    }
}

/// The optimizer type of a module without `configure_optimizers` (it cannot be fit).
#[derive(Debug, Default)]
pub struct NoOptimizer;

impl Optimizer for NoOptimizer {
    fn step(&mut self, _: &Gradients) -> Result<()> {
        Ok(())
    }
    fn learning_rate(&self) -> f64 {
        0.0
    }
    fn set_learning_rate(&mut self, _: f64) {}
}

pub(crate) fn check_lr(lr: f64) -> Result<()> {
    if lr.is_finite() && lr >= 0.0 {
        Ok(())
    } else {
        Err(crate::Error::config("lr", format!("the learning rate must be finite and >= 0, got {lr}")))
    }
}
