//! `ModelCheckpoint`: Lightning's checkpoint callback, with monitor, top-k and `last.ckpt`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::model_checkpoint_state::Saved;
use super::Mode;
use crate::{Error, Result, TrainerState};

/// Lightning's `ModelCheckpoint`.
///
/// Without a `monitor` it keeps the latest checkpoint (`save_top_k(1)`) or all of them
/// (`save_top_k(-1)`). With one it keeps the `save_top_k` best by `mode`, deleting the files
/// that fall out (only after the new ones and `last.ckpt` are safely written, and only files
/// this process wrote: a resume never deletes an earlier run's checkpoints), and tracks
/// `best_model_path` and `best_model_score`. `save_last(true)` also writes `last.ckpt` at
/// every save. A resume restores the top-k only into the same directory (Lightning's rule;
/// otherwise it warns and keeps only `best_model_path`). At the start of `fit` it cleans what
/// saves killed in its directory left behind.
///
/// It saves in `on_train_epoch_end` every `every_n_epochs` epochs when validation runs once
/// per epoch (or not at all), otherwise after each validation run; every
/// `every_n_train_steps` steps when that is set; never during the sanity check, and never
/// twice for one global step. Give it to the trainer with `Trainer::builder().checkpoint(..)`,
/// so it runs last among the callbacks, as in Lightning.
///
/// ```
/// use lightning::{callbacks::Mode, ModelCheckpoint};
/// let ck = ModelCheckpoint::new()
///     .monitor("val_acc")
///     .mode(Mode::Max)
///     .save_top_k(3)
///     .save_last(true)
///     .filename("{epoch}-{val_acc:.3f}");
/// ```
#[derive(Debug, Clone)]
pub struct ModelCheckpoint {
    dirpath: Option<PathBuf>,
    filename: Option<String>,
    monitor: Option<String>,
    mode: Mode,
    save_top_k: i64,
    save_last: bool,
    every_n_epochs: Option<usize>,
    every_n_train_steps: usize,
    save_weights_only: bool,
    save_on_train_epoch_end: Option<bool>,
    state: State,
    /// The checkpoints this process wrote: the only ones top-k ever deletes.
    written: BTreeSet<PathBuf>,
}

/// What `state_dict` keeps, so a resumed run goes on ranking where it stopped. Paths are
/// whole here; the checkpoint holds them as names in `dirpath` (see [`Saved`]).
#[derive(Debug, Clone, Default)]
pub(super) struct State {
    pub(super) best_k_models: BTreeMap<PathBuf, f64>,
    pub(super) best_model_path: Option<PathBuf>,
    pub(super) best_model_score: Option<f64>,
    pub(super) last_model_path: Option<PathBuf>,
    // Run-local, as in Lightning: a resumed run keeps the checkpoint it resumed from.
    last_global_step_saved: Option<usize>,
    /// The checkpoint a monitor-less top-1 replaces next.
    latest: Option<PathBuf>,
}

impl Default for ModelCheckpoint {
    fn default() -> Self {
        ModelCheckpoint {
            dirpath: None,
            filename: None,
            monitor: None,
            mode: Mode::Min,
            save_top_k: 1,
            save_last: false,
            every_n_epochs: None,
            every_n_train_steps: 0,
            save_weights_only: false,
            save_on_train_epoch_end: None,
            state: State::default(),
            written: BTreeSet::new(),
        }
    }
}

