//! `DataModule`: Lightning's `LightningDataModule`, the data side of a run kept apart from
//! the model.

use std::marker::PhantomData;

use crate::{Loader, NoLoader, TransferBatch};

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

    lightning_macros::__datamodule_items!();
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
