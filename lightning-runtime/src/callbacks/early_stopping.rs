//! `EarlyStopping`: stops training when a monitored metric stops improving.

use serde_json::{json, Value};

use super::restored;
use crate::{Error, Result, Stage, TrainerState};

/// Whether lower or higher values of the monitored metric are better: one type for the
/// callbacks and the LR schedulers (`lightning::callbacks::Mode` is `lightning::optim::Mode`).
pub use crate::optim::Mode;

/// Lightning's `EarlyStopping`: after each check, if `monitor` has not improved by more
/// than `min_delta` for `patience` checks, it sets `trainer.should_stop`. It also stops on
/// a non-finite value (`check_finite`), on reaching `stopping_threshold`, or on passing
/// `divergence_threshold`; `stopping_reason` says why. Checks run at the end of the training
/// epoch when validation runs once per epoch (or never), else after each validation run,
/// and never during the sanity check. A monitoring callback: it sees what the module logs
/// in `on_train_epoch_end`.
#[derive(Debug, Clone)]
pub struct EarlyStopping {
    /// The logged metric to watch (Lightning's `monitor`).
    pub monitor: String,
    /// The least change that counts as an improvement, as an absolute value (default 0).
    pub min_delta: f64,
    /// Checks without improvement before stopping (default 3).
    pub patience: usize,
    /// Whether lower (`Min`, the default) or higher values are better.
    pub mode: Mode,
    /// A missing metric is an error (else the check is skipped).
    pub strict: bool,
    /// Stop when the metric is NaN or infinite (default on).
    pub check_finite: bool,
    /// Stop as soon as the metric is better than this.
    pub stopping_threshold: Option<f64>,
    /// Stop as soon as the metric is worse than this.
    pub divergence_threshold: Option<f64>,
    /// Check at the end of the training epoch (`true`) or after validation (`false`);
    /// `None` chooses as Lightning does (see the type's docs).
    pub check_on_train_epoch_end: Option<bool>,
    wait_count: usize,
    best: Option<f64>,
    stopped_epoch: Option<usize>,
    stopping_reason: Option<String>,
}

impl EarlyStopping {
    /// Lightning's defaults: `min_delta` 0, `patience` 3, `Min`, strict, `check_finite`.
    pub fn new(monitor: impl Into<String>) -> Self {
        EarlyStopping {
            monitor: monitor.into(),
            min_delta: 0.0,
            patience: 3,
            mode: Mode::Min,
            strict: true,
            check_finite: true,
            stopping_threshold: None,
            divergence_threshold: None,
            check_on_train_epoch_end: None,
            wait_count: 0,
            best: None,
            stopped_epoch: None,
            stopping_reason: None,
        }
    }

    /// Checks without improvement before stopping (Lightning's `patience`; 3).
    pub fn patience(mut self, n: usize) -> Self {
        self.patience = n;
        self
    }

    /// The least change that counts as an improvement; its sign is ignored (Lightning's `min_delta`; 0).
    pub fn min_delta(mut self, d: f64) -> Self {
        self.min_delta = d.abs();
        self
    }

    /// `Mode::Min` (default): lower is better; `Mode::Max`: higher is better.
    pub fn mode(mut self, m: Mode) -> Self {
        self.mode = m;
        self
    }

    /// Whether a metric that was never logged is an error (default) or skips the check.
    pub fn strict(mut self, s: bool) -> Self {
        self.strict = s;
        self
    }

    /// Stops as soon as the metric is better than `v` (Lightning's `stopping_threshold`).
    pub fn stopping_threshold(mut self, v: f64) -> Self {
        self.stopping_threshold = Some(v);
        self
    }

    /// Stops as soon as the metric is worse than `v` (Lightning's `divergence_threshold`).
    pub fn divergence_threshold(mut self, v: f64) -> Self {
        self.divergence_threshold = Some(v);
        self
    }

    /// Why training stopped, if this callback stopped it.
    pub fn stopping_reason(&self) -> Option<&str> {
        self.stopping_reason.as_deref()
    }

    /// The epoch in which it stopped training.
    pub fn stopped_epoch(&self) -> Option<usize> {
        self.stopped_epoch
    }

    /// The best value seen.
    pub fn best_score(&self) -> Option<f64> {
        self.best
    }