impl ModelCheckpoint {
    /// Lightning's defaults: no monitor, `save_top_k` 1 (the latest), every epoch.
    pub fn new() -> Self {
        Self::default()
    }
    /// The directory (default: `<log_dir>/checkpoints`, `log_dir` being the first logger's
    /// `<root>/lightning_logs/version_N`; `<default_root_dir>/checkpoints` without loggers).
    pub fn dirpath(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dirpath = Some(dir.into());
        self
    }
    /// A name template: `"{epoch}-{step}-{val_loss:.3f}"` → `epoch=2-step=300-val_loss=0.123.ckpt`
    /// (Lightning's `auto_insert_metric_name`). Default `"{epoch}-{step}"`.
    pub fn filename(mut self, template: impl Into<String>) -> Self {
        self.filename = Some(template.into());
        self
    }
    /// The logged metric that ranks checkpoints.
    pub fn monitor(mut self, name: impl Into<String>) -> Self {
        self.monitor = Some(name.into());
        self
    }
    /// `Min` (default) or `Max`: which values of the monitor are better.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
    /// How many checkpoints to keep: the best k with a monitor; `-1` keeps all, `0` none.
    pub fn save_top_k(mut self, k: i64) -> Self {
        self.save_top_k = k;
        self
    }
    /// Also write `last.ckpt` at every save.
    pub fn save_last(mut self, v: bool) -> Self {
        self.save_last = v;
        self
    }
    /// Save every N epochs (default 1, unless `every_n_train_steps` is set).
    pub fn every_n_epochs(mut self, n: usize) -> Self {
        self.every_n_epochs = Some(n);
        self
    }
    /// Save every N optimizer steps.
    pub fn every_n_train_steps(mut self, n: usize) -> Self {
        self.every_n_train_steps = n;
        self
    }
    /// Write only the weights and counters (no optimizer state): for inference, not resuming.
    pub fn save_weights_only(mut self, v: bool) -> Self {
        self.save_weights_only = v;
        self
    }
    /// Forces saving at train epoch end (`true`) or after validation (`false`).
    pub fn save_on_train_epoch_end(mut self, v: bool) -> Self {
        self.save_on_train_epoch_end = Some(v);
        self
    }

    /// The best checkpoint by the monitor (or the latest, without one).
    pub fn best_model_path(&self) -> Option<&Path> {
        self.state.best_model_path.as_deref()
    }
    /// The monitor's value for `best_model_path`.
    pub fn best_model_score(&self) -> Option<f64> {
        self.state.best_model_score
    }
    /// The checkpoints kept by top-k, with their scores.
    pub fn best_k_models(&self) -> &BTreeMap<PathBuf, f64> {
        &self.state.best_k_models
    }
    /// The last checkpoint this callback asked for.
    pub fn last_model_path(&self) -> Option<&Path> {
        self.state.last_model_path.as_deref()
    }

    fn on_epoch_end_rule(&self, t: &TrainerState) -> bool {
        if let Some(v) = self.save_on_train_epoch_end {
            return v;
        }
        if t.check_val_every_n_epoch != Some(1) {
            return false;
        }
        t.num_val_batches == 0 || t.val_check_once_per_epoch
    }

    fn epochs_due(&self, t: &TrainerState) -> bool {
        let n = self.every_n_epochs.unwrap_or(if self.every_n_train_steps > 0 { 0 } else { 1 });
        n > 0 && (t.current_epoch + 1).is_multiple_of(n)
    }

    fn better(&self, a: f64, b: f64) -> bool {
        match self.mode {
            Mode::Min => a < b,
            Mode::Max => a > b,
        }
    }

