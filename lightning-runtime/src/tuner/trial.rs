//! One trial of `scale_batch_size`: a few training steps at one batch size, judged by
//! out-of-memory errors and an optional per-step time budget.

use std::time::{Duration, Instant};

use crate::{Error, Result, TrainerState};

/// Times the trial's training batches (from `on_train_batch_start` to `on_train_batch_end`:
/// the step, backward and optimizer update) and notes the loader's length.
#[derive(Debug, Default)]
pub(crate) struct StepClock {
    started: Option<Instant>,
    pub steps: Vec<Duration>,
    pub num_batches: usize,
}

#[lightning_macros::callback]
impl StepClock {
    fn on_train_start(&mut self, trainer: &TrainerState) {
        self.num_batches = trainer.num_training_batches();
    }
    fn on_train_batch_start(&mut self) {
        self.started = Some(Instant::now());
    }
    fn on_train_batch_end(&mut self) {
        if let Some(t) = self.started.take() {
            self.steps.push(t.elapsed());
        }
    }
}

impl StepClock {
    /// The mean step time, when over `budget`: the trial counts as too large. A trial's
    /// first step also pays for warming up (the optimizer's state, the first buffers of a
    /// new size), so with more than one step it is left out.
    pub fn over_budget(&self, budget: Option<Duration>) -> Option<String> {
        let budget = budget?;
        let timed = if self.steps.len() > 1 { &self.steps[1..] } else { &self.steps[..] };
        let n = u32::try_from(timed.len()).ok().filter(|&n| n > 0)?;
        let mean = timed.iter().sum::<Duration>() / n;
        let which = if timed.len() < self.steps.len() { "after the first" } else { "on average" };
        (mean > budget).then(|| format!("a step took {mean:.2?} {which}, over the budget of {budget:.2?}"))
    }
}

/// Whether a run's error is an out-of-memory error, which makes the trial too large
/// (Lightning's `is_oom_error`, which reads torch's messages the same way): CUDA's and
/// cuBLAS's allocation failures as candle passes them on, or an allocator's refusal. Any
/// other error ends the search. candle's CPU backend aborts the process when an allocation
/// fails (Rust's default), so on the CPU only the time budget can stop the growth.
pub(crate) fn oom(e: &Error) -> Option<String> {
    let text = format!("{e:?}");
    let lower = text.to_lowercase();
    const MARKS: [&str; 5] = [
        "out of memory",
        "out_of_memory",
        "cublas_status_alloc_failed",
        "can't allocate memory",
        "memory allocation of",
    ];
    MARKS.iter().any(|m| lower.contains(m)).then(|| format!("out of memory ({text})"))
}

/// Turns a trial's result into the search's verdict: `Ok(Err(why))` when too large.
pub(crate) fn verdict(
    run: Result<crate::FitOutcome>,
    clock: &StepClock,
    budget: Option<Duration>,
) -> Result<std::result::Result<(), String>> {
    match run {
        Ok(_) => Ok(clock.over_budget(budget).map_or(Ok(()), Err)),
        Err(e) => match oom(&e) {
            Some(why) => Ok(Err(why)),
            None => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_is_told_from_other_errors() {
        let cuda =
            Error::in_hook("training_step", Error::msg("DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")"));
        assert!(oom(&cuda).is_some());
        assert!(oom(&Error::msg("shape mismatch in matmul")).is_none());
    }

    #[test]
    fn the_budget_is_on_the_mean_step_after_the_first() {
        let ms = Duration::from_millis;
        // the first step (warm-up) is left out: the mean of 10 and 30 is 20
        let clock = StepClock { steps: vec![ms(90), ms(10), ms(30)], ..Default::default() };
        assert!(clock.over_budget(Some(ms(25))).is_none());
        assert!(clock.over_budget(Some(ms(15))).unwrap().contains("after the first"));
        assert!(clock.over_budget(None).is_none());
        // a one-step trial is judged by its only step
        let one = StepClock { steps: vec![ms(30)], ..Default::default() };
        assert!(one.over_budget(Some(ms(25))).unwrap().contains("on average"));
    }
}
