//! Learning-rate schedulers, as `torch.optim.lr_scheduler`, and Lightning's scheduler config.
//!
//! Each scheduler gives the learning rate as a function of its step count and the
//! group's initial rate (torch's closed forms), so parameter groups keep their ratios.
//! Their state (the counters) is saved in checkpoints.

use std::f64::consts::PI;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{Error, Result};

/// Builder methods for torch's optional arguments, named as torch names them.
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty => $field:ident;)*) => {$(
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, v: $ty) -> Self {
            self.$field = v;
            self
        }
    )*};
}

/// When a scheduler is stepped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interval {
    /// After the last batch of an epoch (Lightning's default).
    Epoch,
    /// After every optimizer step.
    Step,
}

/// Lightning's `lr_scheduler_config`: when and how often to step, and what to monitor.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    /// Step per epoch (Lightning's default) or per optimizer step (Lightning's `interval`).
    pub interval: Interval,
    /// Step every `frequency` intervals.
    pub frequency: usize,
    /// The logged metric passed to the scheduler (required by `ReduceLrOnPlateau`).
    pub monitor: Option<String>,
}

impl SchedulerConfig {
    /// Every epoch, no monitor: Lightning's defaults.
    pub const fn every_epoch() -> Self {
        SchedulerConfig { interval: Interval::Epoch, frequency: 1, monitor: None }
    }

    /// Every optimizer step.
    pub const fn every_step() -> Self {
        SchedulerConfig { interval: Interval::Step, frequency: 1, monitor: None }
    }

    /// Monitors a logged metric.
    pub fn monitor(mut self, key: impl Into<String>) -> Self {
        self.monitor = Some(key.into());
        self
    }

    /// Steps every `n` intervals.
    pub fn frequency(mut self, n: usize) -> Self {
        self.frequency = n;
        self
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self::every_epoch()
    }
}

/// A learning-rate schedule. After each `step` the trainer sets every parameter group's
/// rate to `learning_rate(initial rate of the group)`.
pub trait LrScheduler: Serialize + DeserializeOwned {
    /// Whether `step` needs the monitored metric (plateau schedulers). Lightning steps such
    /// schedulers after the epoch's validation and `on_train_epoch_end`.
    const NEEDS_METRIC: bool = false;
    /// Advances the schedule; `metric` is the monitored value, if configured.
    fn step(&mut self, metric: Option<f64>);
    /// The learning rate now, given the initial one.
    fn learning_rate(&self, base_lr: f64) -> f64;
    /// The momentum (SGD, RMSprop) or β1 (Adam) now, for schedulers that cycle it
    /// (`OneCycleLr`); `None` leaves the optimizer's own.
    fn momentum(&self) -> Option<f64> {
        None
    }
    /// Why the schedule cannot go on (torch raises): it went past its end, or cannot start
    /// at all. The trainer checks it when the scheduler is attached (before the first step)
    /// and after every `step`, and stops with this as its error. `None` for schedules
    /// without an end.
    fn past_end(&self) -> Option<String> {
        None
    }
    /// The state saved in checkpoints.
    fn state(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
    /// Restores a state saved by `state`.
    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        *self = serde_json::from_value(state.clone()).map_err(|e| Error::config("scheduler state", e.to_string()))?;
        Ok(())
    }
}

/// No scheduler.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct NoScheduler;

impl LrScheduler for NoScheduler {
    fn step(&mut self, _: Option<f64>) {}
    fn learning_rate(&self, base_lr: f64) -> f64 {
        base_lr
    }
}

/// `StepLR`: × `gamma` every `step_size` steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepLr {
    /// Scheduler steps between two decays (torch's `step_size`); at least 1.
    pub step_size: usize,
    /// The factor at each decay (torch: 0.1).
    pub gamma: f64,
    last_epoch: usize,
}

impl StepLr {
    /// torch: `StepLR(opt, step_size, gamma)`.
    pub fn new(step_size: usize, gamma: f64) -> Self {
        StepLr { step_size: step_size.max(1), gamma, last_epoch: 0 }
    }

    /// torch's `StepLR(opt, step_size)`: `gamma` 0.1.
    pub fn every(step_size: usize) -> Self {
        Self::new(step_size, 0.1)
    }

    setters! {
        /// The factor at each step of the staircase (torch: 0.1).
        gamma: f64 => gamma;
    }
}

impl LrScheduler for StepLr {
    fn step(&mut self, _: Option<f64>) {
        self.last_epoch += 1;
    }
    fn learning_rate(&self, base: f64) -> f64 {
        base * self.gamma.powi((self.last_epoch / self.step_size) as i32)
    }
}

