//! Trainer flags (Lightning's `Trainer(...)` arguments) and their checks.

use std::path::PathBuf;

use crate::{Accelerator, Error, GradientClipAlgorithm, Result};

/// A batch limit: Lightning's `limit_*_batches` and `val_check_interval`, where a float
/// is a fraction of the loader and an integer a number of batches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    /// A fraction of the loader's batches, in `[0, 1]` (Lightning's float).
    Fraction(f64),
    /// A number of batches (Lightning's int).
    Batches(usize),
}

impl From<f64> for Limit {
    fn from(f: f64) -> Self {
        Limit::Fraction(f)
    }
}
impl From<f32> for Limit {
    fn from(f: f32) -> Self {
        Limit::Fraction(f64::from(f))
    }
}
impl From<usize> for Limit {
    fn from(n: usize) -> Self {
        Limit::Batches(n)
    }
}
impl From<u32> for Limit {
    fn from(n: u32) -> Self {
        Limit::Batches(n as usize)
    }
}
impl From<i32> for Limit {
    fn from(n: i32) -> Self {
        if n < 0 {
            // refused by `check`, which names the flag, as a negative fraction is
            Limit::Fraction(f64::from(n))
        } else {
            Limit::Batches(n as usize)
        }
    }
}

impl Limit {
    pub(crate) fn check(self, flag: &'static str) -> Result<()> {
        match self {
            Limit::Fraction(f) if f < 0.0 || f.is_nan() => {
                Err(Error::config(flag, format!("must be a fraction in [0, 1] or a batch count >= 0, got {f}")))
            }
            Limit::Fraction(f) if f > 1.0 => Err(Error::config(flag, format!("a fraction must be in [0, 1], got {f}"))),
            _ => Ok(()),
        }
    }

    pub(crate) fn is_zero(self) -> bool {
        matches!(self, Limit::Batches(0)) || matches!(self, Limit::Fraction(f) if f == 0.0)
    }

    /// Batches to run out of `available`, as Lightning computes it (`int(n * fraction)`).
    pub(crate) fn apply(self, available: usize, flag: &'static str) -> Result<usize> {
        match self {
            Limit::Batches(n) => Ok(n.min(available)),
            Limit::Fraction(f) => {
                let n = (available as f64 * f) as usize;
                if n == 0 && f > 0.0 && available > 0 {
                    return Err(Error::config(
                        flag,
                        format!("{f} of {available} batches is less than one batch: raise it or use a batch count"),
                    ));
                }
                Ok(n)
            }
        }
    }
}

/// All trainer flags, with Lightning's defaults. It (de)serializes as the `trainer:` section
/// of a [`crate::cli::LightningCli`] config, in Lightning's spellings; every field is a
/// `--trainer.<field>` flag there.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainerConfig {
    /// `None`: 1000 when `max_steps` is unset too, else unlimited.
    pub max_epochs: Option<usize>,
    /// Stop after this many optimizer steps (Lightning's `max_steps`; `None`: its -1, no limit).
    pub max_steps: Option<usize>,
    /// Stop requests (`should_stop`, early stopping) wait until this many epochs ran.
    pub min_epochs: Option<usize>,
    /// … and this many optimizer steps.
    pub min_steps: Option<usize>,
    /// Training batches per epoch (Lightning's `limit_train_batches`; default all, `1.0`).
    pub limit_train_batches: Limit,
    /// Validation batches per run; 0 disables validation (default all, `1.0`).
    pub limit_val_batches: Limit,
    /// Test batches (Lightning's `limit_test_batches`; default all, `1.0`).
    pub limit_test_batches: Limit,
    /// Predict batches (Lightning's `limit_predict_batches`; default all, `1.0`).
    pub limit_predict_batches: Limit,
    /// Validation batches run before training (Lightning's `num_sanity_val_steps`; default 2,
    /// 0 off); `usize::MAX` runs them all (Lightning's -1).
    #[serde(with = "super::config_serde::all_is_minus_one")]
    pub num_sanity_val_steps: usize,
    /// Validate every fraction of an epoch or every N training batches (Lightning's
    /// `val_check_interval`; default `1.0`, once per epoch).
    pub val_check_interval: Limit,
    /// Validate every N epochs (Lightning's `check_val_every_n_epoch`; default 1); `None`
    /// counts `val_check_interval` batches across epochs.
    pub check_val_every_n_epoch: Option<usize>,
    /// Fetch the training and validation loaders again from their hooks every N epochs
    /// (Lightning's `reload_dataloaders_every_n_epochs`; default 0, never). Loaders given to
    /// `fit` are kept, as in Lightning.
    pub reload_dataloaders_every_n_epochs: usize,
    /// Step the optimizer every k batches, with the loss divided by k (Lightning's
    /// `accumulate_grad_batches`; default 1).
    pub accumulate_grad_batches: usize,
    /// Clip gradients to this value (Lightning's `gradient_clip_val`; `None`: no clipping).
    pub gradient_clip_val: Option<f64>,
    /// Clip by norm (default) or by value (Lightning's `gradient_clip_algorithm`).
    pub gradient_clip_algorithm: GradientClipAlgorithm,
    /// Seeds the device's generator and the dropout masks (see [`crate::TrainerBuilder::seed`]).
    pub seed: Option<u64>,
    /// The device (Lightning's `accelerator`; default `Auto`).
    pub accelerator: Accelerator,
    /// Adds a `ModelCheckpoint` when none was given (Lightning's `enable_checkpointing`; default on).
    pub enable_checkpointing: bool,
    /// Where checkpoints and logs go (Lightning's `default_root_dir`; default `.`).
    pub default_root_dir: PathBuf,
    /// Logging frequency in optimizer steps.
    pub log_every_n_steps: usize,
    /// Adds a `CsvLogger` under `default_root_dir` when no logger was given.
    pub enable_logger: bool,
    /// Adds the progress bar.
    pub enable_progress_bar: bool,
    /// Prints the model summary at fit start.
    pub enable_model_summary: bool,
    /// CPU threads; `None` chooses by model size.
    pub threads: Option<usize>,
    /// Stop training once this much wall time has passed (checked after every batch).
    #[serde(with = "super::config_serde::max_time")]
    pub max_time: Option<std::time::Duration>,
    /// Check every training loss: a NaN or infinite loss is an error naming the epoch and step.
    pub detect_anomaly: bool,
    /// Train on the same first N batches every epoch, unshuffled (Lightning's `overfit_batches`).
    pub overfit_batches: Option<usize>,
    /// Skip the check that every parameter the optimizer holds gets a gradient
    /// (DDP's `find_unused_parameters`), for models that skip branches on purpose.
    pub allow_unused_parameters: bool,
    /// `None`: train in whatever dtype the module was built with.
    pub precision: Option<crate::Precision>,
    /// The loss scaler's settings under `16-mixed` (`None`: torch's defaults). Set through
    /// [`crate::TrainerBuilder::grad_scaler`]; not a command-line flag (Lightning takes it as
    /// a `MixedPrecision(scaler=..)` plugin, not a flag either).
    #[serde(skip)]
    pub grad_scaler: Option<crate::GradScaler>,
    /// One device or data-parallel (Lightning's `strategy`).
    pub strategy: super::Strategy,
    /// Processes (one device each) per node; `None`: as the launcher started, else 1.
    pub devices: Option<usize>,
    /// Nodes of the job (each started by a launcher).
    pub num_nodes: usize,
    /// Under SLURM, requeue the job when SIGUSR1 stops a run.
    pub auto_requeue: bool,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        TrainerConfig {
            max_epochs: None,
            max_steps: None,
            min_epochs: None,
            min_steps: None,
            limit_train_batches: Limit::Fraction(1.0),
            limit_val_batches: Limit::Fraction(1.0),
            limit_test_batches: Limit::Fraction(1.0),
            limit_predict_batches: Limit::Fraction(1.0),
            num_sanity_val_steps: 2,
            val_check_interval: Limit::Fraction(1.0),
            check_val_every_n_epoch: Some(1),
            reload_dataloaders_every_n_epochs: 0,
            accumulate_grad_batches: 1,
            gradient_clip_val: None,
            gradient_clip_algorithm: GradientClipAlgorithm::Norm,
            seed: None,
            accelerator: Accelerator::Auto,
            enable_checkpointing: true,
            default_root_dir: PathBuf::from("."),
            log_every_n_steps: 50,
            enable_logger: true,
            enable_progress_bar: true,
            enable_model_summary: true,
            threads: None,
            max_time: None,
            detect_anomaly: false,
            overfit_batches: None,
            allow_unused_parameters: false,
            precision: None,
            grad_scaler: None,
            strategy: super::Strategy::Auto,
            devices: None,
            num_nodes: 1,
            auto_requeue: false,
        }
    }
}

