//! Lightning's `SimpleProfiler`: per action, the mean, count, total and share of the
//! stage's time.

use super::common::{profiler_common, Output};
use super::report::{sig5, table};
use super::timings::{ActionStats, Timings};
use super::Profiler;
use crate::{Result, Stage};

/// Lightning's `SimpleProfiler`: times every hook and loop region; at the end of each stage
/// prints the table (rank 0), or writes it to `<dirpath>/<stage>-<filename>.txt` when given
/// a `filename` (`dirpath` defaults to the run's log directory, as in Lightning). With
/// [`chrome_trace`](SimpleProfiler::chrome_trace), every region also goes to
/// `<stage>-<filename>.trace.json` for `chrome://tracing` or Perfetto.
///
/// ```
/// use lightning::profiler::SimpleProfiler;
/// let p = SimpleProfiler::new().filename("perf").chrome_trace(true);
/// let trainer = lightning::Trainer::builder().profiler(p).build()?;
/// # let _ = trainer;
/// # Ok::<(), lightning::Error>(())
/// ```
#[derive(Debug)]
pub struct SimpleProfiler {
    timings: Timings,
    out: Output,
}

profiler_common!(SimpleProfiler, keep_durations: false);

impl SimpleProfiler {
    /// Lightning's extended summary: a `Total` row (all calls, the stage's wall time), then
    /// each action by its share of that time.
    fn summary(&self, stage: Stage) -> String {
        let total = self.timings.origin.elapsed().as_secs_f64();
        let rows: Vec<Vec<String>> = self
            .timings
            .by_total()
            .into_iter()
            .map(|(a, s)| {
                let t = s.total.as_secs_f64();
                vec![a.to_string(), sig5(s.mean().as_secs_f64()), s.count.to_string(), sig5(t), sig5(100.0 * t / total)]
            })
            .collect();
        let calls: usize = self.timings.actions.values().map(|s| s.count).sum();
        let first = vec!["Total".into(), "-".into(), calls.to_string(), sig5(total), "100 %".into()];
        let header = ["Action", "Mean duration (s)", "Num calls", "Total time (s)", "Percentage %"];
        table(&format!("{} Profiler Report", stage.as_str().to_uppercase()), &header, first, rows)
    }
}