/// `MultiStepLR`: × `gamma` at each milestone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MultiStepLr {
    /// The scheduler steps at which the rate decays (torch's `milestones`).
    pub milestones: Vec<usize>,
    /// The factor at each milestone (torch: 0.1).
    pub gamma: f64,
    last_epoch: usize,
}

impl MultiStepLr {
    /// torch: `MultiStepLR(opt, milestones, gamma)`.
    pub fn new(milestones: impl Into<Vec<usize>>, gamma: f64) -> Self {
        MultiStepLr { milestones: milestones.into(), gamma, last_epoch: 0 }
    }

    /// torch's `MultiStepLR(opt, milestones)`: `gamma` 0.1.
    pub fn at(milestones: impl Into<Vec<usize>>) -> Self {
        Self::new(milestones, 0.1)
    }

    setters! {
        /// The factor at each milestone (torch: 0.1).
        gamma: f64 => gamma;
    }
}

impl LrScheduler for MultiStepLr {
    fn step(&mut self, _: Option<f64>) {
        self.last_epoch += 1;
    }
    fn learning_rate(&self, base: f64) -> f64 {
        let passed = self.milestones.iter().filter(|&&m| m <= self.last_epoch).count();
        base * self.gamma.powi(passed as i32)
    }
}

/// `ExponentialLR`: × `gamma` every step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExponentialLr {
    /// The factor at every scheduler step.
    pub gamma: f64,
    last_epoch: usize,
}

impl ExponentialLr {
    /// torch: `ExponentialLR(opt, gamma)`.
    pub fn new(gamma: f64) -> Self {
        ExponentialLr { gamma, last_epoch: 0 }
    }
}

impl LrScheduler for ExponentialLr {
    fn step(&mut self, _: Option<f64>) {
        self.last_epoch += 1;
    }
    fn learning_rate(&self, base: f64) -> f64 {
        base * self.gamma.powi(self.last_epoch as i32)
    }
}

fn cosine(eta_min: f64, base: f64, t: f64, period: f64) -> f64 {
    eta_min + (base - eta_min) * (1.0 + (PI * t / period).cos()) / 2.0
}

/// `CosineAnnealingLR`: half a cosine from the initial rate to `eta_min` over `t_max` steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CosineAnnealingLr {
    /// Scheduler steps from the initial rate to `eta_min` (torch's `T_max`); at least 1.
    pub t_max: usize,
    /// The lowest rate (torch: 0).
    pub eta_min: f64,
    last_epoch: usize,
}

impl CosineAnnealingLr {
    /// torch: `CosineAnnealingLR(opt, T_max, eta_min)`.
    pub fn new(t_max: usize, eta_min: f64) -> Self {
        CosineAnnealingLr { t_max: t_max.max(1), eta_min, last_epoch: 0 }
    }

    /// torch's `CosineAnnealingLR(opt, T_max)`: `eta_min` 0.
    pub fn over(t_max: usize) -> Self {
        Self::new(t_max, 0.0)
    }

    setters! {
        /// The lowest rate, reached after `t_max` steps (torch: 0).
        eta_min: f64 => eta_min;
    }
}

impl LrScheduler for CosineAnnealingLr {
    fn step(&mut self, _: Option<f64>) {
        self.last_epoch += 1;
    }
    fn learning_rate(&self, base: f64) -> f64 {
        cosine(self.eta_min, base, self.last_epoch as f64, self.t_max as f64)
    }
}

/// `CosineAnnealingWarmRestarts` (SGDR): cosine cycles of `t_0`, `t_0·t_mult`, … steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CosineAnnealingWarmRestarts {
    /// Scheduler steps of the first cycle (torch's `T_0`); at least 1.
    pub t_0: usize,
    /// Each cycle is this many times the last (torch's `T_mult`: 1); at least 1.
    pub t_mult: usize,
    /// The lowest rate of each cycle (torch: 0).
    pub eta_min: f64,
    t_i: usize,
    t_cur: usize,
}

impl CosineAnnealingWarmRestarts {
    /// torch: `CosineAnnealingWarmRestarts(opt, T_0, T_mult, eta_min)`.
    pub fn new(t_0: usize, t_mult: usize, eta_min: f64) -> Self {
        let t_0 = t_0.max(1);
        CosineAnnealingWarmRestarts { t_0, t_mult: t_mult.max(1), eta_min, t_i: t_0, t_cur: 0 }
    }

