//! Learning-rate schedulers and Lightning's scheduler configuration.

/// When a scheduler is stepped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interval {
    /// After the last batch of an epoch (Lightning's default).
    Epoch,
    /// After every optimizer step.
    Step,
}

/// Lightning's `lr_scheduler_config`: when and how often to step.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    pub interval: Interval,
    /// Step every `frequency` intervals.
    pub frequency: usize,
    /// The logged metric passed to the scheduler (for plateau schedulers).
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
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self::every_epoch()
    }
}

/// A learning-rate schedule. After each `step` the trainer sets the optimizer's learning
/// rate to `learning_rate(base_lr)`, where `base_lr` is the optimizer's initial rate.
pub trait LrScheduler {
    /// Advances the schedule; `metric` is the monitored value, if configured.
    fn step(&mut self, metric: Option<f64>);
    /// The learning rate now, given the initial one.
    fn learning_rate(&self, base_lr: f64) -> f64;
}

/// No scheduler.
#[derive(Debug, Default)]
pub struct NoScheduler;

impl LrScheduler for NoScheduler {
    fn step(&mut self, _: Option<f64>) {}
    fn learning_rate(&self, base_lr: f64) -> f64 {
        base_lr
    }
}

/// `torch.optim.lr_scheduler.StepLR`: multiplies the rate by `gamma` every `step_size` steps.
#[derive(Debug, Clone)]
pub struct StepLr {
    pub step_size: usize,
    pub gamma: f64,
    steps: usize,
}

impl StepLr {
    pub fn new(step_size: usize, gamma: f64) -> Self {
        StepLr { step_size: step_size.max(1), gamma, steps: 0 }
    }
}

impl LrScheduler for StepLr {
    fn step(&mut self, _: Option<f64>) {
        self.steps += 1;
    }
    fn learning_rate(&self, base_lr: f64) -> f64 {
        base_lr * self.gamma.powi((self.steps / self.step_size) as i32)
    }
}
