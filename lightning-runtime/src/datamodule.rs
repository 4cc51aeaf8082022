//! `DataModule`: Lightning's `LightningDataModule`, the data side of a run kept apart from
//! the model.

use std::marker::PhantomData;

use candle_core::Device;
use serde_json::Value;

use crate::{Error, Loader, NoLoader, Result, Stage, TransferBatch};

/// Data preparation and loaders for every stage, as Lightning's `LightningDataModule`.
///
/// Implement the hooks you need; a misspelled one is a compile error, as everywhere in
/// this crate. The trainer calls them in Lightning's order (reference §2.6, §3):
/// `prepare_data` and `setup` before the callbacks' and the module's, `teardown` before
/// theirs, its loaders instead of the module's, its `state_dict` in checkpoints after the
/// callbacks' and its `load_state_dict` after the module's `on_load_checkpoint`. Each
/// batch-transfer hook it writes replaces the module's, as in Lightning.
///
/// Write `#[datamodule]` on the impl: it tells the trainer which hooks are written (a
/// forgotten attribute is a compile error, never a silently ignored hook).
///
/// ```
/// use lightning::{datamodule, DataModule, DataLoader, Stage};
/// use candle_core::{Tensor, Device};
///
/// struct Ramp { data: Option<(Tensor, Tensor)> }
///
/// #[datamodule]
/// impl DataModule for Ramp {
///     type Batch = (Tensor, Tensor);
///     type Loader = DataLoader;
///     fn setup(&mut self, _stage: Stage) -> lightning::Result<()> {
///         let x = Tensor::arange(0f32, 8., &Device::Cpu)?.reshape((8, 1))?;
///         self.data = Some((x.clone(), (x * 2.0)?));
///         Ok(())
///     }
///     fn train_dataloader(&mut self) -> lightning::Result<Option<DataLoader>> {
///         let (x, y) = self.data.clone().expect("set up");
///         Ok(Some(DataLoader::new(x, y, 4)?))
///     }
/// }
/// ```
pub trait DataModule: DataModuleAttribute {
    /// What its loaders yield.
    type Batch: TransferBatch;
    /// What its `*_dataloader` hooks return.
    type Loader: Loader<Batch = Self::Batch>;
    /// Set by `#[datamodule]` when the impl writes `on_before_batch_transfer`.
    #[doc(hidden)]
    const IMPL_ON_BEFORE_BATCH_TRANSFER: bool = false;
    /// Set by `#[datamodule]` when the impl writes `transfer_batch_to_device`.
    #[doc(hidden)]
    const IMPL_TRANSFER_BATCH_TO_DEVICE: bool = false;
    /// Set by `#[datamodule]` when the impl writes `on_after_batch_transfer`.
    #[doc(hidden)]
    const IMPL_ON_AFTER_BATCH_TRANSFER: bool = false;

    /// Downloads or prepares data once, before `setup`.
    fn prepare_data(&mut self) -> Result<()> {
        Ok(())
    }
    /// Start of every stage.
    fn setup(&mut self, stage: Stage) -> Result<()> {
        let _ = stage;
        Ok(())
    }
    /// End of every stage that did not fail.
    fn teardown(&mut self, stage: Stage) -> Result<()> {
        let _ = stage;
        Ok(())
    }
    /// The training loader (`None`: the module's).
    fn train_dataloader(&mut self) -> Result<Option<Self::Loader>> {
        Ok(None)
    }
    /// The validation loader.
    fn val_dataloader(&mut self) -> Result<Option<Self::Loader>> {
        Ok(None)
    }
    /// The test loader.
    fn test_dataloader(&mut self) -> Result<Option<Self::Loader>> {
        Ok(None)
    }
    /// The prediction loader.
    fn predict_dataloader(&mut self) -> Result<Option<Self::Loader>> {
        Ok(None)
    }
    /// Alters a batch before it moves to the device; replaces the module's when written.
    fn on_before_batch_transfer(&mut self, batch: Self::Batch, dataloader_idx: usize) -> Result<Self::Batch> {
        let _ = dataloader_idx;
        Ok(batch)
    }
    /// Moves a batch to the device; replaces the module's when written.
    fn transfer_batch_to_device(
        &mut self,
        batch: Self::Batch,
        device: &Device,
        dataloader_idx: usize,
    ) -> Result<Self::Batch> {
        let _ = dataloader_idx;
        batch.to_device(device)
    }
    /// Alters a batch on the device; replaces the module's when written.
    fn on_after_batch_transfer(&mut self, batch: Self::Batch, dataloader_idx: usize) -> Result<Self::Batch> {
        let _ = dataloader_idx;
        Ok(batch)
    }
    /// Its state in checkpoints (`Null`: nothing saved).
    fn state_dict(&mut self) -> Result<Value> {
        Ok(Value::Null)
    }
    /// Restores what `state_dict` saved, on resume.
    fn load_state_dict(&mut self, state: &Value) -> Result<()> {
        let _ = state;
        Ok(())
    }
    /// The run failed; called after the callbacks' `on_exception`.
    fn on_exception(&mut self, exception: &Error) {
        let _ = exception;
    }
}

/// Implemented by `#[datamodule]` on `impl DataModule for ..`: the trainer learns from it
/// which hooks the data module writes.
#[diagnostic::on_unimplemented(
    message = "the `DataModule` impl of `{Self}` lacks `#[datamodule]`",
    label = "`#[datamodule]` missing",
    note = "write `#[datamodule]` above `impl DataModule for {Self}`: it tells the trainer which batch-transfer hooks replace the module's"
)]
#[doc(hidden)]
pub trait DataModuleAttribute {}

/// The data module of a run without one: every hook is a no-op.
pub struct NoDataModule<B>(PhantomData<fn() -> B>);

impl<B> Default for NoDataModule<B> {
    fn default() -> Self {
        NoDataModule(PhantomData)
    }
}

impl<B> DataModuleAttribute for NoDataModule<B> {}

impl<B: TransferBatch> DataModule for NoDataModule<B> {
    type Batch = B;
    type Loader = NoLoader<B>;
}
