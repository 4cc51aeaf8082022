//! What both profilers share: where the report goes, the builder options, and the
//! [`Profiler`](super::Profiler) impl around their own `summary`.

/// Writes a profiler type's options, accessors and `Profiler` impl; the type has fields
/// `timings: Timings` and `out: Output`, and a `summary(&self, Stage) -> String`.
macro_rules! profiler_common {
    ($ty:ident, keep_durations: $keep:expr) => {
        impl Default for $ty {
            fn default() -> Self {
                $ty { timings: Timings::new($keep, false), out: Output::default() }
            }
        }

        impl $ty {
            /// A profiler that prints its table at the end of each stage.
            pub fn new() -> Self {
                Self::default()
            }
            /// Where the files go (Lightning's `dirpath`; default the run's log directory).
            pub fn dirpath(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
                self.out.dirpath = Some(dir.into());
                self
            }
            /// Write the table to `<stage>-<filename>.txt` instead of printing it (Lightning's
            /// `filename`).
            pub fn filename(mut self, name: impl Into<String>) -> Self {
                self.out.filename = Some(name.into());
                self
            }
            /// Also write every region as a Chrome trace, `<stage>-<filename>.trace.json`
            /// (`filename` defaults to `profile` for it).
            pub fn chrome_trace(mut self, on: bool) -> Self {
                self.timings = Timings::new($keep, on);
                self
            }
            /// What was recorded in the running stage, by action.
            pub fn actions(&self) -> impl Iterator<Item = (&'static str, &ActionStats)> + '_ {
                self.timings.actions.iter().map(|(a, s)| (*a, s))
            }
            /// The last stage's report, as printed or written.
            pub fn last_report(&self) -> Option<&str> {
                self.out.last.as_deref()
            }
        }

        impl Profiler for $ty {
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
            fn finish(&mut self, stage: Stage, log_dir: &std::path::Path, rank: Option<usize>) -> Result<()> {
                if self.timings.actions.is_empty() {
                    return Ok(());
                }
                let text = self.summary(stage);
                self.out.write(&self.timings, stage, log_dir, rank, text)?;
                self.timings.reset();
                Ok(())
            }
        }
    };
}
pub(super) use profiler_common;

/// Where a profiler's reports go, and the last one.
#[derive(Debug, Default)]
pub(super) struct Output {
    pub dirpath: Option<std::path::PathBuf>,
    pub filename: Option<String>,
    pub last: Option<String>,
}

impl Output {
    /// Prints or writes a stage's report `text` (and the trace), and keeps it as the last.
    pub fn write(
        &mut self,
        timings: &super::timings::Timings,
        stage: crate::Stage,
        log_dir: &std::path::Path,
        rank: Option<usize>,
        text: String,
    ) -> crate::Result<()> {
        let dir = self.dirpath.clone().unwrap_or_else(|| log_dir.to_path_buf());
        super::report_out(&dir, stage, self.filename.as_deref(), rank, &text, timings)?;
        self.last = Some(text);
        Ok(())
    }
}