    /// Orders scores worst last: `max_by` finds the worst, `min_by` the best.
    fn rank(&self, a: f64, b: f64) -> std::cmp::Ordering {
        let ord = a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal);
        match self.mode {
            Mode::Min => ord,
            Mode::Max => ord.reverse(),
        }
    }

    /// The directory checkpoints go to: `dirpath`, else Lightning's default: `<log_dir>/checkpoints` beside the first logger's
    /// files, or `<default_root_dir>/checkpoints` without loggers.
    fn dir(&self, t: &TrainerState) -> PathBuf {
        let base = || t.log_dir.clone().unwrap_or_else(|| t.default_root_dir.clone());
        self.dirpath.clone().unwrap_or_else(|| base().join("checkpoints"))
    }

    /// NaN ranks worst, as in Lightning.
    fn score(&self, v: f64) -> f64 {
        match (v.is_nan(), self.mode) {
            (false, _) => v,
            (true, Mode::Min) => f64::INFINITY,
            (true, Mode::Max) => f64::NEG_INFINITY,
        }
    }

    fn path_for(&self, t: &TrainerState, metrics: &BTreeMap<String, f64>) -> Result<PathBuf> {
        let template = self.filename.as_deref().unwrap_or("{epoch}-{step}");
        Ok(self.dir(t).join(format!("{}.ckpt", render(template, t, metrics)?)))
    }

    fn save(&mut self, t: &mut TrainerState) -> Result<()> {
        if t.sanity_checking
            || t.stage != crate::Stage::Fit
            || self.state.last_global_step_saved == Some(t.global_step)
            || (self.save_top_k == 0 && !self.save_last)
        {
            return Ok(());
        }
        // rank 0's values under DDP: every rank keeps the same checkpoint and path
        let metrics = t.rank_zero_callback_metrics()?;
        match &self.monitor {
            _ if self.save_top_k == 0 => {}
            None => {
                let path = self.path_for(t, &metrics)?;
                let replaces = if self.save_top_k == 1 { self.state.latest.replace(path.clone()) } else { None };
                self.request(t, path.clone(), replaces);
                self.state.best_model_path = Some(path);
            }
            Some(key) => {
                let Some(&raw) = metrics.get(key) else {
                    return Err(Error::config(
                        "ModelCheckpoint.monitor",
                        format!(
                            "{}{}",
                            crate::logging::store::not_logged(
                                "ModelCheckpoint",
                                key,
                                &metrics.keys().collect::<Vec<_>>()
                            ),
                            t.unlogged_cause(key)
                        ),
                    ));
                };
                let current = self.score(raw);
                let k = self.save_top_k;
                let worst =
                    self.state.best_k_models.iter().max_by(|a, b| self.rank(*a.1, *b.1)).map(|(p, v)| (p.clone(), *v));
                let full = k >= 0 && self.state.best_k_models.len() as i64 >= k;
                let enters = !full || worst.as_ref().is_some_and(|(_, w)| self.better(current, *w));
                if enters {
                    let path = self.path_for(t, &metrics)?;
                    let replaces = if full { worst.map(|(p, _)| p) } else { None };
                    if let Some(r) = &replaces {
                        self.state.best_k_models.remove(r);
                    }
                    self.state.best_k_models.insert(path.clone(), current);
                    let best = self
                        .state
                        .best_k_models
                        .iter()
                        .min_by(|a, b| self.rank(*a.1, *b.1))
                        .map(|(p, v)| (p.clone(), *v));
                    if let Some((p, v)) = best {
                        self.state.best_model_path = Some(p);
                        self.state.best_model_score = Some(v);
                    }
                    self.request(t, path, replaces);
                }
            }
        }
        if self.save_last {
            let last = self.dir(t).join("last.ckpt");
            self.request(t, last.clone(), None);
            self.state.last_model_path = Some(last);
        } else if let Some(p) = &self.state.best_model_path {
            if self.monitor.is_none() {
                self.state.last_model_path = Some(p.clone());
            }
        }
        self.state.last_global_step_saved = Some(t.global_step);
        let current = self.monitor.as_ref().and_then(|k| metrics.get(k).copied());
        t.saved_checkpoints = Some(self.saved_view(current));
        Ok(())
    }

    /// What loggers see of this callback after a save (`Logger::after_save_checkpoint`).
    fn saved_view(&self, current_score: Option<f64>) -> crate::logging::SavedCheckpoints {
        crate::logging::SavedCheckpoints {
            last_model_path: self.state.last_model_path.clone(),
            current_score,
            best_model_path: self.state.best_model_path.clone(),
            best_model_score: self.state.best_model_score,
            best_k_models: self.state.best_k_models.clone(),
            monitor: self.monitor.clone(),
            mode: match self.mode {
                Mode::Min => "min",
                Mode::Max => "max",
            },
            save_last: self.save_last,
            save_top_k: self.save_top_k,
            save_weights_only: self.save_weights_only,
            every_n_train_steps: self.every_n_train_steps,
            every_n_epochs: self.every_n_epochs,
        }
    }
}

impl ModelCheckpoint {
    /// Asks for a save at `path`. The checkpoint it `replaces` is deleted only if this
    /// process wrote it: no run deletes a file of another run, or one it did not make.
    fn request(&mut self, t: &mut TrainerState, path: PathBuf, replaces: Option<PathBuf>) {
        let replaces = replaces.filter(|r| {
            let ours = self.written.contains(r);
            if !ours && t.is_global_zero() && r.exists() {
                eprintln!(
                    "warning: ModelCheckpoint keeps {}: it fell out of the top {} but this run did not write it",
                    r.display(),
                    self.save_top_k
                );
            }
            ours
        });
        self.written.insert(path.clone());
        t.request_save(path, replaces, self.save_weights_only);
    }