    /// torch's `CosineAnnealingWarmRestarts(opt, T_0)`: `T_mult` 1, `eta_min` 0.
    pub fn every(t_0: usize) -> Self {
        Self::new(t_0, 1, 0.0)
    }

    /// Each cycle is `t_mult` times the last (torch's `T_mult`: 1); at least 1.
    #[must_use]
    pub fn t_mult(mut self, t_mult: usize) -> Self {
        self.t_mult = t_mult.max(1);
        self
    }

    setters! {
        /// The lowest rate of each cycle (torch: 0).
        eta_min: f64 => eta_min;
    }
}

impl LrScheduler for CosineAnnealingWarmRestarts {
    fn step(&mut self, _: Option<f64>) {
        self.t_cur += 1;
        if self.t_cur >= self.t_i {
            self.t_cur -= self.t_i;
            self.t_i *= self.t_mult;
        }
    }
    fn learning_rate(&self, base: f64) -> f64 {
        cosine(self.eta_min, base, self.t_cur as f64, self.t_i as f64)
    }
}

/// How `OneCycleLr` moves between rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Anneal {
    /// Along half a cosine (torch's `"cos"`, the default).
    Cos,
    /// Along a straight line (torch's `"linear"`).
    Linear,
}

/// `OneCycleLR`: up from `max_lr / div_factor` to `max_lr`, then down to
/// `max_lr / div_factor / final_div_factor`, over `total_steps`. It ignores the optimizer's
/// own rate, as torch does. With `cycle_momentum` (on, as in torch) the optimizer's momentum
/// (SGD, RMSprop) or β1 (Adam, AdamW) moves the other way, between `max_momentum` and
/// `base_momentum`. Stepping past `total_steps` is an error, as in torch; so is a warm-up of
/// no length (`pct_start × total_steps = 1`, where torch raises `ZeroDivisionError`).
///
/// ```
/// use lightning::optim::{Anneal, OneCycleLr};
/// // torch: OneCycleLR(opt, max_lr=0.1, epochs=10, steps_per_epoch=50, pct_start=0.25, anneal_strategy="linear")
/// let s = OneCycleLr::with_epochs(0.1, 10, 50).pct_start(0.25).anneal_strategy(Anneal::Linear);
/// assert_eq!(s.total_steps, 500);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OneCycleLr {
    /// The peak rate.
    pub max_lr: f64,
    /// Scheduler steps in the cycle; at least 2.
    pub total_steps: usize,
    /// The fraction of the cycle spent raising the rate (torch: 0.3).
    pub pct_start: f64,
    /// The first rate is `max_lr / div_factor` (torch: 25).
    pub div_factor: f64,
    /// The last rate is the first `/ final_div_factor` (torch: 1e4).
    pub final_div_factor: f64,
    /// Down to the first rate before annealing to the last (torch: off).
    pub three_phase: bool,
    /// How the rate moves between its values (torch's `anneal_strategy`: cosine).
    pub anneal: Anneal,
    /// Cycle the momentum inversely to the rate (torch's default: on).
    #[serde(default = "yes")]
    pub cycle_momentum: bool,
    /// The momentum at the peak rate (torch: 0.85).
    #[serde(default = "base_momentum")]
    pub base_momentum: f64,
    /// The momentum at the lowest rates (torch: 0.95).
    #[serde(default = "max_momentum")]
    pub max_momentum: f64,
    step_num: usize,
    /// `step` calls, not capped at the end of the cycle: stepping past `total_steps` is an
    /// error, as in torch (the rate would sit at its final value and train nothing more).
    #[serde(default)]
    steps: usize,
}

/// A phase's (start, end) value.
type Span = (f64, f64);

fn yes() -> bool {
    true
}
fn base_momentum() -> f64 {
    0.85
}
fn max_momentum() -> f64 {
    0.95
}

impl OneCycleLr {
    /// torch's defaults: `pct_start` 0.3, cosine, `div_factor` 25, `final_div_factor` 1e4,
    /// momentum cycled between 0.85 and 0.95.
    pub fn new(max_lr: f64, total_steps: usize) -> Self {
        OneCycleLr {
            max_lr,
            total_steps: total_steps.max(2),
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
            three_phase: false,
            anneal: Anneal::Cos,
            cycle_momentum: true,
            base_momentum: 0.85,
            max_momentum: 0.95,
            step_num: 0,
            steps: 0,
        }
    }