    fn better(&self, a: f64, b: f64) -> bool {
        match self.mode {
            Mode::Min => a < b,
            Mode::Max => a > b,
        }
    }

    fn on_epoch_end_rule(&self, t: &TrainerState) -> bool {
        if let Some(v) = self.check_on_train_epoch_end {
            return v;
        }
        t.check_val_every_n_epoch == Some(1) && (t.num_val_batches == 0 || t.val_check_once_per_epoch)
    }

    fn check(&mut self, t: &mut TrainerState) -> Result<()> {
        if t.sanity_checking || t.stage != Stage::Fit {
            return Ok(());
        }
        // under DDP, the ranks' mean: every rank checks the same value
        let Some(current) = t.monitored_metric(&self.monitor)? else {
            if self.strict {
                let logged: Vec<String> = t.callback_metrics()?.into_keys().collect();
                return Err(Error::config(
                    "EarlyStopping.monitor",
                    format!(
                        "{}{}",
                        crate::logging::store::not_logged("EarlyStopping", &self.monitor, &logged),
                        t.unlogged_cause(&self.monitor)
                    ),
                ));
            }
            return Ok(());
        };
        let best = self.best;
        let name = &self.monitor;
        let reason = if self.check_finite && !current.is_finite() {
            Some(format!(
                "Monitored metric {name} = {current} is not finite (epoch {}, step {}). Previous best value was {}.",
                t.current_epoch,
                t.global_step,
                shown(best)
            ))
        } else if self.stopping_threshold.is_some_and(|s| self.better(current, s)) {
            Some(format!(
                "Stopping threshold reached: {name} = {current} is better than {:?}.",
                self.stopping_threshold.unwrap_or_default()
            ))
        } else if self.divergence_threshold.is_some_and(|d| self.better(d, current)) {
            Some(format!(
                "Divergence threshold reached: {name} = {current} is worse than {:?}.",
                self.divergence_threshold.unwrap_or_default()
            ))
        } else {
            let improved = match best {
                None => true,
                Some(b) => match self.mode {
                    Mode::Min => current < b - self.min_delta,
                    Mode::Max => current > b + self.min_delta,
                },
            };
            if improved {
                self.best = Some(current);
                self.wait_count = 0;
                None
            } else {
                self.wait_count += 1;
                (self.wait_count >= self.patience).then(|| {
                    format!(
                        "Monitored metric {name} did not improve in the last {} records. Best score: {}.",
                        self.wait_count,
                        shown(best)
                    )
                })
            }
        };
        if let Some(r) = reason {
            t.stop(r.clone());
            self.stopped_epoch = Some(t.current_epoch);
            self.stopping_reason = Some(r);
        }
        Ok(())
    }
}

/// A best score as Lightning prints it (`{:.3f}`), not as `Some(0.92)`.
fn shown(best: Option<f64>) -> String {
    best.map_or_else(|| "none yet".to_string(), |b| format!("{b:.3}"))
}

#[lightning_macros::callback(monitoring)]
impl EarlyStopping {
    fn on_train_epoch_end(&mut self, trainer: &mut TrainerState) -> Result<()> {
        if self.on_epoch_end_rule(trainer) {
            self.check(trainer)?;
        }
        Ok(())
    }

    fn on_validation_end(&mut self, trainer: &mut TrainerState) -> Result<()> {
        if !self.on_epoch_end_rule(trainer) {
            self.check(trainer)?;
        }
        Ok(())
    }

    fn state_dict(&mut self) -> Value {
        json!({"wait_count": self.wait_count, "best_score": self.best, "stopped_epoch": self.stopped_epoch, "patience": self.patience})
    }

    fn load_state_dict(&mut self, state_dict: &Value) -> Result<()> {
        const ME: &str = "EarlyStopping";
        let wait_count = restored::count(state_dict, ME, "wait_count")?;
        let best = match &state_dict["best_score"] {
            Value::Null => None,
            v => Some(
                v.as_f64().ok_or_else(|| restored::bad(ME, "best_score", format!("is {v}, not a number or null")))?,
            ),
        };
        let stopped_epoch = match &state_dict["stopped_epoch"] {
            Value::Null => None,
            _ => restored::count(state_dict, ME, "stopped_epoch")?,
        };
        self.wait_count = wait_count.unwrap_or(0);
        self.best = best;
        self.stopped_epoch = stopped_epoch;
        Ok(())
    }
}
