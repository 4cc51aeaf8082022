//! Lightning's profilers: how long each hook and each loop region takes.
//!
//! A profiler is part of the trainer's type (`Trainer<C, P>`), passed to the hook dispatcher
//! as the first member of the run's callback list ([`Profiling`]). The dispatcher times a hook
//! only when the list's `__PROFILED` constant says a profiler is there, so a trainer without
//! one ([`NoProfiler`], the default) compiles to the code it had before profilers existed.
//!
//! ```
//! use lightning::profiler::SimpleProfiler;
//! let trainer = lightning::Trainer::builder().profiler(SimpleProfiler::new().filename("perf")).build()?;
//! // after `fit`, `<log_dir>/fit-perf.txt` holds Lightning's table; `trainer.profiler()` the numbers
//! # let _ = trainer;
//! # Ok::<(), lightning::Error>(())
//! ```

mod advanced;
mod common;
mod report;
mod simple;
mod timings;

use std::path::Path;

use crate::{Result, Stage};

pub use advanced::AdvancedProfiler;
pub use simple::SimpleProfiler;
pub use timings::ActionStats;

/// What the trainer calls around each hook it dispatches (named as the hook:
/// `training_step`, `on_train_batch_end`, ...) and around its loops' own regions
/// ([`actions`]), and at the end of each stage.
pub trait Profiler {
    /// Whether it records: `false` compiles every region away.
    const ENABLED: bool = true;
    /// A stage starts: what is recorded from now on is its profile (default: nothing to do).
    fn setup(&mut self, stage: Stage) {
        let _ = stage;
    }
    /// `action` starts. Regions nest: `optimizer_step` holds `training_step` and `backward`.
    fn start(&mut self, action: &'static str);
    /// `action`, the innermost running region, ends.
    fn stop(&mut self, action: &'static str);
    /// The end of a stage: report what was recorded since the last report (print it, or
    /// write it under `log_dir`), and start afresh. `rank` names the files of ranks other
    /// than 0 under DDP.
    fn finish(&mut self, stage: Stage, log_dir: &Path, rank: Option<usize>) -> Result<()>;
}

/// No profiler: the trainer's default, which records nothing and costs nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProfiler;

impl Profiler for NoProfiler {
    const ENABLED: bool = false;
    #[inline(always)]
    fn start(&mut self, _: &'static str) {}
    #[inline(always)]
    fn stop(&mut self, _: &'static str) {}
    fn finish(&mut self, _: Stage, _: &Path, _: Option<usize>) -> Result<()> {
        Ok(())
    }
}

/// The trainer's profiler as the first member of a run's callback list.
#[doc(hidden)]
pub struct Profiling<'a, P>(pub &'a mut P);

/// The loops' own regions, besides the hooks (Lightning's names).
pub mod actions {
    /// One training epoch, its validation included.
    pub const TRAINING_EPOCH: &str = "run_training_epoch";
    /// One training batch: its hooks and optimization step.
    pub const TRAINING_BATCH: &str = "run_training_batch";
    /// Reading the next training batch from the loader.
    pub const TRAIN_NEXT: &str = "[_TrainingEpochLoop].train_dataloader_next";
    /// Reading the next validation batch.
    pub const VAL_NEXT: &str = "[_EvaluationLoop].val_next";
    /// Reading the next test batch.
    pub const TEST_NEXT: &str = "[_EvaluationLoop].test_next";
    /// Reading the next predict batch.
    pub const PREDICT_NEXT: &str = "[_PredictionLoop].predict_next";
}

/// Starts timing `action` in the list's profiler, if it carries one (nothing otherwise:
/// the test is a constant).
#[inline(always)]
pub(crate) fn start<M: crate::LightningModule, L: crate::CallbackList<M>>(cbs: &mut L, action: &'static str) {
    if L::__PROFILED {
        cbs.__profile(action, true);
    }
}

/// Stops timing `action` (see [`start`]).
#[inline(always)]
pub(crate) fn stop<M: crate::LightningModule, L: crate::CallbackList<M>>(cbs: &mut L, action: &'static str) {
    if L::__PROFILED {
        cbs.__profile(action, false);
    }
}

/// The loader's next batch, timed as `action` (a data fetch: `train_dataloader_next`, ...).
#[inline(always)]
pub(crate) fn next<M, L, I>(cbs: &mut L, action: &'static str, batches: &mut I) -> Option<I::Item>
where
    M: crate::LightningModule,
    L: crate::CallbackList<M>,
    I: Iterator,
{
    start(cbs, action);
    let next = batches.next();
    stop(cbs, action);
    next
}

/// `<dir>/<stage>-<name>[-rank]<ext>`, Lightning's report file name.
fn file(dir: &Path, stage: Stage, name: &str, rank: Option<usize>, ext: &str) -> std::path::PathBuf {
    let rank = rank.map(|r| format!("-{r}")).unwrap_or_default();
    dir.join(format!("{}-{name}{rank}{ext}", stage.as_str()))
}

/// Writes a report file, creating its directory; a failure names the file.
fn write(path: &Path, text: &str) -> Result<()> {
    let io =
        |e: std::io::Error| crate::Error::msg(format!("could not write the profiler report {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)
}

/// A stage's report: written to `<stage>-<filename>.txt` with a file name, else printed by
/// rank 0; the Chrome trace, when recorded, to `<stage>-<filename or profile>.trace.json`.
fn report_out(
    dir: &Path,
    stage: Stage,
    filename: Option<&str>,
    rank: Option<usize>,
    text: &str,
    timings: &timings::Timings,
) -> Result<()> {
    match filename {
        Some(name) => write(&file(dir, stage, name, rank, ".txt"), text)?,
        None => {
            crate::dist::rank_zero_only(|| print!("{text}"));
        }
    }
    if timings.events.is_some() {
        write(&file(dir, stage, filename.unwrap_or("profile"), rank, ".trace.json"), &timings.chrome_trace())?;
    }
    Ok(())
}
