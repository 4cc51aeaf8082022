//! Stateful metrics, torchmetrics' core: each keeps a small state on the host (counts and
//! sums; [`Auroc`] keeps its scores), adds each batch to it with [`Metric::update`], and
//! computes the value over everything seen since the last [`Metric::reset`].
//!
//! Under DDP each rank updates with its own shard, and [`Metric::compute_synced`] sums (or
//! gathers) the state over the ranks first, so every rank computes the value over the whole
//! data set. In a hook, hand the metric to the trainer: [`TrainerState::log_metric`] computes
//! it synced, logs it and resets it, once per epoch (Lightning's
//! `self.log("val_acc", self.acc)`); [`TrainerState::compute_metric`] only computes it.
//!
//! ```
//! use lightning::metrics::{Accuracy, Metric};
//! use candle_core::{Device, Tensor};
//! let mut acc = Accuracy::new(3);
//! let scores = Tensor::new(&[[0.1f32, 0.7, 0.2], [0.8, 0.1, 0.1]], &Device::Cpu)?;
//! acc.update((&scores, &Tensor::new(&[1u32, 2], &Device::Cpu)?))?;
//! acc.update((&scores, &Tensor::new(&[1u32, 0], &Device::Cpu)?))?;
//! assert_eq!(acc.compute()?, 0.75);
//! acc.reset();
//! # Ok::<(), lightning::Error>(())
//! ```
//!
//! [`TrainerState::log_metric`]: crate::TrainerState::log_metric
//! [`TrainerState::compute_metric`]: crate::TrainerState::compute_metric

mod aggregation;
mod auroc;
mod classification;
mod input;
mod regression;
mod sync;

pub use aggregation::{MeanMetric, SumMetric};
pub use auroc::Auroc;
pub use classification::{Accuracy, Average, ConfusionMatrix, F1Score, Precision, Recall};
pub use regression::{MeanAbsoluteError, MeanSquaredError, R2Score};

use crate::dist::Collective;
use crate::Result;

/// A metric accumulated over batches (torchmetrics' `Metric`).
///
/// `update` adds a batch, `compute` gives the value over every batch since the last
/// `reset`, and `sync` merges the states of all ranks (what `compute_synced` does on a copy).
pub trait Metric {
    /// What one update takes: `(&preds, &target)` for most metrics.
    type Input<'a>;
    /// The computed value: `f64`, or a matrix for [`ConfusionMatrix`].
    type Output;

    /// Adds one batch to the state.
    fn update(&mut self, input: Self::Input<'_>) -> Result<()>;
    /// The value over everything added since the last reset (this rank's state only).
    fn compute(&self) -> Result<Self::Output>;
    /// Forgets every batch added.
    fn reset(&mut self);
    /// Replaces this rank's state by the state of all ranks together (sums or gathers it);
    /// every rank must call it, in the same order. A no-op in one process.
    fn sync(&mut self, world: &dyn Collective) -> Result<()>;

    /// The value over the state of all ranks, leaving this rank's own state as it was.
    fn compute_synced(&self, world: &dyn Collective) -> Result<Self::Output>
    where
        Self: Clone,
    {
        if world.world_size() <= 1 {
            return self.compute();
        }
        let mut all = self.clone();
        all.sync(world)?;
        all.compute()
    }
}
