//! `GradientAccumulationScheduler`: changes `accumulate_grad_batches` by epoch.

use std::collections::BTreeMap;

use crate::{Error, Result, TrainerState};

/// Lightning's `GradientAccumulationScheduler`: `{epoch: factor}`, e.g. `[(0, 8), (4, 4),
/// (8, 1)]` accumulates 8 batches until epoch 4, then 4, then none. Not with manual
/// optimization, nor with the trainer's own `accumulate_grad_batches`.
#[derive(Debug, Clone)]
pub struct GradientAccumulationScheduler {
    scheduling: BTreeMap<usize, usize>,
}

impl GradientAccumulationScheduler {
    /// From `(epoch, factor)` pairs; the factor is 1 before the first epoch given. An error
    /// for no pairs or a factor of 0.
    pub fn new(scheduling: impl IntoIterator<Item = (usize, usize)>) -> Result<Self> {
        let mut scheduling: BTreeMap<usize, usize> = scheduling.into_iter().collect();
        if scheduling.is_empty() {
            return Err(Error::config("scheduling", "give at least one (epoch, factor) pair"));
        }
        if let Some((e, _)) = scheduling.iter().find(|(_, f)| **f == 0) {
            return Err(Error::config("scheduling", format!("the factor for epoch {e} must be at least 1")));
        }
        scheduling.entry(0).or_insert(1);
        Ok(GradientAccumulationScheduler { scheduling })
    }

    /// The factor in force at `epoch`.
    pub fn factor(&self, epoch: usize) -> usize {
        self.scheduling.range(..=epoch).next_back().map_or(1, |(_, f)| *f)
    }
}

#[lightning_macros::callback]
impl GradientAccumulationScheduler {
    fn on_fit_start(&mut self, trainer: &TrainerState) -> Result<()> {
        if !trainer.automatic_optimization {
            return Err(Error::config("GradientAccumulationScheduler", "not with manual optimization"));
        }
        if trainer.accumulate_grad_batches != 1 {
            return Err(Error::config(
                "accumulate_grad_batches",
                "set by the trainer and by a GradientAccumulationScheduler: keep one of them",
            ));
        }
        Ok(())
    }

    fn on_train_epoch_start(&mut self, trainer: &mut TrainerState) {
        trainer.accumulate_grad_batches = self.factor(trainer.current_epoch);
    }
}
