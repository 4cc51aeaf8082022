//! The trainer: a builder of Lightning's flags, and `fit`, `validate`, `test`, `predict`.
//!
//! The trainer is generic over the module and the callback tuple, so every hook call
//! is a static call the compiler can inline; hooks nothing implements vanish.

mod ckpt_path;
mod config;
mod config_serde;
pub mod data_arg;
pub(crate) mod dispatch;
pub(crate) mod estimate;
pub(crate) mod foreign_params;
pub(crate) mod hooks;
pub(crate) mod interrupt;
pub(crate) mod logs;
mod malloc;
pub(crate) mod requeue;
mod results;
pub(crate) mod resume;
mod run;
pub(crate) mod save;
pub(crate) mod source;
pub(crate) mod stop;
mod strategy;
pub(crate) mod summary;
mod threads;
pub(crate) mod unused;

use std::borrow::BorrowMut;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use candle_core::Device;

pub use crate::loops::closure::OptimizerClosure;
pub use crate::loops::manual::ManualOptimization;
pub use ckpt_path::CkptPath;
pub use config::{Limit, TrainerConfig};
pub use data_arg::{Data, EvalData, FitData};
pub use stop::StopReason;
pub use strategy::Strategy;
#[cfg(feature = "mpi")]
pub(crate) use threads::share_cores;
pub use threads::SMALL_MODEL_PARAMS;

use crate::contract::module::requirements::*;
use crate::dist::Collective;
use crate::loops::evaluation::{EvaluationLoop, Test, Validation};
use crate::loops::RunCtx;
use crate::{
    Accelerator, CallbackList, CallbackTuple, Chain, DataModule, GradientClipAlgorithm, LightningModule, Loader,
    Loaders, Logger, ModelCheckpoint, NoProfiler, Profiler, Profiling, ProgressBar, Result, Stage,
};

/// Metrics by name, as `callback_metrics` holds them at the end of a run.
pub type Metrics = BTreeMap<String, f64>;

/// What `fit` returns.
#[derive(Debug, Clone)]
pub struct FitOutcome {
    /// `callback_metrics` at the end.
    pub metrics: Metrics,
    /// Optimizer steps taken in total.
    pub global_step: usize,
    /// Epochs completed.
    pub current_epoch: usize,
    /// The last checkpoint written, if any.
    pub last_checkpoint: Option<PathBuf>,
    /// Why training stopped (`fit` prints it, as Lightning does).
    pub stopped: StopReason,
}

/// Builds a [`Trainer`]; every method is a Lightning `Trainer(...)` flag.
#[derive(Debug)]
#[must_use]
pub struct TrainerBuilder<C = (), P = NoProfiler> {
    config: TrainerConfig,
    callbacks: C,
    profiler: P,
    loggers: Vec<Box<dyn Logger>>,
    checkpoint: Option<ModelCheckpoint>,
    world: Option<Arc<dyn Collective>>,
    /// The built trainer's first `ckpt_path` (set by `lightning::cli`).
    pub(crate) resume: Option<CkptPath>,
    /// Files written into the first run's log directory (the CLI's `config.yaml`).
    pub(crate) log_files: Vec<(String, String)>,
}

