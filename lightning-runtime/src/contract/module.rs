//! The `LightningModule` trait, generated from the hook catalogue.

use candle_nn::VarMap;

use crate::{CallbackList, Loader, Optimizers, TransferBatch};

/// Access to a module's parameters; `#[lightning_module]` on the struct implements it
/// from the struct's `VarMap` field (or the field marked `#[params]`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not marked as a LightningModule",
    label = "its struct lacks `#[lightning_module]`",
    note = "add `#[lightning_module]` to the struct `{Self}` as well as to its impl"
)]
pub trait HasParameters {
    /// The variables the optimizers train and checkpoints save.
    fn parameters(&self) -> &VarMap;
    /// Rebinds the fields that hold moved variables (generated; see [`crate::Relocate`]).
    fn relocate_fields(&mut self, to: &crate::Relocation) -> crate::Result<()>;
    /// The field marked `#[hparams]`, as JSON (Lightning's `save_hyperparameters`): it goes
    /// to the loggers at the start of a run and into every checkpoint.
    fn hyperparameters(&self) -> crate::Result<Option<serde_json::Value>> {
        Ok(None)
    }
    /// The struct's fields and their types, for the model summary.
    fn fields() -> &'static [(&'static str, &'static str)]
    where
        Self: Sized,
    {
        &[]
    }
}

/// A model the trainer can run: PyTorch Lightning's `LightningModule`.
///
/// Don't implement it by hand: write `#[lightning_module]` on the struct and on its
/// inherent impl, and the hook methods there. Every method below is a hook with
/// Lightning's default behaviour; a hook the module does not implement compiles to
/// that default (usually nothing). Hook methods take any subset of the hook's
/// arguments, by name.
///
/// ```
/// use lightning::prelude::*;
/// use candle_core::{Tensor, DType, Device};
/// use candle_nn::{VarMap, VarBuilder, Linear, Module};
///
/// #[lightning_module]
/// struct Regressor { vars: VarMap, layer: Linear }
///
/// #[lightning_module]
/// impl Regressor {
///     fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
///         let (x, y) = batch;
///         self.layer.forward(x)?.sub(y)?.sqr()?.mean_all()
///     }
///     fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
///         Sgd::new(&self.vars, 0.1)
///     }
/// }
///
/// # fn main() -> lightning::Result<()> {
/// let vars = VarMap::new();
/// let layer = candle_nn::linear(2, 1, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu))?;
/// let mut model = Regressor { vars, layer };
/// let x = Tensor::randn(0f32, 1., (64, 2), &Device::Cpu)?;
/// let y = x.sum_keepdim(1)?;
/// let data = DataLoader::new(x, y, 16)?;
/// let mut trainer = Trainer::builder().max_epochs(2).enable_checkpointing(false).build()?;
/// let out = trainer.fit(&mut model, Data::loader(data))?;
/// assert_eq!(out.global_step, 8);
/// # Ok(()) }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a LightningModule: its impl lacks `#[lightning_module]`",
    label = "`{Self}` has no `#[lightning_module]` impl",
    note = "mark the struct and its inherent impl with `#[lightning_module]`: the impl's attribute implements `LightningModule` from the hook methods"
)]
pub trait LightningModule: HasParameters + Sized {
    /// The type's name, for messages.
    const NAME: &'static str;
    /// `false` under `#[lightning_module(manual_optimization)]`: `training_step` then steps
    /// the optimizers itself (Lightning's `automatic_optimization`).
    const AUTOMATIC_OPTIMIZATION: bool = true;
    /// Set by `#[lightning_module]` when `configure_optimizers` reads
    /// `trainer.estimated_stepping_batches()`: `fit` then gets the training loader (from
    /// `train_dataloader` or the datamodule) before it, as Lightning does.
    #[doc(hidden)]
    const ESTIMATE_IN_CONFIGURE_OPTIMIZERS: bool = false;
    /// What a data loader yields and the steps take.
    type Batch: TransferBatch;
    /// What `configure_optimizers` returns.
    type Optim: Optimizers;
    /// What `predict_step` returns.
    type Prediction;
    /// What the `*_dataloader` hooks return.
    type Loader: Loader<Batch = Self::Batch>;
    /// What `configure_callbacks` returns.
    type Callbacks: CallbackList<Self>;

    lightning_macros::__module_items!();
}

/// Compile-time requirements of the trainer's entry points: `#[lightning_module]`
/// implements each marker when the module has the hook (generated from the hook catalogue).
pub mod requirements {
    lightning_macros::__requirement_items!();
}