    /// Takes a saved state: all of it when it was saved for this checkpoint directory;
    /// otherwise only `best_model_path` (Lightning's rule), with a warning.
    fn restore(&mut self, t: &TrainerState, saved: Saved) -> Result<()> {
        let dir = self.dir(t);
        let restored = saved.resolve(self.mode)?;
        if restored.dirpath.as_ref().is_some_and(|from| !same_dir(from, &dir)) {
            if t.is_global_zero() {
                eprintln!(
                    "warning: ModelCheckpoint: the dirpath has changed from {} to {}, therefore `best_model_score`, \
                     `last_model_path` and `best_k_models` won't be reloaded (nor deleted). Only `best_model_path` \
                     will be reloaded.",
                    restored.dirpath.as_deref().unwrap_or(Path::new("")).display(),
                    dir.display()
                );
            }
            self.state.best_model_path = restored.best_model_path;
            return Ok(());
        }
        self.state.best_k_models = restored.best_k_models;
        self.state.best_model_path = restored.best_model_path;
        self.state.best_model_score = restored.best_model_score;
        self.state.last_model_path = restored.last_model_path;
        Ok(())
    }
}

/// One directory under two spellings (`runs/x` and `./runs/x`, or through a link).
fn same_dir(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// Fills a filename template: `{name}` or `{name:.Nf}`/`{name:.Ne}`, each as `name=value`.
fn render(template: &str, t: &TrainerState, metrics: &BTreeMap<String, f64>) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| Error::config("ModelCheckpoint.filename", format!("unclosed `{{` in `{template}`")))?;
        let field = &rest[open + 1..open + close];
        let (name, spec) = field.split_once(':').unwrap_or((field, ""));
        let value = match name {
            "epoch" => Some(t.current_epoch as f64),
            "step" => Some(t.global_step as f64),
            other => metrics.get(other).copied(),
        };
        let text = match (value, name) {
            (Some(v), "epoch" | "step") if spec.is_empty() => format!("{}", v as u64),
            (Some(v), _) => format_spec(v, spec),
            // Lightning renders a metric that was not logged as 0
            (None, _) => format_spec(0.0, spec),
        };
        out.push_str(&format!("{name}={text}"));
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Python's `.3f` / `.2e` / `d` specs; anything else prints the shortest exact form.
fn format_spec(v: f64, spec: &str) -> String {
    let precision = |s: &str| s.trim_start_matches('.').parse::<usize>().ok();
    if let Some(p) = spec.strip_suffix('f').and_then(precision) {
        format!("{v:.p$}")
    } else if let Some(p) = spec.strip_suffix('e').and_then(precision) {
        format!("{v:.p$e}")
    } else if spec == "d" {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[lightning_macros::callback(monitoring)]
impl ModelCheckpoint {
    fn on_train_batch_end(&mut self, trainer: &mut TrainerState) -> Result<()> {
        let n = self.every_n_train_steps;
        if n > 0 && trainer.global_step > 0 && trainer.global_step.is_multiple_of(n) {
            self.save(trainer)?;
        }
        Ok(())
    }

    fn on_train_epoch_end(&mut self, trainer: &mut TrainerState) -> Result<()> {
        if self.on_epoch_end_rule(trainer) && self.epochs_due(trainer) {
            self.save(trainer)?;
        }
        Ok(())
    }

    fn on_validation_end(&mut self, trainer: &mut TrainerState) -> Result<()> {
        if !self.on_epoch_end_rule(trainer) && self.epochs_due(trainer) {
            self.save(trainer)?;
        }
        Ok(())
    }

    fn on_fit_start(&mut self, trainer: &mut TrainerState) -> Result<()> {
        if trainer.is_global_zero() {
            let dir = self.dir(trainer);
            let cleaned = crate::checkpoints::ckpt_files::clean_leftovers(&dir)?;
            if !cleaned.is_empty() {
                eprintln!(
                    "ModelCheckpoint: cleaned {} leftover(s) of interrupted saves in {}",
                    cleaned.len(),
                    dir.display()
                );
            }
        }
        Ok(())
    }

    fn state_dict(&mut self, trainer: &mut TrainerState) -> serde_json::Value {
        let dir = self.dir(trainer);
        Saved::of(&dir, self.monitor.as_deref(), &self.state)
    }

    fn load_state_dict(&mut self, trainer: &mut TrainerState, state_dict: &serde_json::Value) -> Result<()> {
        let saved = Saved::parse(state_dict)?;
        self.restore(trainer, saved)
    }
}
