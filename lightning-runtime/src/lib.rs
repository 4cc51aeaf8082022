//! Runtime of candle-lightning: the trainer loops, devices, optimizers, data and
//! checkpoints. Use it through the `lightning` facade crate.

// The macros name this crate `::lightning`, as users see it through the facade.
extern crate self as lightning;

mod atomic;
mod batch;
mod callback;
pub mod callbacks;
mod checkpoint;
mod ckpt_files;
pub mod cli;
pub mod data;
mod datamodule;
mod device;
pub mod dist;
mod either;
mod error;
mod grads;
mod hook_return;
mod init;
mod interrupt;
pub mod logging;
mod loops;
pub mod metrics;
mod module;
pub mod nn;
pub mod optim;
mod precision;
mod relocate;
mod requeue;
mod state;
mod state_read;
mod step;
mod summary;
mod trainer;

pub use batch::TransferBatch;
pub use callback::{Callback, CallbackList, CallbackTuple, Chain, IsCallback, Nested};
pub use callbacks::{
    EarlyStopping, EmaWeights, GradientAccumulationScheduler, LearningRateMonitor, ModelCheckpoint,
    OnExceptionCheckpoint, ProgressBar,
};
pub use checkpoint::{load_from_checkpoint, module_state as checkpoint_state, Checkpoint};
pub use data::{accuracy, DataLoader, Loader, NoLoader};
pub use datamodule::{DataModule, DataModuleAttribute, NoDataModule};
pub use device::Accelerator;
pub use either::Either;
pub use error::{Error, Result};
pub use grads::{GradientClipAlgorithm, Gradients};
pub use init::{seeded_var_builder, var_map};
pub use interrupt::Signal;
pub use logging::{CsvLogger, Log, LogValue, Logger, MlflowLogger, Reduce, TensorBoardLogger};
pub use module::{requirements, HasParameters, LightningModule};
pub use optim::{
    Adagrad, AdagradConfig, Adam, AdamConfig, AdamW, AdamWConfig, CosineAnnealingLr, CosineAnnealingWarmRestarts,
    ExponentialLr, Interval, LinearLr, LrScheduler, MultiStepLr, NoOptimizer, NoScheduler, OneCycleLr, Optimizer,
    OptimizerState, Optimizers, Params, ReduceLrOnPlateau, RmsProp, RmsPropConfig, SchedulerConfig, SequentialLr, Sgd,
    SgdConfig, StepLr,
};
pub use precision::Precision;
pub use relocate::{Relocate, Relocation};
pub use state::{Flow, Stage, TrainerState};
pub use step::StepOutput;
pub use summary::{summarize, summarize_trainable};
/// The parts of [`Data`] that appear only in its type (`Unset`, `Given`, the stage markers).
#[doc(hidden)]
pub use trainer::data_arg;
pub use trainer::{
    CkptPath, Data, EvalData, FitData, FitOutcome, Limit, ManualOptimization, Metrics, OptimizerClosure, StopReason,
    Strategy, Trainer, TrainerBuilder, TrainerConfig, SMALL_MODEL_PARAMS,
};

pub use candle_core as candle;
pub use candle_nn;
/// serde, for a `#[hparams]` struct in a crate without its own serde dependency:
/// `#[derive(lightning::serde::Serialize)] #[serde(crate = "lightning::serde")]`.
pub use serde;
pub use serde_json;

#[doc(hidden)]
pub mod __private {
    pub use crate::hook_return::HookReturn;
    pub use crate::logging::LogScope;
    pub use crate::module::requirements::*;
    pub use crate::relocate::{Field, ViaNothing, ViaRelocate};
    /// One pass-through trait per hook argument: a parameter of the wrong type is reported
    /// at the parameter, naming what the hook passes.
    pub mod hook_args {
        lightning_macros::__hook_arg_traits!();
    }
}