    /// torch's `epochs` + `steps_per_epoch` form: `total_steps = epochs × steps_per_epoch`
    /// (`trainer.estimated_stepping_batches()` gives the total directly).
    pub fn with_epochs(max_lr: f64, epochs: usize, steps_per_epoch: usize) -> Self {
        Self::new(max_lr, epochs.saturating_mul(steps_per_epoch))
    }

    setters! {
        /// The fraction of the cycle spent raising the rate (0.3).
        pct_start: f64 => pct_start;
        /// `Anneal::Cos` (default) or `Anneal::Linear`.
        anneal_strategy: Anneal => anneal;
        /// The first rate is `max_lr / div_factor` (25).
        div_factor: f64 => div_factor;
        /// The last rate is the first `/ final_div_factor` (1e4).
        final_div_factor: f64 => final_div_factor;
        /// Down to the first rate before annealing to the last (torch's `three_phase`; off).
        three_phase: bool => three_phase;
        /// Cycle the optimizer's momentum or β1 (on).
        cycle_momentum: bool => cycle_momentum;
        /// Momentum at the peak rate (0.85).
        base_momentum: f64 => base_momentum;
        /// Momentum at the lowest rates (0.95).
        max_momentum: f64 => max_momentum;
    }

    /// The phase step `step_num` is in: its (start rate, end rate), (start momentum, end
    /// momentum) and how far through it the step is (torch's `_schedule_phases`).
    fn phase(&self) -> (Span, Span, f64) {
        let initial = self.max_lr / self.div_factor;
        let min = initial / self.final_div_factor;
        let (lo, hi) = (self.base_momentum, self.max_momentum);
        let total = self.total_steps as f64;
        let up_end = self.pct_start * total - 1.0;
        let phases: &[(f64, Span, Span)] = if self.three_phase {
            &[
                (up_end, (initial, self.max_lr), (hi, lo)),
                (2.0 * self.pct_start * total - 2.0, (self.max_lr, initial), (lo, hi)),
                (total - 1.0, (initial, min), (hi, hi)),
            ]
        } else {
            &[(up_end, (initial, self.max_lr), (hi, lo)), (total - 1.0, (self.max_lr, min), (lo, hi))]
        };
        let t = self.step_num as f64;
        let mut start_step = 0.0;
        for (i, &(end_step, lr, momentum)) in phases.iter().enumerate() {
            if t <= end_step || i == phases.len() - 1 {
                return (lr, momentum, (t - start_step) / (end_step - start_step));
            }
            start_step = end_step;
        }
        ((min, min), (hi, hi), 1.0)
    }

    fn anneal(&self, (from, to): Span, pct: f64) -> f64 {
        match self.anneal {
            Anneal::Cos => to + (from - to) / 2.0 * ((PI * pct).cos() + 1.0),
            Anneal::Linear => (to - from) * pct + from,
        }
    }
}

impl LrScheduler for OneCycleLr {
    fn step(&mut self, _: Option<f64>) {
        self.step_num = (self.step_num + 1).min(self.total_steps - 1);
        self.steps = self.steps.saturating_add(1);
    }
    fn past_end(&self) -> Option<String> {
        // the warm-up phase runs from step 0 to `pct_start × total_steps − 1`: at 0 the rate
        // is 0/0 (NaN; torch raises ZeroDivisionError). The three-phase cycle's second phase
        // is then empty too; no other empty phase is ever reached.
        if self.pct_start * self.total_steps as f64 - 1.0 == 0.0 {
            return Some(format!(
                "OneCycleLR's warm-up has no length: pct_start={} × total_steps={} = 1, so its \
                 rate is 0/0 (NaN; torch raises ZeroDivisionError). Give the cycle more steps or \
                 a larger pct_start, so that pct_start × total_steps > 1",
                self.pct_start, self.total_steps
            ));
        }
        (self.steps > self.total_steps).then(|| {
            format!(
                "OneCycleLR stepped {} times, past its total_steps={} (torch raises here): its rate \
                 would stay at the cycle's final {:.3e} and train nothing more. A resumed run keeps \
                 the checkpoint's schedule: size the cycle for the whole run (e.g. \
                 `trainer.estimated_stepping_batches()` with the final `max_epochs`), or start a \
                 new schedule from the weights alone (`load_from_checkpoint`)",
                self.steps,
                self.total_steps,
                self.max_lr / self.div_factor / self.final_div_factor
            )
        })
    }
    fn learning_rate(&self, _: f64) -> f64 {
        let (lr, _, pct) = self.phase();
        self.anneal(lr, pct)
    }
    fn momentum(&self) -> Option<f64> {
        let (_, momentum, pct) = self.phase();
        self.cycle_momentum.then(|| self.anneal(momentum, pct))
    }
}

