//! What changes the weights: the optimizers with their scheduler, the gradients and the
//! unused-parameter guard; one automatic or manual step per batch (Lightning's
//! `_AutomaticOptimization` / `_ManualOptimization`) and `update_lr_schedulers`.

use super::closure::{ensure_called, Closure};
use super::manual::Manual;
use super::schedulers;
use crate::trainer::dispatch;
use crate::trainer::unused::UnusedGuard;
use crate::{
    CallbackList, GradientClipAlgorithm, Gradients, Interval, LightningModule, Optimizers, Result, StepOutput,
    TrainerState,
};

/// The optimizers of one run and what their steps need.
pub(crate) struct Optimization<O> {
    pub optim: O,
    pub grads: Gradients,
    pub guard: UnusedGuard,
    /// A plateau scheduler steps after validation, with the metric it monitors.
    pub plateau: bool,
    /// Automatic optimization; under manual optimization the module steps its schedulers.
    pub automatic: bool,
    /// `gradient_clip_val` and `gradient_clip_algorithm`.
    pub clip: (Option<f64>, GradientClipAlgorithm),
}

/// Where a batch sits in its gradient-accumulation window.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    /// The first batch of the window (or of a resumed epoch): zero the gradients.
    pub start: bool,
    /// The last batch of the window: step the optimizer (and average under DDP).
    pub end: bool,
}

impl<O: Optimizers> Optimization<O> {
    /// Lightning's `update_lr_schedulers(interval, update_plateau_schedulers)`: steps the
    /// scheduler when it runs on `interval`, `count` hits its frequency and it is of the kind
    /// this pass updates (`plateau`), through `step` (the `lr_scheduler_step` hook).
    pub fn update_lr_schedulers_with(
        &mut self,
        state: &mut TrainerState,
        interval: Interval,
        count: usize,
        plateau: bool,
        step: impl FnOnce(&mut TrainerState, &mut O::Scheduler, Option<f64>) -> Result<()>,
    ) -> Result<()> {
        if !self.automatic {
            return Ok(());
        }
        if state.replaced_scheduler.is_some() {
            // StochasticWeightAveraging's SWALR replaced the module's scheduler: it alone
            // steps, every epoch (Lightning's default config for it)
            if interval == Interval::Epoch && !plateau {
                schedulers::step_replaced(state, &mut self.optim);
            }
            return Ok(());
        }
        if self.plateau != plateau {
            return Ok(());
        }
        schedulers::step(state, &mut self.optim, interval, count, step)
    }

    /// [`update_lr_schedulers_with`](Self::update_lr_schedulers_with) the module's hook.
    pub fn update_lr_schedulers<M: LightningModule<Optim = O>, L: CallbackList<M>>(
        &mut self,
        state: &mut TrainerState,
        model: &mut M,
        cbs: &mut L,
        interval: Interval,
        count: usize,
        plateau: bool,
    ) -> Result<()> {
        self.update_lr_schedulers_with(state, interval, count, plateau, |state, sched, metric| {
            dispatch::lr_scheduler_step(state, model, cbs, sched, metric)
        })
    }

    /// One training batch: the optimizer closure under `optimizer_step` (automatic), or
    /// `training_step` driving the optimizers (manual). Counts the global steps taken and
    /// returns the step's outputs and whether an optimizer stepped.
    pub fn advance<M, L>(
        &mut self,
        state: &mut TrainerState,
        model: &mut M,
        cbs: &mut L,
        batch: &M::Batch,
        batch_idx: usize,
        window: Window,
    ) -> Result<(StepOutput, bool)>
    where
        M: LightningModule<Optim = O>,
        L: CallbackList<M>,
    {
        if !M::AUTOMATIC_OPTIMIZATION {
            // the module steps its optimizers; every step counts, as in Lightning
            // `manual` holds the list, so the profiler times the step from here
            if L::__PROFILED {
                cbs.__profile(dispatch::name::TRAINING_STEP, true);
            }
            let mut manual = Manual::<M, L> {
                callbacks: &mut *cbs,
                optim: &mut self.optim,
                grads: &mut self.grads,
                steps: 0,
                guard: &mut self.guard,
            };
            let outputs = dispatch::training_step(state, model, &mut (), batch, batch_idx, &mut manual);
            let steps = manual.steps;
            if L::__PROFILED {
                cbs.__profile(dispatch::name::TRAINING_STEP, false);
            }
            let outputs = outputs?;
            state.global_step += steps;
            return Ok((outputs, steps > 0));
        }
        let epoch = state.current_epoch;
        let (optimizer, _) = self.optim.parts();
        let mut closure = Closure::<M, L> {
            state: &mut *state,
            callbacks: cbs,
            batch,
            batch_idx,
            grads: &mut self.grads,
            zero_grad: window.start,
            sync: window.end,
            clip: self.clip,
            output: None,
            stepped: false,
            guard: &mut self.guard,
        };
        if window.end {
            // the closure holds the list, so the profiler times the step from here
            if L::__PROFILED {
                closure.callbacks.__profile(dispatch::name::OPTIMIZER_STEP, true);
            }
            let stepped = dispatch::optimizer_step(model, &mut (), epoch, batch_idx, optimizer, &mut closure);
            if L::__PROFILED {
                closure.callbacks.__profile(dispatch::name::OPTIMIZER_STEP, false);
            }
            stepped?;
            ensure_called(&closure)?;
        } else {
            crate::OptimizerClosure::call(&mut closure, model, optimizer)?;
        }
        let stepped = closure.stepped;
        let outputs = closure.output.take().unwrap_or_default();
        if stepped {
            state.global_step += 1;
            self.update_lr_schedulers(state, model, cbs, Interval::Step, batch_idx + 1, false)?;
        }
        Ok((outputs, stepped))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Var};

