//! Why `fit` ended, said as Lightning says it.

use std::time::Duration;

use crate::TrainerState;

/// Why `fit` stopped ([`crate::FitOutcome::stopped`]). `fit` prints it on rank 0 as
/// Lightning does: "`Trainer.fit` stopped: `max_epochs=1` reached."
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum StopReason {
    /// `max_epochs` epochs are done (also when a resumed run was already past them).
    MaxEpochs(usize),
    /// `max_steps` optimizer steps are done.
    MaxSteps(usize),
    /// The `max_time` flag's budget ran out.
    MaxTime(Duration),
    /// A hook or callback set `trainer.should_stop`; with the reason it gave, if any
    /// ([`TrainerState::stop`], used by `EarlyStopping` and `Timer`).
    ShouldStop(Option<String>),
    /// The training loader had no batches (or `limit_train_batches` left none): nothing trained.
    NoTrainingBatches,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("`Trainer.fit` stopped: ")?;
        match self {
            StopReason::MaxEpochs(n) => write!(f, "`max_epochs={n}` reached."),
            StopReason::MaxSteps(n) => write!(f, "`max_steps={n}` reached."),
            StopReason::MaxTime(d) => write!(f, "`max_time={d:?}` reached."),
            StopReason::ShouldStop(None) => f.write_str("`trainer.should_stop` was set."),
            StopReason::ShouldStop(Some(why)) => write!(f, "`trainer.should_stop` was set: {why}"),
            StopReason::NoTrainingBatches => f.write_str("No training batches."),
        }
    }
}

/// Says on rank 0 why fit stopped (Lightning's `rank_zero_info`).
pub(crate) fn report(state: &TrainerState, reason: &StopReason) {
    if state.is_global_zero() && !state.tuning {
        println!("{reason}");
    }
}