/// `LinearLR`: the factor goes linearly from `start_factor` to `end_factor` over
/// `total_iters` steps (a warm-up).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinearLr {
    /// The factor of the first step (torch: 1/3).
    pub start_factor: f64,
    /// The factor from `total_iters` on (torch: 1).
    pub end_factor: f64,
    /// Scheduler steps from `start_factor` to `end_factor` (torch: 5); at least 1.
    pub total_iters: usize,
    last_epoch: usize,
}

impl LinearLr {
    /// torch: `LinearLR(opt, start_factor, end_factor, total_iters)`.
    pub fn new(start_factor: f64, end_factor: f64, total_iters: usize) -> Self {
        LinearLr { start_factor, end_factor, total_iters: total_iters.max(1), last_epoch: 0 }
    }

    /// The steps from `start_factor` to `end_factor` (torch: 5); at least 1.
    #[must_use]
    pub fn total_iters(mut self, total_iters: usize) -> Self {
        self.total_iters = total_iters.max(1);
        self
    }

    setters! {
        /// The factor of the first step (torch: 1/3).
        start_factor: f64 => start_factor;
        /// The factor from `total_iters` on (torch: 1).
        end_factor: f64 => end_factor;
    }
}

/// torch's `LinearLR(opt)`: from 1/3 of the rate to all of it over 5 steps.
impl Default for LinearLr {
    fn default() -> Self {
        Self::new(1.0 / 3.0, 1.0, 5)
    }
}

impl LrScheduler for LinearLr {
    fn step(&mut self, _: Option<f64>) {
        self.last_epoch += 1;
    }
    fn learning_rate(&self, base: f64) -> f64 {
        let t = self.last_epoch.min(self.total_iters) as f64;
        base * (self.start_factor + (self.end_factor - self.start_factor) * t / self.total_iters as f64)
    }
}

/// `SequentialLR`: `first` until `milestone` steps, then `second` from its start. Nest it
/// for more than two.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SequentialLr<A, B> {
    /// The schedule before the milestone.
    pub first: A,
    /// The schedule from the milestone on.
    pub second: B,
    /// The scheduler step at which `second` takes over.
    pub milestone: usize,
    last_epoch: usize,
}

impl<A: LrScheduler, B: LrScheduler> SequentialLr<A, B> {
    /// torch: `SequentialLR(opt, [first, second], milestones=[milestone])`.
    pub fn new(first: A, second: B, milestone: usize) -> Self {
        SequentialLr { first, second, milestone, last_epoch: 0 }
    }
}

impl<A: LrScheduler, B: LrScheduler> LrScheduler for SequentialLr<A, B> {
    fn step(&mut self, metric: Option<f64>) {
        self.last_epoch += 1;
        // the second scheduler starts fresh at the milestone (torch calls its step(0))
        if self.last_epoch < self.milestone {
            self.first.step(metric);
        } else if self.last_epoch > self.milestone {
            self.second.step(metric);
        }
    }
    fn learning_rate(&self, base: f64) -> f64 {
        if self.last_epoch < self.milestone {
            self.first.learning_rate(base)
        } else {
            self.second.learning_rate(base)
        }
    }
    fn momentum(&self) -> Option<f64> {
        if self.last_epoch < self.milestone {
            self.first.momentum()
        } else {
            self.second.momentum()
        }
    }
    fn past_end(&self) -> Option<String> {
        if self.last_epoch < self.milestone {
            self.first.past_end()
        } else {
            self.second.past_end()
        }
    }
}

/// Whether a lower or a higher metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Lower is better (a loss; torch's and Lightning's `"min"`).
    Min,
    /// Higher is better (an accuracy; `"max"`).
    Max,
}

/// How `ReduceLrOnPlateau` measures an improvement (torch's `threshold_mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ThresholdMode {
    /// Better than the best by a fraction `threshold` of it (torch's `"rel"`, the default).
    #[default]
    Rel,
    /// Better than the best by `threshold` (torch's `"abs"`).
    Abs,
}

