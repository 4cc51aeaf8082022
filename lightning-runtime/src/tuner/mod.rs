//! The tuner (Lightning's `lightning.pytorch.tuner.Tuner`): a learning-rate range test
//! ([`Tuner::lr_find`]) and a search for the largest batch size that fits
//! ([`Tuner::scale_batch_size`]). Each runs short `fit`s of its own on the trainer's flags,
//! device and process group, with its own callback alone (no loggers, checkpoints,
//! progress bar, validation, LR scheduler or `configure_callbacks`, as Lightning swaps
//! them out), and puts the module's weights back afterwards.

mod batch_search;
mod batch_size;
mod finders;
mod fit_tuning;
mod lr_find;
mod lr_finder;
mod lr_sweep;
mod plot;
mod snapshot;
mod trial;

pub use batch_search::Trial;
pub use batch_size::{BatchSizeAttr, BatchSizeMode, BatchSizeSearch, ScaleBatchSize};
pub use finders::{BatchSizeFinder, LearningRateFinder};
pub(crate) use fit_tuning::FitTuning;
pub use fit_tuning::TuneFit;
pub use lr_find::{LrFind, NoUpdate, SetLr, Suggestion, UpdateLr};
pub use lr_finder::LrFinder;
pub use lr_sweep::LrFindMode;

use crate::Trainer;

/// Lightning's `Tuner(trainer)`: tunes a module's learning rate or batch size with the
/// trainer's flags, before `fit`.
///
/// ```
/// use lightning::prelude::*;
/// use lightning::tuner::{LrFind, Tuner};
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
/// let mut model = Model { vars, layer, lr: 1e-3 };
/// // the same data every run, one full batch: a smooth loss curve (small noisy batches can
/// // look diverged to the finder's threshold within a few steps)
/// let x = (Tensor::arange(0f32, 1024., &Device::Cpu)?.reshape((256, 4))? * 0.37)?.sin()?;
/// let data = DataLoader::new(x.clone(), x.sum_keepdim(1)?, 256)?;
/// let mut trainer = Trainer::builder().max_epochs(3).enable_checkpointing(false).enable_logger(false).build()?;
/// // Lightning: Tuner(trainer).lr_find(model, train_loader, update_attr=True)
/// let finder = Tuner::new(&mut trainer).lr_find_with(
///     &mut model,
///     Data::loader(data.clone()),
///     LrFind::new().min_lr(1e-5).num_training(50).update_attr(|m: &mut Model, lr| m.lr = lr),
/// )?;
/// assert_eq!(finder.suggestion(), Some(model.lr));
/// trainer.fit(&mut model, Data::loader(data))?; // trains at the suggested rate
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Tuner<'a, C, P = crate::NoProfiler> {
    trainer: &'a mut Trainer<C, P>,
}

impl<'a, C, P: crate::Profiler> Tuner<'a, C, P> {
    /// A tuner of `trainer`'s flags (its callbacks, loggers and profiler are not used by the
    /// tuning runs).
    pub fn new(trainer: &'a mut Trainer<C, P>) -> Self {
        Tuner { trainer }
    }
}

/// Says `line` on rank 0, as Lightning's `rank_zero_info` (on stderr).
fn info<C, P: crate::Profiler>(trainer: &Trainer<C, P>, line: std::fmt::Arguments<'_>) {
    if trainer.is_global_zero() {
        eprintln!("{line}");
    }
}
