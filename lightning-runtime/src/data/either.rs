//! [`Either`]: a loader or an optimizer chosen at run time, without boxing.

use crate::data::Loader;
use crate::optim::{Optimizer, OptimizerState};
use crate::{Gradients, Result};

/// One of two loaders, or one of two optimizers, chosen at run time (e.g. from a
/// command-line flag). It is a [`Loader`] when both sides are loaders of one batch type, and
/// an [`Optimizer`] when both sides are optimizers; nest it for three or more choices
/// (`Either<A, Either<B, C>>`). A `match` per call, no boxing: `Loader::batches` returns
/// `impl Iterator`, so loaders cannot be `Box<dyn Loader>`.
///
/// ```
/// use lightning::prelude::*;
/// use candle_core::{Device, Tensor};
/// use candle_nn::VarMap;
/// # fn main() -> lightning::Result<()> {
/// let x = Tensor::zeros((6, 1), candle_core::DType::F32, &Device::Cpu)?;
/// let shuffled = true; // e.g. a flag
/// let loader = if shuffled {
///     Either::Left(DataLoader::new(x.clone(), x.clone(), 2)?.shuffle(0))
/// } else {
///     Either::Right(DataLoader::new(x.clone(), x, 3)?)
/// };
/// assert_eq!(loader.len(), 3);
///
/// // the same for `configure_optimizers`: `-> lightning::Result<Either<Sgd, AdamW>>`
/// let vars = VarMap::new();
/// vars.get((1, 1), "w", candle_nn::Init::Const(0.0), candle_core::DType::F32, &Device::Cpu)?;
/// let optimizer: Either<Sgd, AdamW> =
///     if shuffled { Either::Left(Sgd::new(&vars, 0.1)?) } else { Either::Right(AdamW::with_lr(&vars, 1e-3)?) };
/// assert_eq!(optimizer.learning_rate(0), 0.1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub enum Either<A, B> {
    /// The first choice.
    Left(A),
    /// The second choice.
    Right(B),
}

impl<T, A: Loader<Batch = T>, B: Loader<Batch = T>> Loader for Either<A, B> {
    type Batch = T;
    fn len(&self) -> usize {
        match self {
            Either::Left(a) => a.len(),
            Either::Right(b) => b.len(),
        }
    }
    fn batches(&mut self, epoch: usize) -> impl Iterator<Item = Result<T>> + '_ {
        // one iterator type for both arms: the side not chosen is an empty `Option`
        let (a, b) = match self {
            Either::Left(a) => (Some(a.batches(epoch)), None),
            Either::Right(b) => (None, Some(b.batches(epoch))),
        };
        a.into_iter().flatten().chain(b.into_iter().flatten())
    }
    fn shard(&mut self, rank: usize, world: usize) -> Result<()> {
        match self {
            Either::Left(a) => a.shard(rank, world),
            Either::Right(b) => b.shard(rank, world),
        }
    }
}

macro_rules! either_call {
    ($self:expr, $o:ident => $e:expr) => {
        match $self {
            Either::Left($o) => $e,
            Either::Right($o) => $e,
        }
    };
}

impl<A: Optimizer, B: Optimizer> Optimizer for Either<A, B> {
    fn name(&self) -> &'static str {
        either_call!(self, o => o.name())
    }
    fn step(&mut self, grads: &Gradients) -> Result<()> {
        either_call!(self, o => o.step(grads))
    }
    fn num_groups(&self) -> usize {
        either_call!(self, o => o.num_groups())
    }
    fn learning_rate(&self, group: usize) -> f64 {
        either_call!(self, o => o.learning_rate(group))
    }
    fn initial_learning_rate(&self, group: usize) -> f64 {
        either_call!(self, o => o.initial_learning_rate(group))
    }
    fn set_learning_rate(&mut self, group: usize, lr: f64) {
        either_call!(self, o => o.set_learning_rate(group, lr))
    }
    fn state_dict(&self) -> Result<OptimizerState> {
        either_call!(self, o => o.state_dict())
    }
    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()> {
        either_call!(self, o => o.load_state_dict(state))
    }
    fn momentum(&self) -> Option<f64> {
        either_call!(self, o => o.momentum())
    }
    fn set_momentum(&mut self, momentum: f64) {
        either_call!(self, o => o.set_momentum(momentum))
    }
    fn check_state_dict(&self, state: &OptimizerState) -> Result<()> {
        either_call!(self, o => o.check_state_dict(state))
    }
    fn named_parameters(&self) -> Vec<(&str, &candle_core::Var)> {
        either_call!(self, o => o.named_parameters())
    }
    fn use_master_weights(&mut self, dtype: candle_core::DType) -> Result<()> {
        either_call!(self, o => o.use_master_weights(dtype))
    }
    fn use_master_weights_from(
        &mut self,
        dtype: candle_core::DType,
        masters: &std::collections::HashMap<candle_core::TensorId, candle_core::Var>,
    ) -> Result<()> {
        either_call!(self, o => o.use_master_weights_from(dtype, masters))
    }
}
