//! `self.log` (here `trainer.log`): Lightning's metric semantics, and the loggers that record them.
//!
//! Values logged as tensors stay on the device: a step value is read back only when a logger,
//! the progress bar or a monitor asks for it, and epoch means are summed on the device and read
//! once per epoch. [`MetricStore::syncs`] counts the read-backs.

mod csv;
mod hparams;
pub mod mlflow;
mod plot;
mod plot_best;
pub(crate) mod plot_png;
pub(crate) mod run_dir;
mod saved;
pub(crate) mod store;
pub mod tensorboard;

pub use csv::CsvLogger;
pub use hparams::to_yaml;
pub use mlflow::{LogModel, MlflowLogger};
pub use plot::{plot_metrics, MetricsPlot};
pub use run_dir::{claim as claim_version, next_version};
pub use saved::SavedCheckpoints;
pub use store::MetricStore;
pub use tensorboard::TensorBoardLogger;

use std::path::PathBuf;

use candle_core::Tensor;

use crate::{Error, Result};

/// How values logged over an epoch are reduced (Lightning's `reduce_fx`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduce {
    /// The mean weighted by batch size (Lightning's default).
    #[default]
    Mean,
    /// The sum (`reduce_fx="sum"`).
    Sum,
    /// The largest value (`reduce_fx="max"`).
    Max,
    /// The smallest value (`reduce_fx="min"`).
    Min,
}

/// Options of one `log` call: Lightning's `self.log(name, value, on_step=.., ...)`.
///
/// Unset `on_step`/`on_epoch` take the defaults of the hook that logs (reference §4.10):
/// step-level in `training_step` and the optimization hooks, epoch-level in the evaluation
/// steps and every epoch hook.
///
/// ```
/// use lightning::Log;
/// let opts = Log::new().on_epoch(true).prog_bar(true).batch_size(32);
/// assert_eq!(opts.prog_bar, true);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Log {
    /// Log the value of each step (Lightning's `on_step`); `None`: the hook's default.
    pub on_step: Option<bool>,
    /// Log the value reduced over the epoch (Lightning's `on_epoch`); `None`: the hook's default.
    pub on_epoch: Option<bool>,
    /// Show the value in the progress bar.
    pub prog_bar: bool,
    /// Send the value to the loggers (CSV, TensorBoard).
    pub logger: bool,
    /// Weight of this value in the epoch mean; default: the batch's size.
    pub batch_size: Option<usize>,
    /// How the epoch value is reduced (Lightning's `reduce_fx`; default the mean).
    pub reduce: Reduce,
    /// Reduce the value over the ranks when it is logged (Lightning's `sync_dist`), with
    /// `reduce` (a mean is the plain mean of the ranks' values). Every rank must log it.
    /// Values logged per step are summed into epoch values on each rank and reduced at the
    /// epoch's end in any case; this also reduces the step value, and a value logged in an
    /// epoch-end hook, which is otherwise this rank's own.
    pub sync_dist: bool,
    /// With several evaluation loaders, log under `name/dataloader_idx_N` (Lightning's
    /// `add_dataloader_idx`; default on). Off, one name may be logged from one loader only.
    pub add_dataloader_idx: bool,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            on_step: None,
            on_epoch: None,
            prog_bar: false,
            logger: true,
            batch_size: None,
            reduce: Reduce::Mean,
            sync_dist: false,
            add_dataloader_idx: true,
        }
    }
}

impl Log {
    /// Lightning's defaults: the hook decides `on_step`/`on_epoch`; logger on, progress bar off.
    pub fn new() -> Self {
        Self::default()
    }
    /// Log the value of each step (Lightning's `on_step`).
    pub fn on_step(mut self, v: bool) -> Self {
        self.on_step = Some(v);
        self
    }
    /// Log the value reduced over the epoch (Lightning's `on_epoch`).
    pub fn on_epoch(mut self, v: bool) -> Self {
        self.on_epoch = Some(v);
        self
    }
    /// Show the value in the progress bar (Lightning's `prog_bar`; default off).
    pub fn prog_bar(mut self, v: bool) -> Self {
        self.prog_bar = v;
        self
    }
    /// Send the value to the loggers (Lightning's `logger`; default on).
    pub fn logger(mut self, v: bool) -> Self {
        self.logger = v;
        self
    }
    /// The value's weight in the epoch mean (Lightning's `batch_size`; default the batch's size).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = Some(n);
        self
    }
    /// How the epoch value is reduced (Lightning's `reduce_fx`; default the mean).
    pub fn reduce(mut self, r: Reduce) -> Self {
        self.reduce = r;
        self
    }
    /// Lightning's `sync_dist=True`: the value is reduced over the ranks as it is logged
    /// (see [`Log::sync_dist`](Log#structfield.sync_dist)); a no-op in one process.
    ///
    /// ```
    /// # use lightning::{Log, TrainerState};
    /// # fn on_validation_epoch_end(trainer: &mut TrainerState, r2: f64) -> lightning::Result<()> {
    /// trainer.log_with("val_r2", r2, Log::new().sync_dist(true))?; // the mean over the ranks
    /// # Ok(()) }
    /// ```
    pub fn sync_dist(mut self, v: bool) -> Self {
        self.sync_dist = v;
        self
    }
    /// Lightning's `add_dataloader_idx`: with several evaluation loaders, a value logged in a
    /// step or batch hook goes under `name/dataloader_idx_N` (default on), so each loader
    /// gets its own epoch mean. Off, the name stays as given and only one loader may log it,
    /// as in Lightning.
    ///
    /// ```
    /// # use lightning::{Log, TrainerState};
    /// # fn validation_step(trainer: &mut TrainerState, loss: f64, dataloader_idx: usize) -> lightning::Result<()> {
    /// let name = if dataloader_idx == 0 { "val_loss" } else { "ood_loss" };
    /// trainer.log_with(name, loss, Log::new().add_dataloader_idx(false))?;
    /// # Ok(()) }
    /// ```
    pub fn add_dataloader_idx(mut self, v: bool) -> Self {
        self.add_dataloader_idx = v;
        self
    }
}

