//! The data argument of the trainer's stages: one [`Data`] value says where `fit`,
//! `validate`, `test` and `predict` take their batches from (Lightning's
//! `train_dataloaders=`, `val_dataloaders=`, `dataloaders=` and `datamodule=` arguments).
//!
//! The traits [`FitData`] and [`EvalData`] turn a `Data` into what the loops take: a
//! datamodule (or none) and optional loaders. Their impls carry the compile-time
//! requirements: `Data::module()` needs the module's dataloader hook of that stage.

use std::borrow::BorrowMut;

use crate::contract::module::requirements::*;
use crate::{DataModule, LightningModule, Loader, Loaders, NoDataModule};

/// Where a stage of the [`Trainer`](crate::Trainer) takes its batches from: the module's
/// own `*_dataloader` hooks, loaders given here, or a `#[datamodule]`.
///
/// | Lightning | here |
/// |---|---|
/// | `trainer.fit(model)` | `trainer.fit(&mut model, Data::module())` |
/// | `trainer.fit(model, train_loader)` | `trainer.fit(&mut model, Data::loader(train))` |
/// | `trainer.fit(model, train_loader, val_loader)` | `trainer.fit(&mut model, Data::loader(train).val(val))` |
/// | `trainer.fit(model, datamodule=dm)` | `trainer.fit(&mut model, Data::datamodule(&mut dm))` |
/// | `trainer.test(model, test_loader)` | `trainer.test(&mut model, Data::loader(test))` |
///
/// With `Data::loader(train)` alone, validation runs on the module's `val_dataloader` when
/// it has one, as in Lightning. `.val(..)` belongs to `fit`. Several validation, test or
/// predict loaders (Lightning's `val_dataloaders=[a, b]`) are a tuple, `Vec` or array:
/// `.val((a, b))`, `Data::loaders((a, b))` (see [`Loaders`]). A hook that a choice needs is checked at compile time:
/// `Data::module()` given to `fit` on a module without `train_dataloader` does not compile.
///
/// ```
/// use lightning::prelude::*;
/// use candle_core::{DType, Device, Tensor};
/// use candle_nn::{Linear, Module, VarBuilder, VarMap};
///
/// #[lightning_module]
/// struct Model { vars: VarMap, layer: Linear }
///
/// #[lightning_module]
/// impl Model {
///     fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
///         self.layer.forward(&batch.0)?.sub(&batch.1)?.sqr()?.mean_all()
///     }
///     fn validation_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<()> {
///         trainer.log("val_loss", self.layer.forward(&batch.0)?.sub(&batch.1)?.sqr()?.mean_all()?)
///     }
///     fn configure_optimizers(&mut self) -> lightning::Result<AdamW> {
///         AdamW::with_lr(&self.vars, 1e-2)
///     }
/// }
///
/// # fn main() -> lightning::Result<()> {
/// let vars = VarMap::new();
/// let layer = candle_nn::linear(3, 1, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu))?;
/// let mut model = Model { vars, layer };
/// let x = Tensor::randn(0f32, 1., (32, 3), &Device::Cpu)?;
/// let y = x.sum_keepdim(1)?;
/// let mut trainer = Trainer::builder().max_epochs(2).enable_checkpointing(false).build()?;
/// let train = DataLoader::new(x.clone(), y.clone(), 8)?;
/// let val = DataLoader::new(x.clone(), y.clone(), 16)?;
/// let out = trainer.fit(&mut model, Data::loader(train).val(val))?;
/// assert_eq!(out.global_step, 8);
/// let metrics = trainer.validate(&mut model, Data::loader(DataLoader::new(x, y, 16)?))?;
/// assert!(metrics.contains_key("val_loss"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a `Data` does nothing until a trainer stage takes it"]
pub struct Data<T, V, DM> {
    train: T,
    val: V,
    datamodule: DM,
}

/// A part of a [`Data`] that was not given (no loader, no datamodule).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Unset;

/// A loader given to [`Data::loader`]. A wrapper, not the loader itself, so that
/// `Data::module()` and `Data::loader(..)` are told apart by their type alone and a missing
/// hook is reported as the hook's own error.
#[doc(hidden)]
#[derive(Debug)]
pub struct Given<L>(L);

impl Data<Unset, Unset, Unset> {
    /// The module's own dataloader hooks: `train_dataloader` and `val_dataloader` for
    /// `fit` (Lightning's `trainer.fit(model)`), `val_dataloader` for `validate`,
    /// `test_dataloader` for `test`, `predict_dataloader` for `predict`.
    pub fn module() -> Self {
        Data { train: Unset, val: Unset, datamodule: Unset }
    }
}

