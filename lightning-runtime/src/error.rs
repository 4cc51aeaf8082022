//! The runtime's error type: what went wrong, and what to do about it.

use std::path::PathBuf;

use crate::trainer::dispatch::name;

/// Errors of the trainer, its hooks and its files.
///
/// `Debug` prints the same human message as `Display`, followed by any cause the message
/// does not already include (as anyhow does), because `fn main() -> lightning::Result<()>`
/// prints an error through `Debug`:
///
/// ```
/// let e = lightning::Error::in_hook("on_train_epoch_end", lightning::Error::msg("no `val_loss` logged"));
/// assert_eq!(format!("{e:?}"), "hook `on_train_epoch_end` failed: no `val_loss` logged");
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// A hook returned an error; `hook` names it.
    #[error("hook `{hook}` failed: {source}")]
    Hook {
        /// The hook's name, e.g. `"training_step"`.
        hook: &'static str,
        /// The error the hook returned.
        #[source]
        source: Box<Error>,
    },

    /// An error of the user's own, from a hook.
    #[error("{0}")]
    User(Box<dyn std::error::Error + Send + Sync + 'static>),

    /// The trainer needed a hook that the module does not implement.
    #[error("`{module}` has no `{hook}` hook: add `fn {hook}(..)` to its `#[lightning_module]` impl")]
    MissingHook {
        /// The module's type name.
        module: &'static str,
        /// The hook the trainer needed.
        hook: &'static str,
    },

    /// A Trainer flag has a value that cannot work.
    #[error("invalid trainer setting `{flag}`: {reason}")]
    Config {
        /// The setting: a Trainer flag (`max_epochs`, `val_check_interval`, ...), or the
        /// option of an optimizer or callback.
        flag: &'static str,
        /// Why the value cannot work.
        reason: String,
    },

    /// `detect_anomaly` found a NaN or infinite training loss.
    #[error("the training loss is {value} at epoch {epoch}, step {step} (batch {batch_idx}): lower the learning rate, clip gradients (`gradient_clip_val`), or check the data")]
    NonFiniteLoss {
        /// The loss (its sum, read as `f64`).
        value: f64,
        /// The epoch it happened in (Lightning's `current_epoch`).
        epoch: usize,
        /// The `global_step` before this batch's optimizer step.
        step: usize,
        /// The batch's index within the epoch.
        batch_idx: usize,
    },

    /// A loss to back-propagate is not a single value (torch: "grad can be implicitly created
    /// only for scalar outputs"); candle would silently back-propagate its sum.
    #[error("the loss {from} has shape {shape:?}, not a single value: reduce it first (`.mean_all()?` or `.sum_all()?`), as torch requires (\"grad can be implicitly created only for scalar outputs\")")]
    NonScalarLoss {
        /// Where the loss came from, e.g. "returned by `training_step`".
        from: &'static str,
        /// The loss's shape.
        shape: Vec<usize>,
    },

    /// Parameters the optimizer holds got no gradient from the first backward of the fit,
    /// so they would never train (see [`crate::TrainerBuilder::allow_unused_parameters`]).
    #[error("{} trainable parameter(s) got no gradient from the first backward and would never train: {}. Either an op between them and the loss has no backward (candle-nn 0.11's fast `LayerNorm`, `RmsNorm`, `ops::layer_norm`, `ops::rms_norm` and `ops::softmax_last_dim` run through `apply_op*_no_bwd`: use candle's `ops::layer_norm_slow` and `ops::softmax`, which have gradients), or the loss never uses their branch. For a model that skips branches on purpose, set `Trainer::builder().allow_unused_parameters(true)` (DDP's `find_unused_parameters`)", names.len(), names.join(", "))]
    UnusedParameters {
        /// The parameters' names in the module's `VarMap`.
        names: Vec<String>,
    },

    /// `configure_optimizers` returned an optimizer holding variables that are not in the
    /// module's `VarMap`: checkpoints, device moves and DDP would miss them.
    #[error("{} optimizer parameter(s) are not in `{module}`'s `VarMap` ({}), so checkpoints would not save them, a device or precision change would not move them and DDP would not broadcast them: create them through a `VarBuilder` on the module's `VarMap` (`VarBuilder::from_varmap(&vars, ..)`) or add them to it (`vars.data().lock().unwrap().insert(\"name\".into(), var.clone())`); `lightning::var_map([(\"w\", &w)])` makes a `VarMap` of variables made by hand", names.len(), names.join(", "))]
    ParametersOutsideModule {
        /// The module's type name.
        module: &'static str,
        /// The outside variables, named by the optimizer.
        names: Vec<String>,
    },

    /// `log` was called from a hook where Lightning forbids logging (reference §4.10).
    #[error("you can't log `{name}` inside `{hook}`: log from the steps, the batch hooks, or the loop and epoch start/end hooks")]
    LogNotAllowed {
        /// The hook `log` was called from.
        hook: &'static str,
        /// The metric's name.
        name: String,
    },

    /// `log_metric` was called from a hook that runs every batch.
    #[error("`log_metric(\"{name}\", ..)` in `{hook}` would log a partial value each batch: update the metric in the steps and log it from an epoch-end hook (e.g. `{example}`)", example = crate::trainer::dispatch::name::ON_VALIDATION_EPOCH_END)]
    MetricLoggedPerBatch {
        /// The hook `log_metric` was called from.
        hook: &'static str,
        /// The name it was to be logged under.
        name: String,
    },

    /// The accelerator asked for was not compiled in or is not present.
    #[error("{0}")]
    Device(String),

    /// `optimizer_step` returned without running its closure, so `training_step` never ran.
    #[error(
        "`{}` returned without calling `optimizer_closure.step(self, optimizer)` (or `.call(..)`): {}, {} and the update never ran",
        name::OPTIMIZER_STEP, name::TRAINING_STEP, name::BACKWARD
    )]
    ClosureNotCalled,

    /// Two stateful callbacks share one state key.
    #[error("two stateful callbacks share the state key `{0}`: give one `#[callback(state_key = \"...\")]`")]
    DuplicateStateKey(&'static str),

    /// Training was interrupted by a signal (Ctrl-C, SIGTERM, SIGUSR1, SIGHUP) and stopped
    /// after the current batch; exit with [`Error::exit_code`] (128 + the signal's number).
    #[error("interrupted by {signal} at epoch {epoch}, step {step}")]
    Interrupted {
        /// The signal that stopped training.
        signal: crate::Signal,
        /// The epoch training stopped in (Lightning's `current_epoch`).
        epoch: usize,
        /// The `global_step` training stopped at.
        step: usize,
    },

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A file exists but its contents are not what they should be.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with its contents.
        reason: String,
    },

    /// A checkpoint does not fit the module it is loaded into.
    #[error("checkpoint {path} does not fit the module: {reason}")]
    CheckpointMismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// What does not fit (a missing tensor, a shape, ...).
        reason: String,
    },

    /// A value restored from a checkpoint is out of range or of the wrong type; `field`
    /// names it (`global_step`, `callbacks.EarlyStopping.wait_count`, ...).
    #[error("checkpoint{} field `{field}` {reason}: the checkpoint is damaged or was edited; resume from another one", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    CheckpointField {
        /// The checkpoint file, where known.
        path: Option<PathBuf>,
        /// The field's dotted path in the checkpoint.
        field: String,
        /// What is wrong with its value.
        reason: String,
    },

    /// A file of a checkpoint does not match the crc32c recorded for it when it was written.
    #[error("{path}: the file is corrupt (crc32c {found:08x}, recorded when saved {expected:08x}): resume from another checkpoint")]
    ChecksumMismatch {
        /// The corrupt file.
        path: PathBuf,
        /// The crc32c recorded when the file was written.
        expected: u32,
        /// The crc32c of the file as read now.
        found: u32,
    },

    /// No mirror could provide a file.
    #[error("could not download {file}: {}. Without network, get the IDX files elsewhere and pass `--data-dir DIR` (any directory holding them, plain or gzipped)", attempts.join("; "))]
    Download {
        /// The file's name.
        file: String,
        /// One line per mirror tried: its URL and why it failed.
        attempts: Vec<String>,
    },

    /// Data given to a loader or dataset is inconsistent.
    #[error("data: {0}")]
    Data(String),

    /// The tuner (`lr_find`, `scale_batch_size`) cannot run with these settings or this
    /// module, or found no usable value; the message says what to change.
    #[error("tuner: {0}")]
    Tuner(String),

    /// A launcher's environment variable (`RANK`, `OMPI_COMM_WORLD_SIZE`, ...) is malformed
    /// or disagrees with the others.
    #[error("environment variable {var}={value:?}: {reason}")]
    LaunchEnv {
        /// The variable's name.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The ranks of a distributed job could not meet (the NCCL id exchange).
    #[error("rendezvous at {at}: {reason}")]
    Rendezvous {
        /// The rendezvous point (a file or an address).
        at: String,
        /// What went wrong.
        reason: String,
    },

    /// A worker started by `devices(N)` failed; the launcher stopped the other workers.
    #[error(
        "rank {rank} of {world} exited with {status}; the other ranks were stopped (its own error is printed above)"
    )]
    WorkerFailed {
        /// The failed worker's global rank.
        rank: usize,
        /// The number of ranks (the world size).
        world: usize,
        /// How the worker's process exited.
        status: std::process::ExitStatus,
    },

    /// A collective operation waited longer than its timeout for the other ranks.
    #[error("rank {rank} of {world} waited {waited:?} in {op}; {}: ending the job (raise LIGHTNING_COLLECTIVE_TIMEOUT if the ranks are only slow)", if missing.is_empty() { "every rank answered the roll call, so one is stuck in another operation".to_string() } else { format!("rank(s) {} did not arrive (stuck, or dead)", missing.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")) })]
    CollectiveTimeout {
        /// The operation that timed out (all-reduce, broadcast, barrier, ...).
        op: String,
        /// The rank that waited.
        rank: usize,
        /// The number of ranks (the world size).
        world: usize,
        /// How long it waited (the collective timeout).
        waited: std::time::Duration,
        /// The ranks that did not answer the roll call; empty when all did.
        missing: Vec<usize>,
    },

    /// The MLflow tracking server is missing, unreachable, or refused a request at the start
    /// of a run (`reason` says which, and what to do).
    #[error("MLflow tracking server {uri}: {reason}")]
    Mlflow {
        /// The tracking server's URI.
        uri: String,
        /// What went wrong, and what to do.
        reason: String,
    },

    /// A metric of [`crate::metrics`] got input it can't use, or has nothing to compute.
    #[error("metric `{metric}`: {reason}")]
    Metric {
        /// The metric's name.
        metric: &'static str,
        /// What is wrong with its input or state.
        reason: String,
    },

    /// Pretrained weights whose shapes are not the module's ([`crate::finetune::load_pretrained`]);
    /// nothing was loaded.
    #[error("{}: {} tensor(s) have another shape than the module's variable they map to ({}): nothing was loaded; check the prefix map, or drop those tensors (a new head is usually left out)", path.display(), mismatches.len(), mismatches.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", "))]
    PretrainedShapes {
        /// The safetensors file.
        path: PathBuf,
        /// Each mismatch.
        mismatches: Vec<crate::finetune::ShapeMismatch>,
    },

    /// A layer of [`crate::nn`] can't run on its input or with its configuration.
    #[error(transparent)]
    Layer(#[from] crate::nn::LayerError),
}

