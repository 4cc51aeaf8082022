//! The tuner as callbacks (Lightning's `LearningRateFinder` and `BatchSizeFinder`): each
//! runs its search on the `fit` it is given to, before that fit starts training.

use super::batch_size::{BatchSizeAttr, BatchSizeSearch, ScaleBatchSize};
use super::lr_find::{LrFind, NoUpdate, UpdateLr};
use super::{LrFinder, TuneFit};
use crate::{Callback, Error, IsCallback, LightningModule, Result};

/// Lightning's `LearningRateFinder` callback: at the start of `fit` it runs
/// [`Tuner::lr_find_with`](super::Tuner::lr_find_with) on the fit's training data with
/// its options, puts the weights back, and (with [`LrFind::update_attr`]) gives the module
/// the suggested rate before `configure_optimizers` runs for the real fit. The result stays
/// readable as [`optimal_lr`](Self::optimal_lr).
///
/// ```
/// use lightning::prelude::*;
/// use lightning::tuner::{LearningRateFinder, LrFind};
/// use candle_core::{DType, Device, Tensor};
/// use candle_nn::{Linear, Module, VarMap};
///
/// #[lightning_module]
/// struct Model { vars: VarMap, layer: Linear, lr: f64 }
///
/// #[lightning_module]
/// impl Model {
///     fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
///         self.layer.forward(&batch.0)?.sub(&batch.1)?.sqr()?.mean_all()
///     }
///     fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
///         Sgd::new(&self.vars, self.lr)
///     }
/// }
///
/// # fn main() -> lightning::Result<()> {
/// let vars = VarMap::new();
/// let layer = candle_nn::linear(4, 1, seeded_var_builder(&vars, 7, DType::F32, &Device::Cpu))?;
/// let mut model = Model { vars, layer, lr: 1e-6 };
/// let x = (Tensor::arange(0f32, 1024., &Device::Cpu)?.reshape((256, 4))? * 0.37)?.sin()?;
/// let data = DataLoader::new(x.clone(), x.sum_keepdim(1)?, 256)?;
/// // Lightning: Trainer(callbacks=[LearningRateFinder(min_lr=1e-5, num_training_steps=50)])
/// let finder = LearningRateFinder::new(
///     LrFind::new().min_lr(1e-5).num_training(50).update_attr(|m: &mut Model, lr| m.lr = lr),
/// );
/// let mut trainer = Trainer::builder()
///     .max_epochs(3)
///     .callbacks((finder,))
///     .enable_checkpointing(false)
///     .enable_logger(false)
///     .build()?;
/// trainer.fit(&mut model, Data::loader(data))?; // sweeps, sets `lr`, then trains at it
/// let suggested = trainer.callbacks().0.optimal_lr().and_then(|f| f.suggestion());
/// assert_eq!(suggested, Some(model.lr));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LearningRateFinder<U = NoUpdate> {
    opts: LrFind<U>,
    optimal_lr: Option<LrFinder>,
}

impl Default for LearningRateFinder {
    fn default() -> Self {
        Self::new(LrFind::new())
    }
}

impl<U> LearningRateFinder<U> {
    /// A finder with the sweep's options (Lightning's defaults: [`LrFind::new`]). Give
    /// [`LrFind::update_attr`] a setter for the module's rate; without one the suggestion
    /// is only reported.
    pub fn new(opts: LrFind<U>) -> Self {
        LearningRateFinder { opts, optimal_lr: None }
    }

    /// The last sweep's result (Lightning's `optimal_lr`): `None` before `fit`, or when
    /// the fit resumed from a checkpoint and so did not sweep.
    pub fn optimal_lr(&self) -> Option<&LrFinder> {
        self.optimal_lr.as_ref()
    }
}

impl<U> IsCallback for LearningRateFinder<U> {
    type Callback = Self;
    fn into_callback(self) -> Self {
        self
    }
}

impl<M: LightningModule, U: UpdateLr<M>> Callback<M> for LearningRateFinder<U> {
    const STATE_KEY: &'static str = "LearningRateFinder";
    const __TUNES: bool = true;

    fn __tune<X: TuneFit<M>>(&mut self, fit: &mut X) -> Result<()> {
        if skipped(fit, "LearningRateFinder") {
            return Ok(());
        }
        let found = fit.lr_find(&mut self.opts)?;
        if !U::ENABLED && fit.is_global_zero() {
            match self.opts.chosen(&found) {
                Some(lr) => eprintln!("LearningRateFinder suggests a learning rate of {lr:.3e}; the module's rate is left as it is (give `LrFind::update_attr` a setter to use it)"),
                None => eprintln!("LearningRateFinder found no suggestion: too few points; increase num_training or the size of your dataset"),
            }
        }
        self.optimal_lr = Some(found);
        Ok(())
    }
}