impl<L> Data<Given<L>, Unset, Unset> {
    /// One loader: the training loader for `fit` (validation then comes from the module's
    /// `val_dataloader`, if it has one), the stage's loader for `validate`, `test` and
    /// `predict`.
    pub fn loader(loader: L) -> Self {
        Data { train: Given(loader), val: Unset, datamodule: Unset }
    }
}

impl<L: Loaders> Data<Given<L>, Unset, Unset> {
    /// Several loaders for `validate`, `test` or `predict` (Lightning's
    /// `dataloaders=[a, b]`): a tuple of loaders of any types with one batch type, a `Vec`
    /// or an array. The same as [`Data::loader`], named for reading. Each step gets its
    /// loader's `dataloader_idx`; logged keys get `/dataloader_idx_N`.
    pub fn loaders(loaders: L) -> Self {
        Data { train: Given(loaders), val: Unset, datamodule: Unset }
    }
}

impl<'a, DM> Data<Unset, Unset, &'a mut DM> {
    /// A `#[datamodule]`: its `*_dataloader` hooks and its stage hooks (`prepare_data`,
    /// `setup`, `teardown`, ...) run with the stage (Lightning's `datamodule=dm`).
    pub fn datamodule(datamodule: &'a mut DM) -> Self {
        Data { train: Unset, val: Unset, datamodule }
    }
}

impl<T> Data<T, Unset, Unset> {
    /// `fit`'s validation loader (Lightning's `val_dataloaders=`), instead of the module's
    /// `val_dataloader`.
    pub fn val<V>(self, val: V) -> Data<T, V, Unset> {
        Data { train: self.train, val, datamodule: Unset }
    }
}

/// The training loader of a [`Data`]: given, or the module's `train_dataloader`.
#[doc(hidden)]
pub trait TrainPart<M: LightningModule> {
    /// The loader's type (the module's `Loader` when it is the module's).
    type Loader: Loader<Batch = M::Batch>;
    /// `None`: the module's hook.
    fn into_loader(self) -> Option<Self::Loader>;
}

impl<M: LightningModule + HasTrainDataloader> TrainPart<M> for Unset {
    type Loader = M::Loader;
    fn into_loader(self) -> Option<M::Loader> {
        None
    }
}

impl<M: LightningModule, L: Loader<Batch = M::Batch>> TrainPart<M> for Given<L> {
    type Loader = L;
    fn into_loader(self) -> Option<L> {
        Some(self.0)
    }
}

/// The validation loader of a [`Data`] for `fit`: given, or the module's `val_dataloader`
/// when it has one (validation is optional, so nothing is required here).
#[doc(hidden)]
pub trait ValPart<M: LightningModule> {
    /// The loaders' type (the module's `Loader` when none was given).
    type Loader: Loaders<Batch = M::Batch>;
    /// `None`: the module's hook, if any.
    fn into_loader(self) -> Option<Self::Loader>;
}

impl<M: LightningModule> ValPart<M> for Unset {
    type Loader = M::Loader;
    fn into_loader(self) -> Option<M::Loader> {
        None
    }
}

// `Unset` is not a `Loaders`, so this blanket impl and the one above do not overlap.
impl<M: LightningModule, L: Loaders<Batch = M::Batch>> ValPart<M> for L {
    type Loader = L;
    fn into_loader(self) -> Option<L> {
        Some(self)
    }
}

/// What [`Trainer::fit`](crate::Trainer::fit) takes: a [`Data`] built by
/// `Data::module()`, `Data::loader(train)` (with `.val(val)` or without) or
/// `Data::datamodule(&mut dm)`. Implemented by `Data` alone.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not data `Trainer::fit` can train `{M}` on",
    label = "not a `Data::module()`, `Data::loader(..)`, `Data::loader(..).val(..)` or `Data::datamodule(..)`"
)]
// the note names a hook, so it is written from the hook catalogue
#[lightning_macros::__hook_note(fit_data)]
pub trait FitData<M: LightningModule> {
    /// The datamodule's type ([`NoDataModule`] when there is none).
    #[doc(hidden)]
    type DataModule: DataModule<Batch = M::Batch>;
    /// How the datamodule is held: owned (`NoDataModule`) or borrowed.
    #[doc(hidden)]
    type Held: BorrowMut<Self::DataModule>;
    /// The training loader's type.
    #[doc(hidden)]
    type Train: Loader<Batch = M::Batch>;
    /// The validation loaders' type: one loader or several ([`Loaders`]).
    #[doc(hidden)]
    type Val: Loaders<Batch = M::Batch>;
    /// The datamodule and the loaders given (`None`: from the module or the datamodule).
    #[doc(hidden)]
    fn into_parts(self) -> (Self::Held, Option<Self::Train>, Option<Self::Val>);
}