impl Error {
    /// Wraps an error returned by a user's hook, naming the hook (once: an error that
    /// already names a hook keeps the innermost name).
    pub fn in_hook(hook: &'static str, e: impl Into<Error>) -> Self {
        match e.into() {
            e @ Error::Hook { .. } => e,
            e => Error::Hook { hook, source: Box::new(e) },
        }
    }

    /// An error with a message of the user's own.
    pub fn msg(msg: impl std::fmt::Display) -> Self {
        Error::User(msg.to_string().into())
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub(crate) fn bad_file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::BadFile { path: path.into(), reason: reason.into() }
    }

    /// `Error::NonScalarLoss` unless `loss` holds exactly one value (torch's rule: shape
    /// `()` or `(1,)`).
    pub(crate) fn check_scalar_loss(loss: &candle_core::Tensor, from: &'static str) -> Result<()> {
        if loss.elem_count() == 1 {
            Ok(())
        } else {
            Err(Error::NonScalarLoss { from, shape: loss.dims().to_vec() })
        }
    }

    pub(crate) fn config(flag: &'static str, reason: impl Into<String>) -> Self {
        Error::Config { flag, reason: reason.into() }
    }
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let message = self.to_string();
        f.write_str(&message)?;
        // Causes whose text the message already carries (`Hook`, `Io`) are not repeated.
        let mut causes = Vec::new();
        // a user's error is shown by its own message: its causes come after
        let mut source = match self {
            Error::User(e) => e.source(),
            e => std::error::Error::source(e),
        };
        while let Some(e) = source {
            let text = e.to_string();
            if !message.contains(&text) {
                causes.push(text);
            }
            source = e.source();
        }
        if !causes.is_empty() {
            f.write_str("\n\nCaused by:")?;
            for (i, c) in causes.iter().enumerate() {
                write!(f, "\n    {i}: {c}")?;
            }
        }
        Ok(())
    }
}

impl From<Box<dyn std::error::Error + Send + Sync + 'static>> for Error {
    fn from(e: Box<dyn std::error::Error + Send + Sync + 'static>) -> Self {
        Error::User(e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::User(Box::new(e))
    }
}

impl From<std::fmt::Error> for Error {
    fn from(e: std::fmt::Error) -> Self {
        Error::User(Box::new(e))
    }
}

/// `Result` with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
