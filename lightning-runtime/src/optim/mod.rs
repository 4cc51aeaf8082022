//! Optimizers and learning-rate schedulers equal to torch's, and what
//! `configure_optimizers` may return.

pub(crate) mod added_groups;
mod engine;
mod fused;
pub(crate) mod grads;
mod params;
mod rules;
mod scheduler;
pub(crate) mod swa_lr;

pub use engine::{Optim, OptimizerMeta, OptimizerState, Rule};
pub use params::{ParamGroup, Params};
pub use rules::{Adagrad, AdagradConfig, Adam, AdamConfig, AdamW, AdamWConfig, RmsProp, RmsPropConfig, Sgd, SgdConfig};
pub use scheduler::{
    Anneal, CosineAnnealingLr, CosineAnnealingWarmRestarts, ExponentialLr, Interval, LinearLr, LrScheduler, Mode,
    MultiStepLr, NoScheduler, OneCycleLr, ReduceLrOnPlateau, SchedulerConfig, SequentialLr, StepLr, ThresholdMode,
};

use crate::{Error, Gradients, Result};

/// An optimizer: updates variables from their gradients, in parameter groups.
pub trait Optimizer {
    /// Its name, as `LearningRateMonitor` logs it (`lr-{name}`; Lightning uses the class
    /// name). The built-in optimizers name themselves; give yours its own.
    fn name(&self) -> &'static str {
        "Optimizer"
    }
    /// One update from the accumulated gradients; variables without a gradient are left alone.
    fn step(&mut self, grads: &Gradients) -> Result<()>;
    /// Parameter groups.
    fn num_groups(&self) -> usize;
    /// A group's current learning rate.
    fn learning_rate(&self, group: usize) -> f64;
    /// A group's learning rate before any scheduling.
    fn initial_learning_rate(&self, group: usize) -> f64;
    /// Sets a group's learning rate (schedulers do this after each step).
    fn set_learning_rate(&mut self, group: usize, lr: f64);
    /// The momentum a scheduler may cycle (`OneCycleLR`'s `cycle_momentum`): SGD's and
    /// RMSprop's `momentum`, Adam's and AdamW's β1; `None` for optimizers without one.
    fn momentum(&self) -> Option<f64> {
        None
    }
    /// Sets that momentum, for every group (optimizers without one ignore it).
    fn set_momentum(&mut self, momentum: f64) {
        let _ = momentum;
    }
    /// The state to checkpoint, keyed by parameter name (a copy: steps update it in place).
    fn state_dict(&self) -> Result<OptimizerState>;
    /// Adds a parameter group while training runs (torch's `optimizer.add_param_group`): its
    /// parameters start with no state and take its learning rate (or the optimizer's). The
    /// group is saved in checkpoints, and a resume re-creates it before loading the state.
    /// The default refuses: an optimizer of your own must implement it to be fine-tuned.
    fn add_param_group(&mut self, group: ParamGroup) -> Result<()> {
        let _ = group;
        Err(Error::config("add_param_group", format!("the optimizer `{}` cannot add parameter groups", self.name())))
    }
    /// Restores a saved state; names, groups and shapes must match.
    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()>;
    /// Checks that `load_state_dict` would take this state, changing nothing; a resume checks
    /// every part of a checkpoint before it applies any. The default accepts any state.
    fn check_state_dict(&self, state: &OptimizerState) -> Result<()> {
        let _ = state;
        Ok(())
    }
    /// The parameters this optimizer updates, by name. The trainer's unused-parameter
    /// guard checks that each got a gradient; an optimizer that lists none is not checked.
    fn named_parameters(&self) -> Vec<(&str, &candle_core::Var)> {
        Vec::new()
    }
    /// Keeps `dtype` copies of the parameters and applies updates to them, writing the
    /// rounded result back (mixed precision's master weights).
    fn use_master_weights(&mut self, dtype: candle_core::DType) -> Result<()> {
        let _ = dtype;
        Err(Error::config("precision", "this optimizer cannot keep master weights, which mixed precision needs"))
    }
    /// As `use_master_weights`, with the master copy of each parameter taken from `masters`
    /// (keyed by the parameter's id) where it has one of that dtype and shape: the trainer
    /// hands in the module's own higher-precision weights, so they stay exact. The default
    /// makes copies of its own.
    fn use_master_weights_from(
        &mut self,
        dtype: candle_core::DType,
        masters: &std::collections::HashMap<candle_core::TensorId, candle_core::Var>,
    ) -> Result<()> {
        let _ = masters;
        self.use_master_weights(dtype)
    }
}

/// What `configure_optimizers` returns: an optimizer, optionally with a scheduler.
///
/// Implemented for every [`Optimizer`], for `(optimizer, scheduler)` (stepped every
/// epoch, like Lightning's default) and for `(optimizer, scheduler, SchedulerConfig)`.
pub trait Optimizers {
    /// The optimizers' type (all of them share it).
    type Optimizer: Optimizer;
    /// The scheduler's type; [`NoScheduler`] when there is none.
    type Scheduler: LrScheduler;
    /// The (first) optimizer and, if any, the scheduler with its configuration.
    fn parts(&mut self) -> (&mut Self::Optimizer, Option<(&mut Self::Scheduler, &SchedulerConfig)>);
    /// How many optimizers; more than one needs manual optimization, as in Lightning.
    fn count(&self) -> usize {
        1
    }
    /// Optimizer `i`.
    fn get(&mut self, i: usize) -> Option<&mut Self::Optimizer> {
        (i == 0).then(|| self.parts().0)
    }
}

macro_rules! several {
    ($($n:literal)*) => {$(
        /// Several optimizers of one type, for manual optimization (e.g. a GAN's two).
        impl<O: Optimizer> Optimizers for [O; $n] {
            type Optimizer = O;
            type Scheduler = NoScheduler;
            fn parts(&mut self) -> (&mut O, Option<(&mut NoScheduler, &SchedulerConfig)>) {
                (&mut self[0], None)
            }
            fn count(&self) -> usize {
                $n
            }
            fn get(&mut self, i: usize) -> Option<&mut O> {
                self.get_mut(i)
            }
        }
    )*};
}

several!(2 3 4 5 6 7 8);

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
    fn num_groups(&self) -> usize {
        0
    }
    fn learning_rate(&self, _: usize) -> f64 {
        0.0
    }
    fn initial_learning_rate(&self, _: usize) -> f64 {
        0.0
    }
    fn set_learning_rate(&mut self, _: usize, _: f64) {}
    fn state_dict(&self) -> Result<OptimizerState> {
        Ok(OptimizerState::default())
    }
    fn load_state_dict(&mut self, _: &OptimizerState) -> Result<()> {
        Ok(())
    }
}

pub(crate) fn check_lr(lr: f64) -> Result<()> {
    if lr.is_finite() && lr > 0.0 {
        Ok(())
    } else {
        Err(Error::config("lr", format!("the learning rate must be finite and > 0, got {lr}")))
    }
}
