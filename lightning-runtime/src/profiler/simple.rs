//! Lightning's `SimpleProfiler`: per action, the mean, count, total and share of the
//! stage's time.

use std::path::{Path, PathBuf};

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
    pub(super) dirpath: Option<PathBuf>,
    pub(super) filename: Option<String>,
    last: Option<String>,
}

impl Default for SimpleProfiler {
    fn default() -> Self {
        SimpleProfiler { timings: Timings::new(false, false), dirpath: None, filename: None, last: None }
    }
}

impl SimpleProfiler {
    /// A profiler that prints its table at the end of each stage.
    pub fn new() -> Self {
        Self::default()
    }
    /// Where the files go (Lightning's `dirpath`; default the run's log directory).
    pub fn dirpath(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dirpath = Some(dir.into());
        self
    }
    /// Write the table to `<stage>-<filename>.txt` instead of printing it (Lightning's `filename`).
    pub fn filename(mut self, name: impl Into<String>) -> Self {
        self.filename = Some(name.into());
        self
    }
    /// Also write every region as a Chrome trace, `<stage>-<filename>.trace.json`
    /// (`filename` defaults to `profile` for it).
    pub fn chrome_trace(mut self, on: bool) -> Self {
        self.timings = Timings::new(false, on);
        self
    }
    /// What was recorded in the running stage, by action.
    pub fn actions(&self) -> impl Iterator<Item = (&'static str, &ActionStats)> + '_ {
        self.timings.actions.iter().map(|(a, s)| (*a, s))
    }
    /// The last stage's report, as printed or written.
    pub fn last_report(&self) -> Option<&str> {
        self.last.as_deref()
    }

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

impl Profiler for SimpleProfiler {
    fn setup(&mut self, _: Stage) {
        self.timings.reset();
    }
    #[inline]
    fn start(&mut self, action: &'static str) {
        self.timings.start(action);
    }
    #[inline]
    fn stop(&mut self, action: &'static str) {
        self.timings.stop(action);
    }
    fn finish(&mut self, stage: Stage, log_dir: &Path, rank: Option<usize>) -> Result<()> {
        if self.timings.actions.is_empty() {
            return Ok(());
        }
        let text = self.summary(stage);
        let dir = self.dirpath.clone().unwrap_or_else(|| log_dir.to_path_buf());
        super::report_out(&dir, stage, self.filename.as_deref(), rank, &text, &self.timings)?;
        self.last = Some(text);
        self.timings.reset();
        Ok(())
    }
}