/// Lightning's `BatchSizeFinder` callback: at the start of `fit` it runs
/// [`Tuner::scale_batch_size`](super::Tuner::scale_batch_size) with its options on the
/// module, whose [`BatchSizeAttr`] the module's (or the datamodule's) `train_dataloader`
/// reads; the fit then trains at the size found, readable as
/// [`optimal_batch_size`](Self::optimal_batch_size). A module without [`BatchSizeAttr`]
/// cannot take this callback (a compile error), and loaders given to `fit` directly
/// cannot be rescaled (an error, as in Lightning).
///
/// ```
/// use lightning::prelude::*;
/// use lightning::tuner::{BatchSizeAttr, BatchSizeFinder, ScaleBatchSize};
/// use candle_core::{DType, Device, Tensor};
/// use candle_nn::{Linear, Module, VarMap};
///
/// #[lightning_module]
/// struct Model { vars: VarMap, layer: Linear, batch_size: usize }
///
/// #[lightning_module]
/// impl Model {
///     fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
///         self.layer.forward(&batch.0)?.sub(&batch.1)?.sqr()?.mean_all()
///     }
///     fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
///         Sgd::new(&self.vars, 0.01)
///     }
///     fn train_dataloader(&mut self) -> lightning::Result<DataLoader> {
///         let x = Tensor::ones((64, 4), DType::F32, &Device::Cpu)?;
///         DataLoader::new(x.clone(), x.sum_keepdim(1)?, self.batch_size)
///     }
/// }
///
/// impl BatchSizeAttr for Model {
///     fn batch_size(&self) -> usize { self.batch_size }
///     fn set_batch_size(&mut self, batch_size: usize) { self.batch_size = batch_size }
/// }
///
/// # fn main() -> lightning::Result<()> {
/// let vars = VarMap::new();
/// let layer = candle_nn::linear(4, 1, seeded_var_builder(&vars, 7, DType::F32, &Device::Cpu))?;
/// let mut model = Model { vars, layer, batch_size: 2 };
/// // on the CPU the search stops at a time budget, or when one batch holds the data set
/// let finder = BatchSizeFinder::new(ScaleBatchSize::new().max_step_time(std::time::Duration::from_secs(1)));
/// let mut trainer = Trainer::builder().max_epochs(1).callbacks((finder,)).enable_checkpointing(false).build()?;
/// trainer.fit(&mut model, Data::module())?;
/// assert_eq!(trainer.callbacks().0.optimal_batch_size(), Some(64));
/// assert_eq!(model.batch_size, 64);
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct BatchSizeFinder {
    opts: ScaleBatchSize,
    found: Option<BatchSizeSearch>,
}

impl BatchSizeFinder {
    /// A finder with the search's options (Lightning's defaults: [`ScaleBatchSize::new`]).
    pub fn new(opts: ScaleBatchSize) -> Self {
        BatchSizeFinder { opts, found: None }
    }

    /// The batch size found (Lightning's `optimal_batch_size`); `None` before `fit`.
    pub fn optimal_batch_size(&self) -> Option<usize> {
        self.found.as_ref().map(|f| f.batch_size)
    }

    /// The whole search: every trial in order.
    pub fn search(&self) -> Option<&BatchSizeSearch> {
        self.found.as_ref()
    }
}

impl IsCallback for BatchSizeFinder {
    type Callback = Self;
    fn into_callback(self) -> Self {
        self
    }
}

impl<M: LightningModule + BatchSizeAttr> Callback<M> for BatchSizeFinder {
    const STATE_KEY: &'static str = "BatchSizeFinder";
    const __TUNES: bool = true;

    fn __tune<X: TuneFit<M>>(&mut self, fit: &mut X) -> Result<()> {
        if skipped(fit, "BatchSizeFinder") {
            return Ok(());
        }
        if fit.world_size() > 1 {
            // each rank would time its own trials and could choose another size
            return Err(Error::Tuner(format!(
                "BatchSizeFinder does not run in a data-parallel job ({} processes), as in Lightning: find the batch size in one process, then set it",
                fit.world_size()
            )));
        }
        self.found = Some(fit.scale_batch_size(&self.opts)?);
        Ok(())
    }
}

/// A fit resumed from a checkpoint keeps its rate and batch size: the finders say so and
/// leave it alone.
fn skipped<M: LightningModule, X: TuneFit<M>>(fit: &X, finder: &str) -> bool {
    if fit.resuming() && fit.is_global_zero() {
        eprintln!("{finder}: the fit resumes from a checkpoint, so it is not tuned again");
    }
    fit.resuming()
}