/// What a hook may log, set by the generated hook dispatcher (reference §4.10).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogScope {
    /// `training_step`, training batch hooks, optimization hooks: default per step.
    TrainStep,
    /// Validation and test steps and batch hooks: default per epoch.
    EvalStep,
    /// Loop and epoch start/end hooks: per epoch only.
    EpochOnly,
    /// Lightning raises "You can't `self.log()` inside `<hook>`".
    Forbidden,
}

/// A logged value: a host number, or a tensor not yet read back.
#[derive(Clone, Debug)]
pub enum MetricValue {
    /// A number.
    Host(f64),
    /// A one-element tensor, read when the value is needed.
    Device(Tensor),
}

/// A value `TrainerState::log` accepts: a number or a one-element tensor.
pub trait LogValue {
    /// The value to log; an error for a tensor of more than one element.
    fn into_metric(self) -> Result<MetricValue>;
}

macro_rules! host_values {
    ($($t:ty),*) => {$(
        impl LogValue for $t {
            fn into_metric(self) -> Result<MetricValue> {
                Ok(MetricValue::Host(self as f64))
            }
        }
        impl LogValue for &$t {
            fn into_metric(self) -> Result<MetricValue> {
                Ok(MetricValue::Host(*self as f64))
            }
        }
    )*};
}
host_values!(f64, f32, usize, u32, i32, i64, u64);

impl LogValue for Tensor {
    fn into_metric(self) -> Result<MetricValue> {
        if self.elem_count() != 1 {
            return Err(Error::msg(format!(
                "a logged tensor must have one element; this one has shape {:?}: reduce it first (e.g. `.mean_all()`)",
                self.dims()
            )));
        }
        // detached so the logged value holds no graph alive
        Ok(MetricValue::Device(self.detach().flatten_all()?))
    }
}

impl LogValue for &Tensor {
    fn into_metric(self) -> Result<MetricValue> {
        self.clone().into_metric()
    }
}

/// Receives logged metrics and hyperparameters (Lightning's `Logger`).
///
/// The trainer calls a logger at most once per `log_every_n_steps` steps and at epoch ends,
/// never per step, so loggers are kept as trait objects.
pub trait Logger: Send + std::fmt::Debug {
    /// A row of metrics at `step` (every value already on the host).
    fn log_metrics(&mut self, metrics: &[(String, f64)], step: usize) -> Result<()>;
    /// The run's hyperparameters, once at fit/validate/test start.
    fn log_hyperparams(&mut self, params: &serde_json::Value) -> Result<()>;
    /// Writes what is buffered.
    fn save(&mut self) -> Result<()>;
    /// The end of a run: `status` is `"success"` or `"failed"`.
    fn finalize(&mut self, status: &str) -> Result<()> {
        let _ = status;
        self.save()
    }
    /// The directory this logger writes to, once known.
    fn log_dir(&self) -> Option<PathBuf> {
        None
    }
    /// Fixes the run's directory (its version) at the start of `fit`, so that checkpoints
    /// can go beside the logs (`<log_dir>/checkpoints`, as Lightning's `ModelCheckpoint`).
    fn prepare(&mut self) -> Result<()> {
        Ok(())
    }
    /// The run's version number (shown as `v_num` in the progress bar).
    fn version(&self) -> Option<usize> {
        None
    }
    /// For a logger without a directory of its own (MLflow over HTTP): where the run's
    /// checkpoints go under `default_root_dir`, as Lightning's `<name>/<version>`.
    fn run_subdir(&self) -> Option<PathBuf> {
        None
    }
    /// After `ModelCheckpoint` has written checkpoints (and deleted those top-k dropped).
    fn after_save_checkpoint(&mut self, checkpoints: &SavedCheckpoints) -> Result<()> {
        let _ = checkpoints;
        Ok(())
    }
}
