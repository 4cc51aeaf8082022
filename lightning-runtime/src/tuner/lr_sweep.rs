//! The learning-rate sweep's callback (Lightning's `_LRCallback` with its `_ExponentialLR` or
//! `_LinearLR` scheduler): before each optimizer step it sets the sweep's rate on every
//! parameter group, after the step it records the smoothed loss and stops on divergence.

use candle_core::DType;

use crate::{Optimizer, Reduce, Result, StepOutput, TrainerState};

/// How the rate grows from `min_lr` to `max_lr` over the sweep (Lightning's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LrFindMode {
    /// Geometrically: the same factor at every step (Lightning's `"exponential"`, its default).
    #[default]
    Exponential,
    /// Arithmetically: the same increment at every step (`"linear"`).
    Linear,
}

/// The rates of the sweep, as Lightning's schedulers compute them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    pub min_lr: f64,
    pub max_lr: f64,
    pub num_training: usize,
    pub mode: LrFindMode,
}

impl Schedule {
    /// The rate of optimizer step `k` (0-based). As Lightning's `_ExponentialLR` and
    /// `_LinearLR` (torch schedulers whose constructor takes a step): step 0 runs at
    /// `min_lr`, step `k ≥ 1` at the fraction `(k + 1) / num_training` of the way, so the
    /// last step reaches `max_lr`.
    pub fn lr(&self, k: usize) -> f64 {
        if k == 0 {
            return self.min_lr;
        }
        let r = (k + 1) as f64 / self.num_training as f64;
        match self.mode {
            LrFindMode::Exponential => self.min_lr * (self.max_lr / self.min_lr).powf(r),
            LrFindMode::Linear => self.min_lr + r * (self.max_lr - self.min_lr),
        }
    }
}

/// The loss smoothing and divergence test of Lightning's `_LRCallback`.
#[derive(Debug, Clone)]
pub(crate) struct Smoother {
    beta: f64,
    threshold: Option<f64>,
    avg: f64,
    best: f64,
}

impl Smoother {
    pub fn new(beta: f64, threshold: Option<f64>) -> Self {
        Smoother { beta, threshold, avg: 0.0, best: 0.0 }
    }

    /// Takes the loss of optimizer step `step` (1-based, Lightning's `global_step` after the
    /// step) and returns the smoothed loss and whether the sweep diverged. The bias
    /// correction divides by `1 - beta^(step + 1)`, as Lightning's does. A loss that is not
    /// finite diverges at once (Lightning's comparisons are false for NaN, so it would go on).
    pub fn push(&mut self, loss: f64, step: usize) -> (f64, bool) {
        self.avg = self.beta * self.avg + (1.0 - self.beta) * loss;
        let smoothed = self.avg / (1.0 - self.beta.powi(step as i32 + 1));
        let diverged = !smoothed.is_finite() || self.threshold.is_some_and(|t| step > 1 && smoothed > t * self.best);
        if smoothed < self.best || step == 1 {
            self.best = smoothed;
        }
        (smoothed, diverged)
    }
}

/// The callback of an `lr_find` run.
#[derive(Debug, Clone)]
pub(crate) struct LrSweep {
    schedule: Schedule,
    smoother: Smoother,
    /// The rate set for the step under way, until its loss is recorded.
    pending: Option<f64>,
    pub lrs: Vec<f64>,
    pub losses: Vec<f64>,
    /// Each step's own loss, before smoothing.
    pub raw: Vec<f64>,
    pub diverged: bool,
}

impl LrSweep {
    pub fn new(schedule: Schedule, smoother: Smoother) -> Self {
        LrSweep {
            schedule,
            smoother,
            pending: None,
            lrs: Vec::new(),
            losses: Vec::new(),
            raw: Vec::new(),
            diverged: false,
        }
    }
}

#[lightning_macros::callback]
impl LrSweep {
    fn on_before_optimizer_step(&mut self, optimizer: &mut impl Optimizer) {
        let lr = self.schedule.lr(self.lrs.len());
        for g in 0..optimizer.num_groups() {
            optimizer.set_learning_rate(g, lr);
        }
        self.pending = Some(lr);
    }

    fn on_train_batch_end(&mut self, outputs: &StepOutput, trainer: &mut TrainerState) -> Result<()> {
        // only the batch that stepped the optimizer (the last of an accumulation window)
        let (Some(lr), Some(loss)) = (self.pending.take(), outputs.loss.as_ref()) else { return Ok(()) };
        // the step's own loss (the hook sees it divided by the accumulation), the ranks' mean
        // so that every rank records the same curve and stops at the same step
        let loss = (loss.to_dtype(DType::F64)?.sum_all()? * trainer.accumulate_grad_batches() as f64)?;
        let loss = trainer.all_reduce(&loss, Reduce::Mean)?.to_scalar::<f64>()?;
        self.lrs.push(lr);
        let (smoothed, diverged) = self.smoother.push(loss, self.lrs.len());
        self.losses.push(smoothed);
        self.raw.push(loss);
        if diverged {
            self.diverged = true;
            trainer.stop("the learning-rate finder's loss diverged");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_schedule_matches_lightning() {
        let s = Schedule { min_lr: 1e-8, max_lr: 1.0, num_training: 100, mode: LrFindMode::Exponential };
        assert_eq!(s.lr(0), 1e-8);
        // torch's scheduler: last_epoch 1 gives r = 2/100
        assert!((s.lr(1) / (1e-8 * 1e8f64.powf(0.02)) - 1.0).abs() < 1e-12);
        assert!((s.lr(99) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn linear_schedule_matches_lightning() {
        let s = Schedule { min_lr: 0.0, max_lr: 1.0, num_training: 10, mode: LrFindMode::Linear };
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(1) - 0.2).abs() < 1e-12);
        assert!((s.lr(9) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn smoothing_has_lightnings_bias_correction_and_stops_on_divergence() {
        let mut s = Smoother::new(0.98, Some(4.0));
        let (first, stop) = s.push(2.0, 1);
        // avg = 0.02 * 2, divided by 1 - 0.98^2
        assert!((first - 0.04 / (1.0 - 0.98f64.powi(2))).abs() < 1e-12);
        assert!(!stop);
        assert!(!s.push(1.0, 2).1);
        // a loss far above the best drives the smoothed loss past 4 × best
        let mut stopped = false;
        for step in 3..50 {
            stopped |= s.push(1e3, step).1;
        }
        assert!(stopped);
        let mut none = Smoother::new(0.98, None);
        assert!((2..50).all(|step| !none.push(1e3 * step as f64, step).1));
        assert!(Smoother::new(0.98, None).push(f64::NAN, 1).1, "a NaN loss ends the sweep");
    }
}