macro_rules! flags {
    ($($(#[$doc:meta])* $name:ident: $ty:ty => |$c:ident, $v:ident| $set:expr;)*) => {$(
        $(#[$doc])*
        pub fn $name(mut self, $v: $ty) -> Self {
            let $c = &mut self.config;
            $set;
            self
        }
    )*};
}

impl<C, P> TrainerBuilder<C, P> {
    /// Every flag at once, from a [`TrainerConfig`] (the `trainer:` section of a
    /// `LightningCli` config); flags set after it change it further.
    ///
    /// ```
    /// let config = lightning::TrainerConfig { max_epochs: Some(2), ..Default::default() };
    /// let trainer = lightning::Trainer::builder().config(config).enable_checkpointing(false).build()?;
    /// assert_eq!(trainer.config().max_epochs, Some(2));
    /// # Ok::<(), lightning::Error>(())
    /// ```
    pub fn config(mut self, config: TrainerConfig) -> Self {
        self.config = config;
        self
    }

    flags! {
        /// Stop after this many epochs (default 1000 when `max_steps` is unset too).
        max_epochs: usize => |c, v| c.max_epochs = Some(v);
        /// Stop after this many optimizer steps.
        max_steps: usize => |c, v| c.max_steps = Some(v);
        /// Run at least this many epochs: earlier stop requests wait (Lightning's `min_epochs`).
        min_epochs: usize => |c, v| c.min_epochs = Some(v);
        /// Take at least this many optimizer steps before a stop request is honoured.
        min_steps: usize => |c, v| c.min_steps = Some(v);
        /// Training batches per epoch: a fraction (`0.25`) or a count (`10`).
        limit_train_batches: impl Into<Limit> => |c, v| c.limit_train_batches = v.into();
        /// Validation batches per run; 0 disables validation.
        limit_val_batches: impl Into<Limit> => |c, v| c.limit_val_batches = v.into();
        /// Test batches.
        limit_test_batches: impl Into<Limit> => |c, v| c.limit_test_batches = v.into();
        /// Predict batches.
        limit_predict_batches: impl Into<Limit> => |c, v| c.limit_predict_batches = v.into();
        /// Validation batches run before training (default 2; `usize::MAX`: all; 0: off).
        num_sanity_val_steps: usize => |c, v| c.num_sanity_val_steps = v;
        /// Validate every fraction of an epoch (`0.5`) or every N training batches (`100`).
        val_check_interval: impl Into<Limit> => |c, v| c.val_check_interval = v.into();
        /// Validate every N epochs; `None` counts `val_check_interval` batches across epochs.
        check_val_every_n_epoch: Option<usize> => |c, v| c.check_val_every_n_epoch = v;
        /// Fetch the loaders again from the module's or datamodule's hooks every N epochs
        /// (0: never); loaders given to `fit` are kept.
        reload_dataloaders_every_n_epochs: usize => |c, v| c.reload_dataloaders_every_n_epochs = v;
        /// Step the optimizer every k batches, with the loss divided by k.
        accumulate_grad_batches: usize => |c, v| c.accumulate_grad_batches = v;
        /// Clip gradients to this value (by norm unless `gradient_clip_algorithm` says otherwise).
        gradient_clip_val: f64 => |c, v| c.gradient_clip_val = Some(v);
        /// `Norm` (default) or `Value`.
        gradient_clip_algorithm: GradientClipAlgorithm => |c, v| c.gradient_clip_algorithm = v;
        /// Seeds the device's generator where candle can (CUDA, Metal). candle cannot seed
        /// its CPU generator: build layers with `lightning::seeded_var_builder` and shuffle
        /// loaders with `shuffle(seed)` for runs that repeat exactly. It also seeds
        /// `lightning::nn`'s dropout masks (`nn::Dropout`, attention dropout) at the start
        /// of each fit; without it they are drawn from a fresh seed.
        seed: u64 => |c, v| c.seed = Some(v);
        /// The device: `Auto` (default), `Cpu`, `Cuda(i)`, `Metal(i)`. Under DDP, each rank
        /// takes the GPU of its node-local rank.
        accelerator: Accelerator => |c, v| c.accelerator = v;
        /// `Auto` (default: DDP when several processes train), `SingleDevice` or `Ddp`
        /// (Lightning's `strategy`; `"ddp".parse()` works).
        strategy: Strategy => |c, v| c.strategy = v;
        /// Devices (one process each) per node. Under a launcher (`mpirun`, torchrun) it must
        /// match the processes it started (unset: whatever it started). Without one, `N > 1`
        /// makes this program its own launcher, as Lightning does: `build()` runs the program
        /// again as N ranks (`mpirun -np N` on CPUs, feature `mpi`; N copies meeting over
        /// NCCL on GPUs, feature `nccl`), waits for them, and exits with their outcome; the
        /// ranks pass `build()` and train. Code before `build()` runs in every process.
        devices: usize => |c, v| c.devices = Some(v);
        /// Nodes of the job (Lightning's `num_nodes`); each is started by a launcher.
        num_nodes: usize => |c, v| c.num_nodes = v;
        /// Lightning's `SLURMEnvironment(auto_requeue=True)`: when SIGUSR1 (SLURM's warning
        /// before the time limit, `sbatch --signal=USR1@90`) stops a `fit`, after
        /// `on_exception` has saved (`OnExceptionCheckpoint`), rank 0 runs
        /// `scontrol requeue $SLURM_JOB_ID` (`<array job>_<task>` in a job array). SIGTERM
        /// (`scancel`) never requeues. Outside SLURM it warns and does nothing. Default off.
        auto_requeue: bool => |c, v| c.auto_requeue = v;
        /// CPU threads for candle's kernels, for the whole process. Default: one thread for
        /// models of up to `SMALL_MODEL_PARAMS` parameters (measured fastest), else every core.
        threads: usize => |c, v| c.threads = Some(v);
        /// `F64True`, `F32True`, `F16True`, `Bf16True`: parameters must have that dtype and
        /// inputs are cast to it; `Bf16Mixed`: bf16 module, f32 master weights in the
        /// optimizer; `F16Mixed`: the same in f16, with dynamic loss scaling
        /// ([`crate::GradScaler`]). Unset, the module trains in the dtype it was built with.
        /// Lightning's strings parse: `"bf16-mixed".parse()`, `"16-mixed".parse()`.
        precision: crate::Precision => |c, v| c.precision = Some(v);
        /// The loss scaler's settings under `precision(Precision::F16Mixed)` (torch's
        /// `GradScaler` arguments; default 2^16, 2.0, 0.5, 2000). Under any other precision
        /// `build()` refuses it, since it would do nothing.
        grad_scaler: crate::GradScaler => |c, v| c.grad_scaler = Some(v);
        /// Adds a `ModelCheckpoint` that keeps the latest checkpoint, or the one given to
        /// `checkpoint(..)` (default on).
        enable_checkpointing: bool => |c, v| c.enable_checkpointing = v;
        /// Where checkpoints and logs go (default: the current directory).
        default_root_dir: impl Into<PathBuf> => |c, v| c.default_root_dir = v.into();
        /// Send logged step values to the loggers every N optimizer steps (default 50).
        log_every_n_steps: usize => |c, v| c.log_every_n_steps = v.max(1);
        /// Without a `logger(..)`, log to a `CsvLogger` under `default_root_dir` (default on;
        /// Lightning's `logger=False` is `enable_logger(false)`).
        enable_logger: bool => |c, v| c.enable_logger = v;
        /// Show the progress bar (default on; plain lines when stdout is not a terminal).
        enable_progress_bar: bool => |c, v| c.enable_progress_bar = v;
        /// Print the model summary at fit start (default on).
        enable_model_summary: bool => |c, v| c.enable_model_summary = v;
        /// Stop training after this much wall time (Lightning's `max_time`); a stop is a
        /// normal end of `fit`, with the end hooks and the final checkpoint.
        max_time: std::time::Duration => |c, v| c.max_time = Some(v);
        /// Check every training loss: NaN or infinity is `Error::NonFiniteLoss` with the epoch and step.
        detect_anomaly: bool => |c, v| c.detect_anomaly = v;
        /// Let parameters the optimizer holds go without a gradient (default off: the first
        /// optimizer step of a fit is `Error::UnusedParameters` naming them). Turn it on for
        /// models that skip branches on purpose, as DDP's `find_unused_parameters`.
        allow_unused_parameters: bool => |c, v| c.allow_unused_parameters = v;
        /// Train (and validate) on the same first `n` batches every epoch, in the same order.
        overfit_batches: usize => |c, v| {
            c.overfit_batches = Some(v);
            c.limit_train_batches = Limit::Batches(v);
            c.limit_val_batches = Limit::Batches(v);
        };
        /// A smoke test (Lightning's `fast_dev_run`): `n` batches of training, validation and
        /// test, one epoch, no sanity check, no loggers, no checkpoints.
        fast_dev_run: usize => |c, v| {
            c.max_epochs = Some(1);
            c.max_steps = Some(v);
            c.limit_train_batches = Limit::Batches(v);
            c.limit_val_batches = Limit::Batches(v);
            c.limit_test_batches = Limit::Batches(v);
            c.limit_predict_batches = Limit::Batches(v);
            c.num_sanity_val_steps = 0;
            c.val_check_interval = Limit::Fraction(1.0);
            c.enable_checkpointing = false;
            c.enable_logger = false;
        };
    }

    /// Adds a logger (`CsvLogger`, `TensorBoardLogger` or your own); with one given, no
    /// default `CsvLogger` is added.
    pub fn logger(mut self, logger: impl Logger + 'static) -> Self {
        self.loggers.push(Box::new(logger));
        self
    }

    /// The trainer's `ModelCheckpoint`, configured: it runs after every other callback, as
    /// Lightning places checkpoint callbacks last. Read it back with `checkpoint_callback()`.
    pub fn checkpoint(mut self, ck: ModelCheckpoint) -> Self {
        self.checkpoint = Some(ck);
        self
    }

    /// Lightning's `profiler=`: times every hook and loop region and reports at the end of
    /// each stage ([`SimpleProfiler`](crate::profiler::SimpleProfiler),
    /// [`AdvancedProfiler`](crate::profiler::AdvancedProfiler), or your own
    /// [`Profiler`]). Part of the trainer's type: without one, nothing is timed or compiled
    /// in. Read it back with [`Trainer::profiler`].
    pub fn profiler<P2: Profiler>(self, profiler: P2) -> TrainerBuilder<C, P2> {
        TrainerBuilder {
            config: self.config,
            callbacks: self.callbacks,
            profiler,
            loggers: self.loggers,
            checkpoint: self.checkpoint,
            world: self.world,
            resume: self.resume,
            log_files: self.log_files,
        }
    }

    /// The callbacks, as a tuple, called in tuple order: `.callbacks((A, B))`.
    pub fn callbacks<C2: CallbackTuple>(self, callbacks: C2) -> TrainerBuilder<C2::List, P> {
        TrainerBuilder {
            config: self.config,
            callbacks: callbacks.into_list(),
            profiler: self.profiler,
            loggers: self.loggers,
            checkpoint: self.checkpoint,
            world: self.world,
            resume: self.resume,
            log_files: self.log_files,
        }
    }

    /// Data-parallel training over `world` (Lightning's `strategy="ddp"`): rank 0's parameters
    /// are broadcast at the start of `fit`, every `DataLoader`, `MapLoader` and `StreamLoader`
    /// yields its rank's share of each epoch (torch's `DistributedSampler`), gradients are
    /// averaged over the ranks after backward (once per accumulation window), epoch metrics
    /// logged in steps (mean, sum, max, min) are reduced over the ranks, and values logged in
    /// epoch-end hooks when asked (`Log::sync_dist`), a stop on any rank stops all, and only rank 0 logs, draws the progress bar and writes
    /// checkpoints (every rank knows their paths). A rank whose run fails prints its error and ends the whole job
    /// (`Collective::abort`), so the others don't hang.
    ///
    /// ```no_run
    /// # #[cfg(feature = "mpi")]
    /// # fn demo() -> lightning::Result<()> {
    /// // under `mpirun -np 2 ./my-trainer`
    /// let world = lightning::dist::Mpi::init()?;
    /// let trainer = lightning::Trainer::builder().ddp(world).max_epochs(3).build()?;
    /// # Ok(()) }
    /// ```
    pub fn ddp(mut self, world: Arc<dyn Collective>) -> Self {
        self.world = Some(world);
        self
    }

    /// Checks the flags, joins the data-parallel job if there is one (see `devices`), and
    /// opens the device.
    pub fn build(self) -> Result<Trainer<C, P>> {
        self.config.validate()?;
        let (world, device) = strategy::resolve(&self.config, self.world)?;
        if let Some(w) = &world {
            crate::dist::set_global_rank(w.rank());
        }
        if let Some(seed) = self.config.seed {
            // candle cannot seed its CPU generator; the other backends can.
            if !device.is_cpu() {
                device.set_seed(seed)?;
            }
        }
        let mut loggers = if self.config.enable_logger { self.loggers } else { Vec::new() };
        if loggers.is_empty() && self.config.enable_logger {
            loggers.push(Box::new(crate::CsvLogger::new(self.config.default_root_dir.clone())));
        }
        // without a dirpath it saves beside the first logger's files, as Lightning's
        let checkpoint = self.config.enable_checkpointing.then(|| self.checkpoint.unwrap_or_default());
        Ok(Trainer {
            config: self.config,
            callbacks: self.callbacks,
            profiler: self.profiler,
            device,
            resume: self.resume,
            return_predictions: None,
            loggers,
            checkpoint,
            world,
            last_run: None,
            log_files: self.log_files,
            tuning: false,
        })
    }
}

/// PyTorch Lightning's `Trainer`, specialised at compile time to its callbacks `C`.
///
/// See [`LightningModule`] for a complete example.
#[derive(Debug)]
pub struct Trainer<C = (), P = NoProfiler> {
    config: TrainerConfig,
    callbacks: C,
    /// Lightning's `profiler`; [`NoProfiler`] compiles every region away.
    profiler: P,
    device: Device,
    /// The next entry point's `ckpt_path`.
    resume: Option<CkptPath>,
    /// Whether the next `predict` returns its predictions (`None`: yes).
    return_predictions: Option<bool>,
    loggers: Vec<Box<dyn Logger>>,
    checkpoint: Option<ModelCheckpoint>,
    /// The process group under DDP.
    world: Option<Arc<dyn Collective>>,
    /// (epoch, global_step) at the end of the last `fit`, for `save_checkpoint`.
    last_run: Option<(usize, usize)>,
    /// Written (rank 0) into the log directory of the first `fit`, `validate` or `test`.
    log_files: Vec<(String, String)>,
    /// A trainer the tuner made for its runs (see [`Trainer::for_tuning`]).
    tuning: bool,
}

impl Trainer<()> {
    /// A builder with Lightning's defaults and no callbacks.
    pub fn builder() -> TrainerBuilder<()> {
        TrainerBuilder {
            config: TrainerConfig::default(),
            callbacks: (),
            profiler: NoProfiler,
            loggers: Vec::new(),
            checkpoint: None,
            world: None,
            resume: None,
            log_files: Vec::new(),
        }
    }
}

/// The trainer's callbacks, the module's `configure_callbacks`, then the defaults: the
/// progress bar and the checkpoint callback (last, as Lightning orders it).
type RunCallbacks<'a, C, M, P> = Chain<
    'a,
    Profiling<'a, P>,
    Chain<
        'a,
        C,
        Chain<
            'a,
            Option<<M as LightningModule>::Callbacks>,
            Chain<'a, Option<(ProgressBar,)>, Option<(ModelCheckpoint,)>>,
        >,
    >,
>;

impl<C, P: Profiler> Trainer<C, P> {
    /// The profiler (Lightning's `trainer.profiler`): what it recorded in the running
    /// stage, and its last report.
    pub fn profiler(&self) -> &P {
        &self.profiler
    }

    /// A trainer for the tuner's runs (Lightning swaps the trainer's callbacks and loggers for
    /// these runs): these flags, changed by `adjust`, on the same device and process group,
    /// with `callbacks` alone. No loggers, checkpoints, progress bar, summary, sanity check
    /// or validation; the module's `configure_callbacks` and LR scheduler are left out, and
    /// the stop reason is not printed.
    pub(crate) fn for_tuning<CB>(&self, callbacks: CB, adjust: impl FnOnce(&mut TrainerConfig)) -> Trainer<CB> {
        let mut config = self.config.clone();
        config.enable_checkpointing = false;
        config.enable_logger = false;
        config.enable_progress_bar = false;
        config.enable_model_summary = false;
        config.num_sanity_val_steps = 0;
        config.limit_val_batches = Limit::Batches(0);
        (config.min_epochs, config.min_steps, config.max_epochs) = (None, None, None);
        adjust(&mut config);
        Trainer {
            config,
            callbacks,
            profiler: NoProfiler,
            device: self.device.clone(),
            resume: None,
            return_predictions: None,
            loggers: Vec::new(),
            checkpoint: None,
            world: self.world.clone(),
            last_run: None,
            log_files: Vec::new(),
            tuning: true,
        }
    }

    /// The flags.
    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    /// The device batches and parameters go to; build the module's variables on it.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// This process's rank in a data-parallel job (0 otherwise): Lightning's
    /// `trainer.global_rank`, for rank-zero-only code around `fit`.
    pub fn global_rank(&self) -> usize {
        self.world.as_ref().map_or(0, |w| w.rank())
    }

    /// Processes training together (1 without DDP).
    pub fn world_size(&self) -> usize {
        self.world.as_ref().map_or(1, |w| w.world_size())
    }

    /// Whether this is rank 0, the one that logs, prints and saves.
    pub fn is_global_zero(&self) -> bool {
        self.global_rank() == 0
    }

    /// The callbacks, to read them back after a run: `trainer.callbacks().0` is the first
    /// (Lightning's `trainer.callbacks[0]`).
    pub fn callbacks(&self) -> &C {
        &self.callbacks
    }

    /// The callbacks, to change them between runs.
    pub fn callbacks_mut(&mut self) -> &mut C {
        &mut self.callbacks
    }

    /// The trainer's `ModelCheckpoint` (`best_model_path`, `best_model_score`, ...), if enabled.
    pub fn checkpoint_callback(&self) -> Option<&ModelCheckpoint> {
        self.checkpoint.as_ref()
    }

    /// Writes a checkpoint of `model` now (Lightning's `trainer.save_checkpoint`), with the
    /// epoch and step of the last `fit`. The optimizer went with that run, so the checkpoint
    /// is weights-only: for `load_from_checkpoint`, not for resuming. Under DDP every rank
    /// calls it; rank 0 writes.
    pub fn save_checkpoint<M: LightningModule>(&self, model: &M, path: impl AsRef<std::path::Path>) -> Result<()> {
        let (epoch, global_step) = self.last_run.unwrap_or((0, 0));
        let ck = crate::Checkpoint {
            epoch,
            global_step,
            epoch_complete: true,
            state_dict: crate::checkpoint_state(model.parameters()),
            hyper_parameters: model.hyperparameters()?,
            weights_only: true,
            ..Default::default()
        };
        // under DDP rank 0 writes, and every rank returns once the file is there
        if self.is_global_zero() {
            ck.save(path.as_ref())?;
        }
        match &self.world {
            Some(world) if world.world_size() > 1 => world.barrier(),
            _ => Ok(()),
        }
    }

    /// The checkpoint the next entry point starts from (Lightning's `ckpt_path`): `fit`
    /// resumes from it (with a larger `max_epochs` it goes on training), `validate`, `test`
    /// and `predict` load its weights into the module first. `"best"` is the trainer's
    /// `ModelCheckpoint`'s best, `"last"` its last save (or the newest `last.ckpt` under
    /// `default_root_dir`), anything else a path; see [`CkptPath`]. A missing best or last
    /// is an error of that entry point.
    ///
    /// ```no_run
    /// # use lightning::prelude::*;
    /// # fn demo<M>(trainer: &mut Trainer, model: &mut M, test: DataLoader) -> lightning::Result<()>
    /// # where M: LightningModule<Batch = (candle_core::Tensor, candle_core::Tensor)> + lightning::requirements::HasTestStep {
    /// // Lightning: trainer.test(model, test_loader, ckpt_path="best")
    /// trainer.ckpt_path("best").test(model, Data::loader(test))?;
    /// # Ok(()) }
    /// ```
    pub fn ckpt_path(&mut self, path: impl Into<CkptPath>) -> &mut Self {
        self.resume = Some(path.into());
        self
    }

    /// Whether the next `predict` returns its predictions (Lightning's
    /// `predict(.., return_predictions=False)`; default `true`). With `false` the trainer
    /// keeps none and `predict` returns an empty `Vec`: for outputs larger than memory, which
    /// a [`BasePredictionWriter`](crate::callbacks::BasePredictionWriter) writes as they come
    /// (callbacks' `on_predict_batch_end` still gets every prediction). Like `ckpt_path`, it
    /// applies to the next `predict` only.
    ///
    /// ```no_run
    /// # use lightning::prelude::*;
    /// # fn demo<M, C>(trainer: &mut Trainer<C>, model: &mut M, inputs: DataLoader) -> lightning::Result<()>
    /// # where M: LightningModule<Batch = (candle_core::Tensor, candle_core::Tensor)> + lightning::requirements::HasPredictStep,
    /// #       C: lightning::CallbackList<M> {
    /// // Lightning: trainer.predict(model, loader, return_predictions=False)
    /// let none = trainer.return_predictions(false).predict(model, Data::loader(inputs))?;
    /// assert!(none.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn return_predictions(&mut self, keep: bool) -> &mut Self {
        self.return_predictions = Some(keep);
        self
    }

    /// Resumes the next `fit` from this checkpoint: [`Trainer::ckpt_path`].
    pub fn resume_from(&mut self, path: impl Into<CkptPath>) -> &mut Self {
        self.ckpt_path(path)
    }

    /// The checkpoint `ckpt_path` named, resolved now, once per entry point.
    fn take_ckpt_path(&mut self) -> Result<Option<PathBuf>> {
        let Some(c) = self.resume.take() else { return Ok(None) };
        let path = c.resolve(self.checkpoint.as_ref(), &self.config.default_root_dir)?;
        results::restoring(&path);
        Ok(Some(path))
    }

    /// `validate`, `test` and `predict` with a `ckpt_path`: its weights go into the module.
    fn load_ckpt_path<M: LightningModule>(&mut self, model: &mut M) -> Result<()> {
        if let Some(path) = self.take_ckpt_path()? {
            crate::load_from_checkpoint(model, &path)?;
            results::loaded_weights(&path);
        }
        Ok(())
    }

    /// Trains the module (Lightning's `fit`) on `data`: `Data::module()` (its
    /// `train_dataloader` and `val_dataloader`), `Data::loader(train)` (validation from the
    /// module's `val_dataloader` if it has one), `Data::loader(train).val(val)` or
    /// `Data::datamodule(&mut dm)`. The module needs `training_step` and
    /// `configure_optimizers`, and `train_dataloader` with `Data::module()`; see [`Data`].
    ///
    /// ```
    /// # use lightning::prelude::*;
    /// # use candle_core::{DType, Device, Tensor};
    /// # use candle_nn::{Linear, Module, VarBuilder, VarMap};
    /// #[lightning_module]
    /// struct Model { vars: VarMap, layer: Linear, data: DataLoader }
    ///
    /// #[lightning_module]
    /// impl Model {
    ///     fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
    ///         self.layer.forward(&batch.0)?.sub(&batch.1)?.sqr()?.mean_all()
    ///     }
    ///     fn configure_optimizers(&mut self) -> lightning::Result<AdamW> {
    ///         AdamW::with_lr(&self.vars, 1e-2)
    ///     }
    ///     fn train_dataloader(&mut self) -> lightning::Result<DataLoader> {
    ///         Ok(self.data.clone())
    ///     }
    /// }
    ///
    /// # fn main() -> lightning::Result<()> {
    /// # let vars = VarMap::new();
    /// # let layer = candle_nn::linear(3, 1, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu))?;
    /// let x = Tensor::randn(0f32, 1., (32, 3), &Device::Cpu)?;
    /// let data = DataLoader::new(x.clone(), x.sum_keepdim(1)?, 8)?;
    /// let mut model = Model { vars, layer, data: data.clone() };
    /// let mut trainer = Trainer::builder().max_epochs(1).enable_checkpointing(false).build()?;
    /// assert_eq!(trainer.fit(&mut model, Data::module())?.global_step, 4);
    /// let mut trainer = Trainer::builder().max_epochs(1).enable_checkpointing(false).build()?;
    /// assert_eq!(trainer.fit(&mut model, Data::loader(data))?.global_step, 4);
    /// # Ok(()) }
    /// ```
    pub fn fit<M, D>(&mut self, model: &mut M, data: D) -> Result<FitOutcome>
    where
        M: LightningModule + HasTrainingStep + HasConfigureOptimizers,
        C: CallbackList<M>,
        D: FitData<M>,
    {
        let (mut dm, train, val) = data.into_parts();
        self.fit_inner(model, dm.borrow_mut(), train, val)
    }

    pub(crate) fn fit_inner<M, DM, T, V>(
        &mut self,
        model: &mut M,
        dm: &mut DM,
        mut train: Option<T>,
        val: Option<V>,
    ) -> Result<FitOutcome>
    where
        M: LightningModule,
        C: CallbackList<M>,
        DM: DataModule<Batch = M::Batch>,
        T: Loader<Batch = M::Batch>,
        V: Loaders<Batch = M::Batch>,
    {
        let resume = self.take_ckpt_path()?;
        if C::__TUNES {
            // the finder callbacks' sweeps, on this fit's data, before it starts
            let base = self.for_tuning((), |_| {});
            let mut fit = crate::tuner::FitTuning::new(&base, model, dm, train.as_mut(), resume.is_some());
            self.callbacks.__tune(&mut fit)?;
        }
        let (stopped, state) = self.run(Stage::Fit, model, dm, |cfg, state, model, cbs, dm| {
            crate::loops::fit_loop::run(RunCtx { cfg, state, model, cbs, dm }, train, val, resume.as_deref())
        })?;
        self.last_run = Some((state.current_epoch, state.global_step));
        Ok(FitOutcome {
            metrics: state.callback_metrics()?,
            global_step: state.global_step,
            current_epoch: state.current_epoch,
            last_checkpoint: state.last_saved.clone(),
            stopped,
        })
    }

    /// Runs the validation loop (Lightning's `validate`) on `data`: `Data::module()` (its
    /// `val_dataloader`), `Data::loader(loader)` or `Data::datamodule(&mut dm)`. The module
    /// needs `validation_step`, and `val_dataloader` with `Data::module()`; see [`Data`].
    ///
    /// ```no_run
    /// # use lightning::prelude::*;
    /// # fn demo<M>(trainer: &mut Trainer, model: &mut M, val: DataLoader) -> lightning::Result<()>
    /// # where M: LightningModule<Batch = (candle_core::Tensor, candle_core::Tensor)> + lightning::requirements::HasValidationStep {
    /// // Lightning: trainer.validate(model, val_loader)
    /// let metrics = trainer.validate(model, Data::loader(val))?;
    /// println!("{:?}", metrics.get("val_loss"));
    /// # Ok(()) }
    /// ```
    pub fn validate<M, D>(&mut self, model: &mut M, data: D) -> Result<Metrics>
    where
        M: LightningModule + HasValidationStep,
        C: CallbackList<M>,
        D: EvalData<M, data_arg::stage::Validate>,
    {
        let (mut dm, loader) = data.into_parts();
        self.validate_inner(model, dm.borrow_mut(), loader)
    }

    fn validate_inner<M, DM, L>(&mut self, model: &mut M, dm: &mut DM, loader: Option<L>) -> Result<Metrics>
    where
        M: LightningModule,
        C: CallbackList<M>,
        DM: DataModule<Batch = M::Batch>,
        L: Loaders<Batch = M::Batch>,
    {
        self.load_ckpt_path(model)?;
        let ((), state) = self.run(Stage::Validate, model, dm, |cfg, state, model, cbs, dm| {
            EvaluationLoop::<Validation>::run_stage(RunCtx { cfg, state, model, cbs, dm }, loader)
        })?;
        let metrics = state.callback_metrics()?;
        results::print(Stage::Validate, &metrics, state.num_eval_loaders);
        Ok(metrics)
    }

    /// Runs the test loop (Lightning's `test`) on `data`: `Data::module()` (its
    /// `test_dataloader`), `Data::loader(loader)` or `Data::datamodule(&mut dm)`. The module
    /// needs `test_step`, and `test_dataloader` with `Data::module()`; see [`Data`].
    ///
    /// ```no_run
    /// # use lightning::prelude::*;
    /// # fn demo<M>(trainer: &mut Trainer, model: &mut M, test: DataLoader) -> lightning::Result<()>
    /// # where M: LightningModule<Batch = (candle_core::Tensor, candle_core::Tensor)> + lightning::requirements::HasTestStep {
    /// // Lightning: trainer.test(model, test_loader)
    /// let metrics = trainer.test(model, Data::loader(test))?;
    /// println!("{:?}", metrics.get("test_loss"));
    /// # Ok(()) }
    /// ```
    pub fn test<M, D>(&mut self, model: &mut M, data: D) -> Result<Metrics>
    where
        M: LightningModule + HasTestStep,
        C: CallbackList<M>,
        D: EvalData<M, data_arg::stage::Test>,
    {
        let (mut dm, loader) = data.into_parts();
        self.test_inner(model, dm.borrow_mut(), loader)
    }

    fn test_inner<M, DM, L>(&mut self, model: &mut M, dm: &mut DM, loader: Option<L>) -> Result<Metrics>
    where
        M: LightningModule,
        C: CallbackList<M>,
        DM: DataModule<Batch = M::Batch>,
        L: Loaders<Batch = M::Batch>,
    {
        self.load_ckpt_path(model)?;
        let ((), state) = self.run(Stage::Test, model, dm, |cfg, state, model, cbs, dm| {
            EvaluationLoop::<Test>::run_stage(RunCtx { cfg, state, model, cbs, dm }, loader)
        })?;
        let metrics = state.callback_metrics()?;
        results::print(Stage::Test, &metrics, state.num_eval_loaders);
        Ok(metrics)
    }

    /// Runs `predict_step` over `data` and returns the results (Lightning's `predict`):
    /// `Data::module()` (its `predict_dataloader`), `Data::loader(loader)` or
    /// `Data::datamodule(&mut dm)`. The module needs `predict_step`, and
    /// `predict_dataloader` with `Data::module()`; see [`Data`]. After
    /// [`Trainer::return_predictions`]`(false)` it keeps none and returns an empty `Vec`.
    ///
    /// ```no_run
    /// # use lightning::prelude::*;
    /// # fn demo<M>(trainer: &mut Trainer, model: &mut M, inputs: DataLoader) -> lightning::Result<()>
    /// # where M: LightningModule<Batch = (candle_core::Tensor, candle_core::Tensor)> + lightning::requirements::HasPredictStep {
    /// // Lightning: trainer.predict(model, loader)
    /// let predictions: Vec<M::Prediction> = trainer.predict(model, Data::loader(inputs))?;
    /// # Ok(()) }
    /// ```
    pub fn predict<M, D>(&mut self, model: &mut M, data: D) -> Result<Vec<M::Prediction>>
    where
        M: LightningModule + HasPredictStep,
        C: CallbackList<M>,
        D: EvalData<M, data_arg::stage::Predict>,
    {
        let (mut dm, loader) = data.into_parts();
        self.predict_inner(model, dm.borrow_mut(), loader)
    }

    fn predict_inner<M, DM, L>(&mut self, model: &mut M, dm: &mut DM, loader: Option<L>) -> Result<Vec<M::Prediction>>
    where
        M: LightningModule,
        C: CallbackList<M>,
        DM: DataModule<Batch = M::Batch>,
        L: Loaders<Batch = M::Batch>,
    {
        let keep = self.return_predictions.take().unwrap_or(true);
        self.load_ckpt_path(model)?;
        let (preds, _) = self.run(Stage::Predict, model, dm, |cfg, state, model, cbs, dm| {
            crate::loops::evaluation::predict(RunCtx { cfg, state, model, cbs, dm }, loader, keep)
        })?;
        Ok(preds)
    }
}
