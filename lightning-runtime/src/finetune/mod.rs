//! Fine-tuning (Lightning's `BaseFinetuning` and `BackboneFinetuning`): freezing parameters
//! by `VarMap` name prefix, unfreezing them into a new optimizer parameter group while
//! training runs, and loading pretrained weights by name.
//!
//! A frozen parameter gets no gradient: the trainer drops its gradient right after backward
//! (candle computes it, torch would not), so hooks, clipping, the DDP mean and the optimizer
//! never see one, and an optimizer that holds it gives it no state. Build the optimizer from
//! the parameters that train ([`Params::trainable`](crate::optim::Params::trainable), torch's
//! `filter(lambda p: p.requires_grad, ...)`); the frozen set is saved in checkpoints.
//!
//! - [`BackboneFinetuning`]: the backbone (`"backbone."`) frozen until an epoch, then trained
//!   in its own group at a rate that grows each epoch, as Lightning's.
//! - [`BaseFinetuning`] and [`Finetuning`]: your own freeze/unfreeze schedule.
//! - [`load_pretrained`]: a safetensors file into a `VarMap` with a prefix map, reporting
//!   missing and unexpected keys (torch's `load_state_dict(strict=False)`).

mod backbone;
mod base;
pub(crate) mod frozen;
mod pretrained;

pub use backbone::{multiplicative, BackboneFinetuning};
pub use base::{BaseFinetuning, Finetuner, Finetuning};
pub use pretrained::{load_pretrained, LoadReport, ShapeMismatch};

use candle_nn::VarMap;

use crate::{Result, TrainerState};

impl TrainerState {
    /// Freezes every parameter of `vars` whose name starts with `prefix` (`"backbone."`): from
    /// the next backward on it gets no gradient. Returns the names frozen; an error when
    /// none matches (a misspelt prefix).
    pub fn freeze(&mut self, vars: &VarMap, prefix: &str) -> Result<Vec<String>> {
        let names = frozen::matching(vars, prefix)?;
        self.frozen.insert(names.iter().cloned(), vars);
        Ok(names)
    }

    /// Unfreezes the frozen parameters whose names start with `prefix`; returns their names.
    pub fn unfreeze(&mut self, vars: &VarMap, prefix: &str) -> Vec<String> {
        self.frozen.remove_prefix(prefix, vars)
    }

    /// Whether the parameter `name` is frozen.
    pub fn is_frozen(&self, name: &str) -> bool {
        self.frozen.contains(name)
    }

    /// The frozen parameters' names, sorted.
    pub fn frozen_parameters(&self) -> impl Iterator<Item = &str> {
        self.frozen.names().iter().map(|s| s.as_str())
    }
}

/// Whether `name` belongs to a batch-norm layer: its layer also holds a `running_mean`
/// (candle-nn's `BatchNorm` keeps its running statistics in the `VarMap`).
pub(crate) fn is_batch_norm(data: &std::collections::HashMap<String, candle_core::Var>, name: &str) -> bool {
    let layer = name.rsplit_once('.').map_or("", |(l, _)| l);
    let key = if layer.is_empty() { "running_mean".to_string() } else { format!("{layer}.running_mean") };
    data.contains_key(&key)
}

/// Whether `name` is a running statistic (a buffer in torch, not a parameter).
pub(crate) fn is_running_stat(name: &str) -> bool {
    let leaf = name.rsplit_once('.').map_or(name, |(_, l)| l);
    matches!(leaf, "running_mean" | "running_var")
}
