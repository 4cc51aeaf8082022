//! `ProgressBar`: Lightning's TQDM bar on indicatif, or plain lines when stdout is not a terminal.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressDrawTarget, ProgressStyle};

use crate::{Result, TrainerState};

/// Bars for training (with the epoch), validation and test: step out of total, it/s, ETA and
/// the metrics logged with `prog_bar(true)`, plus `v_num`, the logger's version. The metrics
/// are read back from the device at most twice a second. When stdout is not a terminal (CI
/// logs) it prints plain lines instead of redrawing: at a tenth of an epoch at most every two
/// seconds, and one at the end of each epoch.
///
/// The trainer adds one unless `enable_progress_bar(false)`.
pub struct ProgressBar {
    tty: bool,
    /// Where plain lines go (stdout unless `plain_to`).
    out: Box<dyn std::io::Write + Send>,
    multi: Option<MultiProgress>,
    /// Where the bars draw, until the first bar starts: stdout unless `to_term`.
    target: Option<ProgressDrawTarget>,
    bar: Option<indicatif::ProgressBar>,
    /// The running loop's plain-line state, off a terminal.
    plain: Option<Plain>,
    /// The training loop's bar while a validation run inside it has its own.
    outer: Option<(Option<indicatif::ProgressBar>, Option<Plain>)>,
    last_message: Option<Instant>,
    refresh: Duration,
    /// The least time between two plain lines of one loop.
    plain_every: Duration,
}

/// A loop's progress as plain lines.
#[derive(Debug)]
struct Plain {
    label: String,
    /// `usize::MAX`: a stream of unknown length.
    total: usize,
    started: Instant,
    /// The last tenth of the loop a line was printed for.
    tenth: usize,
    done: usize,
    printed: Instant,
    /// Whether the loop's end prints the final line (training epochs), which the last batch
    /// then leaves to it instead of printing the same 100% line twice.
    closing_line: bool,
}

impl Plain {
    fn line(&self) -> String {
        plain_line(&self.label, self.done, self.total, self.started.elapsed())
    }
}

impl std::fmt::Debug for ProgressBar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgressBar").field("tty", &self.tty).finish()
    }
}

impl Default for ProgressBar {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressBar {
    /// Draws when stdout is a terminal, else prints plain lines. Under `mpirun` it prints
    /// plain lines too: OpenMPI hands each rank a pseudo-terminal even when the job's output
    /// goes to a file.
    pub fn new() -> Self {
        let mpi_rank = std::env::var_os("OMPI_COMM_WORLD_RANK").is_some() || std::env::var_os("PMI_RANK").is_some();
        Self::with_terminal(std::io::stdout().is_terminal() && !mpi_rank)
    }

    /// Forces the terminal (`true`) or plain-line (`false`) mode.
    pub fn with_terminal(tty: bool) -> Self {
        ProgressBar {
            tty,
            out: Box::new(std::io::stdout()),
            multi: None,
            target: None,
            bar: None,
            plain: None,
            outer: None,
            last_message: None,
            refresh: Duration::from_millis(500),
            plain_every: Duration::from_secs(2),
        }
    }

    /// Plain lines, written to `out` instead of stdout (logs, tests).
    pub fn plain_to(out: impl std::io::Write + Send + 'static) -> Self {
        ProgressBar { out: Box::new(out), ..Self::with_terminal(false) }
    }

    /// Off a terminal, the least time between two lines of one loop (2 s unless set): a line
    /// is printed at each tenth of the loop this allows, and one at each epoch's end.
    ///
    /// ```
    /// let bar = lightning::ProgressBar::plain_to(std::io::stderr()).plain_every(std::time::Duration::from_secs(30));
    /// # let _ = bar;
    /// ```
    pub fn plain_every(mut self, every: Duration) -> Self {
        self.plain_every = every;
        self
    }

    /// Terminal bars drawn on `term` instead of stdout: any `indicatif::TermLike`, such as
    /// indicatif's `InMemoryTerm` in tests or a TUI's own terminal.
    pub fn to_term(term: impl indicatif::TermLike + 'static) -> Self {
        ProgressBar { target: Some(ProgressDrawTarget::term_like(Box::new(term))), ..Self::with_terminal(true) }
    }

    fn print(&mut self, line: String) -> Result<()> {
        writeln!(self.out, "{line}").map_err(|e| crate::Error::msg(format!("progress bar output: {e}")))
    }

    fn metrics(t: &TrainerState) -> Result<String> {
        let mut items: Vec<String> =
            t.metrics.progress_bar_metrics()?.into_iter().map(|(k, v)| format!("{k}={}", short(v))).collect();
        if let Some(v) = t.loggers.iter().find_map(|l| l.version()) {
            items.push(format!("v_num={v}"));
        }
        Ok(items.join(", "))
    }