impl<M, T, V> FitData<M> for Data<T, V, Unset>
where
    M: LightningModule,
    T: TrainPart<M>,
    V: ValPart<M>,
{
    type DataModule = NoDataModule<M::Batch>;
    type Held = NoDataModule<M::Batch>;
    type Train = T::Loader;
    type Val = V::Loader;
    fn into_parts(self) -> (Self::Held, Option<T::Loader>, Option<V::Loader>) {
        (NoDataModule::default(), self.train.into_loader(), self.val.into_loader())
    }
}

impl<'a, M, DM> FitData<M> for Data<Unset, Unset, &'a mut DM>
where
    M: LightningModule,
    DM: DataModule<Batch = M::Batch>,
{
    type DataModule = DM;
    type Held = &'a mut DM;
    type Train = M::Loader;
    type Val = M::Loader;
    fn into_parts(self) -> (&'a mut DM, Option<M::Loader>, Option<M::Loader>) {
        (self.datamodule, None, None)
    }
}

/// The stages with one loader, for [`EvalData`]'s second parameter.
#[doc(hidden)]
pub mod stage {
    /// `Trainer::validate`.
    #[derive(Debug)]
    pub struct Validate;
    /// `Trainer::test`.
    #[derive(Debug)]
    pub struct Test;
    /// `Trainer::predict`.
    #[derive(Debug)]
    pub struct Predict;
}

/// What [`Trainer::validate`](crate::Trainer::validate), [`test`](crate::Trainer::test) and
/// [`predict`](crate::Trainer::predict) take (`S` is the stage): a [`Data`] built by
/// `Data::module()`, `Data::loader(loader)` or `Data::datamodule(&mut dm)`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not data for `Trainer::validate`, `test` or `predict`",
    label = "not a `Data::module()`, `Data::loader(..)` or `Data::datamodule(..)`",
    note = "these stages take `Data::module()`, `Data::loader(loader)`, `Data::loaders((a, b))` or \
            `Data::datamodule(&mut dm)`; `.val(..)` belongs to `fit`"
)]
pub trait EvalData<M: LightningModule, S> {
    /// The datamodule's type ([`NoDataModule`] when there is none).
    #[doc(hidden)]
    type DataModule: DataModule<Batch = M::Batch>;
    /// How the datamodule is held: owned (`NoDataModule`) or borrowed.
    #[doc(hidden)]
    type Held: BorrowMut<Self::DataModule>;
    /// The loaders' type: one loader or several ([`Loaders`]).
    #[doc(hidden)]
    type Loader: Loaders<Batch = M::Batch>;
    /// The datamodule and the loader given (`None`: from the module or the datamodule).
    #[doc(hidden)]
    fn into_parts(self) -> (Self::Held, Option<Self::Loader>);
}

// `Data::module()`: one impl per stage, each requiring that stage's dataloader hook (written
// out, not by a macro, so that a compile error points at a plain impl).
impl<M: LightningModule + HasValDataloader> EvalData<M, stage::Validate> for Data<Unset, Unset, Unset> {
    type DataModule = NoDataModule<M::Batch>;
    type Held = NoDataModule<M::Batch>;
    type Loader = M::Loader;
    fn into_parts(self) -> (Self::Held, Option<M::Loader>) {
        (NoDataModule::default(), None)
    }
}

impl<M: LightningModule + HasTestDataloader> EvalData<M, stage::Test> for Data<Unset, Unset, Unset> {
    type DataModule = NoDataModule<M::Batch>;
    type Held = NoDataModule<M::Batch>;
    type Loader = M::Loader;
    fn into_parts(self) -> (Self::Held, Option<M::Loader>) {
        (NoDataModule::default(), None)
    }
}

impl<M: LightningModule + HasPredictDataloader> EvalData<M, stage::Predict> for Data<Unset, Unset, Unset> {
    type DataModule = NoDataModule<M::Batch>;
    type Held = NoDataModule<M::Batch>;
    type Loader = M::Loader;
    fn into_parts(self) -> (Self::Held, Option<M::Loader>) {
        (NoDataModule::default(), None)
    }
}

impl<M, S, L> EvalData<M, S> for Data<Given<L>, Unset, Unset>
where
    M: LightningModule,
    L: Loaders<Batch = M::Batch>,
{
    type DataModule = NoDataModule<M::Batch>;
    type Held = NoDataModule<M::Batch>;
    type Loader = L;
    fn into_parts(self) -> (Self::Held, Option<L>) {
        (NoDataModule::default(), Some(self.train.0))
    }
}

impl<'a, M, S, DM> EvalData<M, S> for Data<Unset, Unset, &'a mut DM>
where
    M: LightningModule,
    DM: DataModule<Batch = M::Batch>,
{
    type DataModule = DM;
    type Held = &'a mut DM;
    type Loader = M::Loader;
    fn into_parts(self) -> (&'a mut DM, Option<M::Loader>) {
        (self.datamodule, None)
    }
}