impl TrainerConfig {
    /// The seed of `lightning::nn`'s dropout masks in a fit: the `seed` flag, or one drawn
    /// from the system's generator (a fit without a seed does not repeat, as in Lightning).
    pub(crate) fn dropout_seed(&self) -> u64 {
        self.seed.unwrap_or_else(rand::random)
    }

    /// Checks every flag; the first problem found is returned.
    pub fn validate(&self) -> Result<()> {
        self.limit_train_batches.check("limit_train_batches")?;
        self.limit_val_batches.check("limit_val_batches")?;
        self.limit_test_batches.check("limit_test_batches")?;
        self.limit_predict_batches.check("limit_predict_batches")?;
        self.val_check_interval.check("val_check_interval")?;
        if self.val_check_interval.is_zero() {
            return Err(Error::config("val_check_interval", "must be more than 0"));
        }
        if self.accumulate_grad_batches == 0 {
            return Err(Error::config("accumulate_grad_batches", "must be at least 1"));
        }
        if self.check_val_every_n_epoch == Some(0) {
            return Err(Error::config(
                "check_val_every_n_epoch",
                "must be at least 1, or None to count batches across epochs",
            ));
        }
        if self.check_val_every_n_epoch.is_none() && !matches!(self.val_check_interval, Limit::Batches(_)) {
            return Err(Error::config(
                "val_check_interval",
                "must be a batch count when check_val_every_n_epoch is None",
            ));
        }
        if self.devices == Some(0) {
            return Err(Error::config("devices", "must be at least 1"));
        }
        if self.num_nodes == 0 {
            return Err(Error::config("num_nodes", "must be at least 1"));
        }
        if let Some(s) = &self.grad_scaler {
            s.validate()?;
            if !self.precision.is_some_and(crate::Precision::scales_loss) {
                let now = self.precision.map_or("unset".to_string(), |p| format!("\"{p}\""));
                return Err(Error::config(
                    "grad_scaler",
                    format!("the loss scaler works only under precision \"16-mixed\" (precision is {now}): set `precision(Precision::F16Mixed)` or drop `grad_scaler(..)`"),
                ));
            }
        }
        if let Some(v) = self.gradient_clip_val {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::config("gradient_clip_val", format!("must be finite and >= 0, got {v}")));
            }
        }
        Ok(())
    }

    /// The epoch limit in force (`None`: unlimited).
    pub fn effective_max_epochs(&self) -> Option<usize> {
        match (self.max_epochs, self.max_steps) {
            (Some(e), _) => Some(e),
            (None, None) => Some(1000),
            (None, Some(_)) => None,
        }
    }
}
