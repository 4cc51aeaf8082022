//! `Timer`: stops training when a time budget is spent, and records each stage's wall time.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{Error, Interval, Result, TrainerState};

/// The stages a [`Timer`] times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimedStage {
    /// Training: `on_train_start` to `on_train_end` (Lightning's `"train"`).
    Train,
    /// Validation runs, in `fit` or `validate`, their times added up (`"validate"`).
    Validate,
    /// Testing: `on_test_start` to `on_test_end` (`"test"`).
    Test,
}

const STAGES: [(TimedStage, &str); 3] =
    [(TimedStage::Train, "train"), (TimedStage::Validate, "validate"), (TimedStage::Test, "test")];

/// Lightning's `Timer`: with a duration, it sets `should_stop` once training has run that
/// long, checked after every batch (`Interval::Step`, the default) or every epoch
/// (`Interval::Epoch`); the stop is a normal end of `fit`. It records when each stage
/// started and ended. Checkpoints keep the elapsed times, so a resumed run counts the time
/// already spent against the budget.
///
/// ```
/// use std::time::Duration;
/// use lightning::callbacks::Timer;
/// let timer = Timer::parse("00:12:00:00")?; // DD:HH:MM:SS, 12 hours
/// assert_eq!(timer.duration(), Some(Duration::from_secs(12 * 3600)));
/// let per_epoch = Timer::new(Duration::from_secs(600)).interval(lightning::Interval::Epoch);
/// # Ok::<(), lightning::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Timer {
    duration: Option<Duration>,
    interval: Interval,
    verbose: bool,
    start: [Option<Instant>; 3],
    end: [Option<Instant>; 3],
    /// Time spent before a resume, per stage.
    offset: [Duration; 3],
}

impl Default for Timer {
    /// A timer without a budget: it only records the stages' times.
    fn default() -> Self {
        Timer {
            duration: None,
            interval: Interval::Step,
            verbose: true,
            start: [None; 3],
            end: [None; 3],
            offset: [Duration::ZERO; 3],
        }
    }
}

impl Timer {
    /// Stops training after `duration`.
    pub fn new(duration: Duration) -> Self {
        Timer { duration: Some(duration), ..Timer::default() }
    }

    /// A duration as Lightning writes it: `"DD:HH:MM:SS"`.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || Error::Config { flag: "Timer", reason: format!("`{text}` is not a duration in DD:HH:MM:SS form") };
        let parts: Vec<u64> = text.split(':').map(|p| p.trim().parse().map_err(|_| bad())).collect::<Result<_>>()?;
        let [d, h, m, s] = parts[..] else { return Err(bad()) };
        Ok(Timer::new(Duration::from_secs(((d * 24 + h) * 60 + m) * 60 + s)))
    }

    /// When to check the budget: after every batch (default) or every epoch.
    pub fn interval(mut self, interval: Interval) -> Self {
        self.interval = interval;
        self
    }

    /// Print a line when the time is up (default on).
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    /// The time budget, if any.
    pub fn duration(&self) -> Option<Duration> {
        self.duration
    }

    fn index(stage: TimedStage) -> usize {
        STAGES.iter().position(|(s, _)| *s == stage).unwrap_or(0)
    }

    /// When the stage last started, if it did.
    pub fn start_time(&self, stage: TimedStage) -> Option<Instant> {
        self.start[Self::index(stage)]
    }

    /// When the stage last ended, if it did.
    pub fn end_time(&self, stage: TimedStage) -> Option<Instant> {
        self.end[Self::index(stage)]
    }

    /// Time spent in the stage, including before a resume; up to now while it runs.
    pub fn time_elapsed(&self, stage: TimedStage) -> Duration {
        let i = Self::index(stage);
        let run = match (self.start[i], self.end[i]) {
            (Some(s), Some(e)) if e >= s => e - s,
            (Some(s), _) => s.elapsed(),
            (None, _) => Duration::ZERO,
        };
        self.offset[i] + run
    }

    /// Training time left of the budget.
    pub fn time_remaining(&self, stage: TimedStage) -> Option<Duration> {
        self.duration.map(|d| d.saturating_sub(self.time_elapsed(stage)))
    }

    fn begin(&mut self, stage: TimedStage) {
        let i = Self::index(stage);
        // a stage run again (validation every epoch) keeps adding to its total
        self.offset[i] = self.time_elapsed(stage);
        self.start[i] = Some(Instant::now());
        self.end[i] = None;
    }

    fn finish(&mut self, stage: TimedStage) {
        self.end[Self::index(stage)] = Some(Instant::now());
    }

    fn check(&mut self, trainer: &mut TrainerState) {
        let Some(budget) = self.duration else { return };
        let elapsed = self.time_elapsed(TimedStage::Train);
        if elapsed >= budget && !trainer.should_stop {
            trainer.stop(format!("the Timer's budget of {budget:?} ran out (elapsed {elapsed:.1?})."));
            if self.verbose {
                println!("Time limit reached. Elapsed time is {elapsed:.1?}. Signaling Trainer to stop.");
            }
        }
    }
}

#[lightning_macros::callback]
impl Timer {
    fn on_train_start(&mut self) {
        self.begin(TimedStage::Train);
    }
    fn on_train_end(&mut self) {
        self.finish(TimedStage::Train);
    }
    fn on_validation_start(&mut self) {
        self.begin(TimedStage::Validate);
    }
    fn on_validation_end(&mut self) {
        self.finish(TimedStage::Validate);
    }
    fn on_test_start(&mut self) {
        self.begin(TimedStage::Test);
    }
    fn on_test_end(&mut self) {
        self.finish(TimedStage::Test);
    }
    fn on_train_batch_end(&mut self, trainer: &mut TrainerState) {
        if self.interval == Interval::Step {
            self.check(trainer);
        }
    }
    fn on_train_epoch_end(&mut self, trainer: &mut TrainerState) {
        if self.interval == Interval::Epoch {
            self.check(trainer);
        }
    }
    fn state_dict(&mut self) -> Value {
        let elapsed: serde_json::Map<String, Value> =
            STAGES.iter().map(|(s, name)| (name.to_string(), json!(self.time_elapsed(*s).as_secs_f64()))).collect();
        json!({ "time_elapsed": elapsed })
    }
    fn load_state_dict(&mut self, state_dict: &Value) -> crate::Result<()> {
        let elapsed = &state_dict["time_elapsed"];
        let mut offsets = [Duration::ZERO; STAGES.len()];
        for (offset, (_, name)) in offsets.iter_mut().zip(STAGES) {
            let field = format!("time_elapsed.{name}");
            *offset = super::restored::seconds(elapsed.get(name), "Timer", &field)?.unwrap_or_default();
        }
        for (i, offset) in offsets.into_iter().enumerate() {
            self.offset[i] = offset;
            (self.start[i], self.end[i]) = (None, None);
        }
        Ok(())
    }
}