    use super::*;
    use crate::LrScheduler;
    use crate::{SchedulerConfig, Sgd, StepLr};

    type Opts = (Sgd, StepLr, SchedulerConfig);

    fn optimization(cfg: SchedulerConfig, plateau: bool, automatic: bool) -> Optimization<Opts> {
        let w = Var::zeros(2, DType::F32, &Device::Cpu).unwrap();
        let sgd = Sgd::new(vec![w.clone()], 0.1).unwrap();
        Optimization {
            optim: (sgd, StepLr::new(1, 0.5), cfg),
            grads: Gradients::new(vec![w]),
            guard: UnusedGuard::new(false, 1),
            plateau,
            automatic,
            clip: (None, GradientClipAlgorithm::Norm),
        }
    }

    /// How many times `update_lr_schedulers_with` called the step for each call made.
    fn steps(o: &mut Optimization<Opts>, calls: &[(Interval, usize, bool)]) -> usize {
        let mut state = TrainerState::new(crate::Stage::Fit, Device::Cpu, std::env::temp_dir());
        let mut n = 0;
        for &(interval, count, plateau) in calls {
            o.update_lr_schedulers_with(&mut state, interval, count, plateau, |_, _, _| {
                n += 1;
                Ok(())
            })
            .unwrap();
        }
        n
    }

    #[test]
    fn update_lr_schedulers_steps_on_its_interval_and_frequency() {
        let mut o = optimization(SchedulerConfig::every_epoch().frequency(2), false, true);
        let calls = [(Interval::Step, 1, false), (Interval::Epoch, 1, false), (Interval::Epoch, 2, false)];
        assert_eq!(steps(&mut o, &calls), 1, "only the epoch interval, every second epoch");
        let mut o = optimization(SchedulerConfig::every_step(), false, true);
        assert_eq!(steps(&mut o, &[(Interval::Step, 1, false), (Interval::Step, 2, false)]), 2);
    }

    #[test]
    fn update_lr_schedulers_keeps_plateau_and_manual_apart() {
        // a plateau scheduler steps only in the plateau pass, the others never in it
        let mut o = optimization(SchedulerConfig::every_epoch(), true, true);
        assert_eq!(steps(&mut o, &[(Interval::Epoch, 1, false), (Interval::Epoch, 1, true)]), 1);
        let mut o = optimization(SchedulerConfig::every_epoch(), false, true);
        assert_eq!(steps(&mut o, &[(Interval::Epoch, 1, true)]), 0);
        // manual optimization: the module steps its own schedulers
        let mut o = optimization(SchedulerConfig::every_epoch(), false, false);
        assert_eq!(steps(&mut o, &[(Interval::Epoch, 1, false)]), 0);
    }

    #[test]
    fn update_lr_schedulers_sets_the_rates_after_a_step() {
        let mut o = optimization(SchedulerConfig::every_epoch(), false, true);
        let mut state = TrainerState::new(crate::Stage::Fit, Device::Cpu, std::env::temp_dir());
        o.update_lr_schedulers_with(&mut state, Interval::Epoch, 1, false, |_, s, m| {
            s.step(m);
            Ok(())
        })
        .unwrap();
        let (sgd, _) = o.optim.parts();
        assert!((crate::Optimizer::learning_rate(sgd, 0) - 0.05).abs() < 1e-12);
        assert_eq!(state.learning_rates.len(), 1);
    }
}