/// `ReduceLROnPlateau`: × `factor` when the monitored metric has not improved (by
/// `threshold`, relative or absolute) for more than `patience` steps; then waits `cooldown`
/// steps. The rate never goes below `min_lr`, and a reduction smaller than `eps` is skipped.
///
/// ```
/// use lightning::optim::{Mode, ReduceLrOnPlateau, ThresholdMode};
/// // torch: ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=3, threshold=0.01, threshold_mode="abs", cooldown=1, min_lr=1e-5)
/// let s = ReduceLrOnPlateau::new(0.5, 3)
///     .mode(Mode::Max)
///     .threshold(0.01)
///     .threshold_mode(ThresholdMode::Abs)
///     .cooldown(1)
///     .min_lr(1e-5);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReduceLrOnPlateau {
    /// Whether lower (`Min`, torch's default) or higher is better.
    pub mode: Mode,
    /// The rate is multiplied by this at each reduction (torch: 0.1).
    pub factor: f64,
    /// Steps without improvement tolerated before a reduction (torch: 10).
    pub patience: usize,
    /// The least change that counts as an improvement (torch: 1e-4).
    pub threshold: f64,
    /// Whether `threshold` is relative (torch's default) or absolute.
    #[serde(default)]
    pub threshold_mode: ThresholdMode,
    /// Steps to wait after a reduction before counting bad steps again (torch: 0).
    pub cooldown: usize,
    /// The rate never goes below this (torch: 0).
    pub min_lr: f64,
    /// Reductions smaller than this are skipped (torch: 1e-8).
    #[serde(default = "plateau_eps")]
    pub eps: f64,
    best: Option<f64>,
    num_bad: usize,
    cooldown_counter: usize,
    reductions: i32,
}

fn plateau_eps() -> f64 {
    1e-8
}

impl ReduceLrOnPlateau {
    /// torch's defaults: `Min`, `threshold` 1e-4 (relative), no cooldown, `min_lr` 0, `eps` 1e-8.
    pub fn new(factor: f64, patience: usize) -> Self {
        ReduceLrOnPlateau {
            mode: Mode::Min,
            factor,
            patience,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: 0.0,
            eps: 1e-8,
            best: None,
            num_bad: 0,
            cooldown_counter: 0,
            reductions: 0,
        }
    }

    setters! {
        /// The rate is multiplied by this at each reduction (torch: 0.1).
        factor: f64 => factor;
        /// Bad steps tolerated before a reduction (torch: 10).
        patience: usize => patience;
        /// `Mode::Min` (default): lower is better; `Mode::Max`: higher is better.
        mode: Mode => mode;
        /// The least change that counts as an improvement (1e-4).
        threshold: f64 => threshold;
        /// Whether `threshold` is relative (default) or absolute.
        threshold_mode: ThresholdMode => threshold_mode;
        /// Steps to wait after a reduction before counting bad steps again (0).
        cooldown: usize => cooldown;
        /// The rate never goes below this (0).
        min_lr: f64 => min_lr;
        /// Reductions smaller than this are skipped (1e-8).
        eps: f64 => eps;
    }

    fn better(&self, a: f64, best: f64) -> bool {
        match (self.mode, self.threshold_mode) {
            (Mode::Min, ThresholdMode::Rel) => a < best * (1.0 - self.threshold),
            (Mode::Min, ThresholdMode::Abs) => a < best - self.threshold,
            (Mode::Max, ThresholdMode::Rel) => a > best * (1.0 + self.threshold),
            (Mode::Max, ThresholdMode::Abs) => a > best + self.threshold,
        }
    }
}

/// torch's `ReduceLROnPlateau(opt)`: `factor` 0.1, `patience` 10.
impl Default for ReduceLrOnPlateau {
    fn default() -> Self {
        Self::new(0.1, 10)
    }
}

impl LrScheduler for ReduceLrOnPlateau {
    const NEEDS_METRIC: bool = true;

    fn step(&mut self, metric: Option<f64>) {
        let Some(current) = metric else { return };
        if self.best.is_none_or(|b| self.better(current, b)) {
            self.best = Some(current);
            self.num_bad = 0;
        } else {
            self.num_bad += 1;
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.num_bad = 0;
        }
        if self.num_bad > self.patience {
            self.reductions += 1;
            self.cooldown_counter = self.cooldown;
            self.num_bad = 0;
        }
    }

    fn learning_rate(&self, base: f64) -> f64 {
        // torch, at each reduction: new = max(old × factor, min_lr), kept only if old − new > eps.
        // Once a reduction is skipped every later one would be too (the gap only shrinks).
        let mut lr = base;
        for _ in 0..self.reductions {
            let new = (lr * self.factor).max(self.min_lr);
            if lr - new <= self.eps {
                break;
            }
            lr = new;
        }
        lr
    }
}
