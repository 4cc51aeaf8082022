//! # candle-lightning
//!
//! PyTorch Lightning's trainer as a compile-time-checked DSL on [candle](https://github.com/huggingface/candle).
//! Annotate a model with `#[lightning_module]`, its hook methods are checked against
//! Lightning's hook catalogue at compile time, and the [`Trainer`] calls them in
//! Lightning's tested order, statically dispatched.
//!
//! ```
//! use lightning::prelude::*;
//! use candle_core::{Tensor, Device, DType};
//! use candle_nn::{VarMap, VarBuilder, Linear, Module};
//!
//! #[lightning_module]
//! struct Model { vars: VarMap, layer: Linear }
//!
//! #[lightning_module]
//! impl Model {
//!     fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
//!         let (x, y) = batch;
//!         self.layer.forward(x)?.sub(y)?.sqr()?.mean_all()
//!     }
//!     fn configure_optimizers(&mut self) -> lightning::Result<AdamW> {
//!         AdamW::with_lr(&self.vars, 1e-2)
//!     }
//!     #[hook(on_batch_begin)]
//!     fn scale(&mut self, batch: (Tensor, Tensor)) -> candle_core::Result<(Tensor, Tensor)> {
//!         Ok(((batch.0 * 0.5)?, batch.1))
//!     }
//! }
//!
//! # fn main() -> lightning::Result<()> {
//! let vars = VarMap::new();
//! let layer = candle_nn::linear(3, 1, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu))?;
//! let x = Tensor::randn(0f32, 1., (32, 3), &Device::Cpu)?;
//! let y = x.sum_keepdim(1)?;
//! let mut trainer = Trainer::builder().max_epochs(3).enable_checkpointing(false).build()?;
//! let out = trainer.fit(&mut Model { vars, layer }, Data::loader(DataLoader::new(x, y, 8)?))?;
//! assert_eq!(out.global_step, 12);
//! # Ok(()) }
//! ```

pub use lightning_macros::{callback, datamodule, hook, lightning_module, not_hook, Relocate};
pub use lightning_runtime::*;

/// `docs/from-lightning.md`, the guide for Lightning users: every Rust block in it is a doc test.
#[cfg(doctest)]
#[doc = include_str!("../docs/from-lightning.md")]
pub struct FromLightningGuide;

/// Everything a training script needs: `use lightning::prelude::*;`.
pub mod prelude {
    pub use lightning_macros::{callback, datamodule, hook, lightning_module, not_hook, Relocate};
    pub use lightning_runtime::metrics::Metric;
    pub use lightning_runtime::optim::{
        Adagrad, AdagradConfig, Adam, AdamConfig, AdamW, AdamWConfig, Anneal, CosineAnnealingLr,
        CosineAnnealingWarmRestarts, ExponentialLr, Interval, LinearLr, LrScheduler, MultiStepLr, NoScheduler,
        OneCycleLr, Optimizer, Optimizers, Params, ReduceLrOnPlateau, RmsProp, RmsPropConfig, SchedulerConfig,
        SequentialLr, Sgd, SgdConfig, StepLr,
    };
    // `Mode` (min or max) is one type for `EarlyStopping`, `ModelCheckpoint` and
    // `ReduceLrOnPlateau`: `callbacks::Mode` re-exports `optim::Mode`, so a script that also
    // globs `lightning::optim::*` or `lightning::callbacks::*` sees the same item.
    pub use lightning_runtime::callbacks::{EarlyStopping, Mode, StochasticWeightAveraging};
    // the built-in callbacks that take a writer or a closure of yours
    pub use lightning_runtime::callbacks::{
        BasePredictionWriter, DeviceStatsMonitor, PredictionWriter, ThroughputMonitor, WriteInterval,
    };
    pub use lightning_runtime::data::{Dataset, MapLoader};
    pub use lightning_runtime::logging::LogModel;
    pub use lightning_runtime::{
        seeded_var_builder, Accelerator, Callback, Checkpoint, CsvLogger, Data, DataLoader, DataModule, Either, Flow,
        GradScaler, GradientClipAlgorithm, Gradients, LightningModule, Loader, Log, ManualOptimization, MlflowLogger,
        ModelCheckpoint, OptimizerClosure, Precision, Reduce, Relocate, Relocation, Stage, StepOutput, Strategy,
        TensorBoardLogger, Trainer, TrainerState, TransferBatch,
    };
}
