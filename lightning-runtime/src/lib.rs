//! Runtime of candle-lightning: the trainer loops, devices, optimizers, data and
//! checkpoints. Use it through the `lightning` facade crate.

// The macros name this crate `::lightning`, as users see it through the facade.
extern crate self as lightning;

pub mod callbacks;
mod checkpoints;
pub mod cli;
mod contract;
pub mod data;
mod devices;
pub mod dist;
mod error;
pub mod finetune;
pub mod logging;
mod loops;
pub mod metrics;
pub mod nn;
pub mod optim;
pub mod profiler;
mod trainer;
pub mod tuner;

pub use callbacks::{
    BasePredictionWriter, DeviceStatsMonitor, EarlyStopping, EmaWeights, GradientAccumulationScheduler,
    LearningRateMonitor, ModelCheckpoint, OnExceptionCheckpoint, PredictionWriter, ProgressBar,
    StochasticWeightAveraging, ThroughputMonitor, WriteInterval,
};
pub use checkpoints::checkpoint::{load_from_checkpoint, module_state as checkpoint_state, Checkpoint};
pub use contract::callback::{Callback, CallbackList, CallbackTuple, Chain, IsCallback, Nested};
pub use contract::datamodule::{DataModule, DataModuleAttribute, NoDataModule};
pub use contract::module::{requirements, HasParameters, LightningModule};
pub use contract::state::{Flow, Stage, TrainerState};
pub use contract::step::StepOutput;
pub use data::either::Either;
pub use data::{accuracy, DataLoader, EachLoader, Loader, Loaders, NoLoader};
pub use devices::batch::TransferBatch;
pub use devices::device::Accelerator;
pub use devices::grad_scaler::{GradScaler, GradScalerState};
pub use devices::precision::Precision;
pub use devices::relocate::{Relocate, Relocation};
pub use error::{Error, Result};
pub use logging::{CsvLogger, Log, LogValue, Logger, MlflowLogger, Reduce, TensorBoardLogger};
pub use nn::init::{seeded_var_builder, var_map};
pub use optim::grads::{GradientClipAlgorithm, Gradients};
pub use optim::{
    Adagrad, AdagradConfig, Adam, AdamConfig, AdamW, AdamWConfig, CosineAnnealingLr, CosineAnnealingWarmRestarts,
    ExponentialLr, Interval, LinearLr, LrScheduler, MultiStepLr, NoOptimizer, NoScheduler, OneCycleLr, Optimizer,
    OptimizerState, Optimizers, Params, ReduceLrOnPlateau, RmsProp, RmsPropConfig, SchedulerConfig, SequentialLr, Sgd,
    SgdConfig, StepLr,
};
pub use profiler::{NoProfiler, Profiler, Profiling};
/// The parts of [`Data`] that appear only in its type (`Unset`, `Given`, the stage markers).
#[doc(hidden)]
pub use trainer::data_arg;
pub use trainer::interrupt::Signal;
pub use trainer::summary::{summarize, summarize_trainable};
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
    pub use crate::contract::hook_return::HookReturn;
    pub use crate::contract::module::requirements::*;
    pub use crate::devices::relocate::{Field, ViaNothing, ViaRelocate};
    pub use crate::logging::LogScope;
    /// One pass-through trait per hook argument: a parameter of the wrong type is reported
    /// at the parameter, naming what the hook passes.
    pub mod hook_args {
        lightning_macros::__hook_arg_traits!();
    }
}
