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
/// callbacks' and its `load_state_dict` after the module's `on_load_checkpoint`. When it
/// sets `TRANSFERS_BATCHES`, its three batch-transfer hooks replace the module's.
///
/// ```
/// use lightning::{DataModule, DataLoader, Stage};
/// use candle_core::{Tensor, Device};
///
/// struct Ramp { data: Option<(Tensor, Tensor)> }
///
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
pub trait DataModule {
    /// What its loaders yield.
    type Batch: TransferBatch;
    /// What its `*_dataloader` hooks return.
    type Loader: Loader<Batch = Self::Batch>;
    /// Whether the batch-transfer hooks below replace the module's.
    const TRANSFERS_BATCHES: bool = false;

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
    fn train_dataloader(&mut self) -> Result<Option<Self::Loader>> {
        Ok(None)
    }
    fn val_dataloader(&mut self) -> Result<Option<Self::Loader>> {
        Ok(None)
    }
    fn test_dataloader(&mut self) -> Result<Option<Self::Loader>> {
        Ok(None)
    }
    fn predict_dataloader(&mut self) -> Result<Option<Self::Loader>> {
        Ok(None)
    }
    fn on_before_batch_transfer(&mut self, batch: Self::Batch, dataloader_idx: usize) -> Result<Self::Batch> {
        let _ = dataloader_idx;
        Ok(batch)
    }
    fn transfer_batch_to_device(
        &mut self,
        batch: Self::Batch,
        device: &Device,
        dataloader_idx: usize,
    ) -> Result<Self::Batch> {
        let _ = dataloader_idx;
        batch.to_device(device)
    }
    fn on_after_batch_transfer(&mut self, batch: Self::Batch, dataloader_idx: usize) -> Result<Self::Batch> {
        let _ = dataloader_idx;
        Ok(batch)
    }
    /// Its state in checkpoints (`Null`: nothing saved).
    fn state_dict(&mut self) -> Result<Value> {
        Ok(Value::Null)
    }
    fn load_state_dict(&mut self, state: &Value) -> Result<()> {
        let _ = state;
        Ok(())
    }
    /// The run failed; called after the callbacks' `on_exception`.
    fn on_exception(&mut self, exception: &Error) {
        let _ = exception;
    }
}

/// The data module of a run without one: every hook is a no-op.
pub struct NoDataModule<B>(PhantomData<fn() -> B>);

impl<B> Default for NoDataModule<B> {
    fn default() -> Self {
        NoDataModule(PhantomData)
    }
}

impl<B: TransferBatch> DataModule for NoDataModule<B> {
    type Batch = B;
    type Loader = NoLoader<B>;
}