    fn start(&mut self, label: String, total: usize) {
        if self.tty {
            let target = &mut self.target;
            let multi = self.multi.get_or_insert_with(|| {
                MultiProgress::with_draw_target(target.take().unwrap_or_else(ProgressDrawTarget::stdout))
            });
            let bar = if total == usize::MAX {
                indicatif::ProgressBar::no_length()
            } else {
                indicatif::ProgressBar::new(total as u64)
            };
            let bar = multi.add(bar);
            let style = ProgressStyle::with_template(
                "{prefix}: {percent:>3}% {wide_bar} {pos}/{len} [{elapsed_precise}<{eta_precise}, {per_sec}] {msg}",
            )
            .expect("a valid template");
            bar.set_style(style);
            bar.set_prefix(label);
            self.bar = Some(bar);
        } else {
            let now = Instant::now();
            self.plain =
                Some(Plain { label, total, started: now, tenth: 0, done: 0, printed: now, closing_line: false });
        }
        self.last_message = None;
    }

    fn advance(&mut self, t: &TrainerState, done: usize) -> Result<()> {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            if self.last_message.is_none_or(|at| at.elapsed() >= self.refresh) {
                bar.set_message(Self::metrics(t)?);
                self.last_message = Some(Instant::now());
            }
        } else if let Some(p) = &mut self.plain {
            p.done = done;
            // a tenth of the epoch, or every 100 batches of a stream of unknown length
            let now_tenth = match p.total {
                0 => 10,
                usize::MAX => done / 100,
                total => done * 10 / total,
            };
            // at most one line every `plain_every`: short epochs print only their final line
            let last = p.closing_line && done == p.total;
            if now_tenth > p.tenth && !last && p.printed.elapsed() >= self.plain_every {
                p.tenth = now_tenth;
                p.printed = Instant::now();
                let line = format!("{} {}", p.line(), Self::metrics(t)?);
                self.print(line)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self, t: &TrainerState, keep: bool) -> Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.set_message(Self::metrics(t)?);
            if keep {
                bar.finish();
            } else {
                bar.finish_and_clear();
            }
        }
        self.plain = None;
        Ok(())
    }
}

/// `3.1416` style: four significant decimals, like Lightning's bar.
fn short(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

fn plain_line(label: &str, done: usize, total: usize, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    if total == usize::MAX {
        return format!("{label}: {done}/? [{}, {rate:.2}it/s]", clock(secs));
    }
    let eta = if rate > 0.0 { total.saturating_sub(done) as f64 / rate } else { 0.0 };
    let pct = (done.min(total) * 100).checked_div(total).unwrap_or(100);
    format!("{label}: {pct:>3}% {done}/{total} [{}<{}, {rate:.2}it/s]", clock(secs), clock(eta))
}

fn clock(secs: f64) -> String {
    let s = secs.round() as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[lightning_macros::callback]
impl ProgressBar {
    fn on_train_epoch_start(&mut self, trainer: &mut TrainerState) {
        self.start(format!("Epoch {}", trainer.current_epoch), trainer.num_training_batches);
        if let Some(p) = &mut self.plain {
            p.closing_line = true;
        }
    }
    fn on_train_batch_end(&mut self, trainer: &mut TrainerState, batch_idx: usize) -> Result<()> {
        self.advance(trainer, batch_idx + 1)
    }
    fn on_train_epoch_end(&mut self, trainer: &mut TrainerState) -> Result<()> {
        if let Some(p) = self.plain.take() {
            let line = format!("{} {}", p.line(), Self::metrics(trainer)?);
            self.print(line)?;
        }
        self.finish(trainer, true)
    }

    fn on_validation_start(&mut self, trainer: &mut TrainerState) {
        if self.bar.is_some() || self.plain.is_some() {
            // the training bar stays; validation gets its own below it
            self.outer = Some((self.bar.take(), self.plain.take()));
        }
        let label = if trainer.sanity_checking { "Sanity Checking" } else { "Validation" };
        self.start(label.into(), trainer.num_eval_batches);
    }
    fn on_validation_batch_end(&mut self, trainer: &mut TrainerState, batch_idx: usize) -> Result<()> {
        self.advance(trainer, batch_idx + 1)
    }
    fn on_validation_end(&mut self, trainer: &mut TrainerState) -> Result<()> {
        self.finish(trainer, false)?;
        if let Some((bar, plain)) = self.outer.take() {
            (self.bar, self.plain) = (bar, plain);
        }
        Ok(())
    }

    fn on_test_start(&mut self, trainer: &mut TrainerState) {
        self.start("Testing".into(), trainer.num_eval_batches);
    }
    fn on_test_batch_end(&mut self, trainer: &mut TrainerState, batch_idx: usize) -> Result<()> {
        self.advance(trainer, batch_idx + 1)
    }
    fn on_test_end(&mut self, trainer: &mut TrainerState) -> Result<()> {
        self.finish(trainer, true)
    }
}
