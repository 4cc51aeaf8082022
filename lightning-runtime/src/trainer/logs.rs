//! When logged values reach the loggers: every `log_every_n_steps` steps, at epoch ends, and
//! the hyperparameters at the start of a run (Lightning's `_LoggerConnector`).

use crate::logging::store::LoopKind;
use crate::{HasParameters, Result, TrainerState};

/// Lightning logs with the step of the last optimizer step (`_batches_that_stepped` before
/// its increment), so the 50th step's row says `step=49`.
fn log_step(state: &TrainerState) -> usize {
    state.global_step.saturating_sub(1)
}

fn write(state: &mut TrainerState, mut metrics: Vec<(String, f64)>) -> Result<()> {
    if metrics.is_empty() {
        return Ok(());
    }
    metrics.push(("epoch".into(), state.current_epoch as f64));
    let step = log_step(state);
    for l in &mut state.loggers {
        l.log_metrics(&metrics, step)?;
    }
    Ok(())
}

/// After a training batch: sends its step values when a log step is due (or training stops).
/// Nothing is read back from the device unless a logger is going to write.
pub(crate) fn after_train_batch(state: &mut TrainerState, stepped: bool) -> Result<()> {
    let due = stepped && state.global_step.is_multiple_of(state.log_every_n_steps.max(1));
    if state.loggers.is_empty() || !(due || state.should_stop) {
        return Ok(());
    }
    let m = state.metrics.take_step_metrics()?;
    write(state, m)
}

/// After a loop's epoch-end hooks: sends its epoch values and flushes the loggers.
pub(crate) fn after_epoch(state: &mut TrainerState, kind: LoopKind) -> Result<()> {
    let m = state.metrics.take_epoch_metrics(kind);
    if state.loggers.is_empty() {
        return Ok(());
    }
    write(state, m)?;
    for l in &mut state.loggers {
        l.save()?;
    }
    Ok(())
}

/// Fixes the loggers' run directories (the first one's is where checkpoints go by default),
/// then sends the module's hyperparameters (`#[hparams]` field) to every logger.
pub(crate) fn hyperparams<M: HasParameters>(state: &mut TrainerState, model: &M) -> Result<()> {
    if state.loggers.is_empty() {
        state.log_dir = None;
        return Ok(());
    }
    // loggers of one root and name share the version the first one claims
    crate::logging::run_dir::sharing_versions(|| state.loggers.iter_mut().try_for_each(|l| l.prepare()))?;
    let first = &state.loggers[0];
    state.log_dir = first.log_dir().or_else(|| first.run_subdir().map(|d| state.default_root_dir.join(d)));
    if let Some(h) = model.hyperparameters()? {
        for l in &mut state.loggers {
            l.log_hyperparams(&h)?;
        }
    }
    Ok(())
}

pub(crate) fn finalize(state: &mut TrainerState, status: &str) -> Result<()> {
    let mut first = Ok(());
    for l in &mut state.loggers {
        let r = l.finalize(status);
        if first.is_ok() {
            first = r;
        }
    }
    first
}
