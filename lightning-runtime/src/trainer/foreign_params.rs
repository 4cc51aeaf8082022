//! Every variable an optimizer trains must be one of the module's own (its `VarMap`):
//! checkpoints save, device and precision changes move, and DDP broadcasts only those, so
//! a variable outside it would train in this run and be lost or diverge silently after.

use std::collections::HashSet;

use crate::optim::{Optimizer, Optimizers};
use crate::{Error, LightningModule, Result};

/// `Error::ParametersOutsideModule` naming (with shape and dtype) each optimizer parameter
/// that is not in `model.parameters()`. Optimizers that list no parameters are not checked.
pub(crate) fn check<M: LightningModule>(model: &M, optim: &mut M::Optim) -> Result<()> {
    let own: HashSet<_> = {
        let data = model.parameters().data().lock().unwrap_or_else(|p| p.into_inner());
        data.values().map(|v| v.id()).collect()
    };
    let mut outside = Vec::new();
    for i in 0..optim.count() {
        let Some(o) = optim.get(i) else { continue };
        for (name, var) in o.named_parameters() {
            if !own.contains(&var.id()) {
                outside.push(format!("`{name}` ({:?}, {:?})", var.dims(), var.dtype()));
            }
        }
    }
    if outside.is_empty() {
        Ok(())
    } else {
        Err(Error::ParametersOutsideModule { module: M::NAME, names: outside })
    }
}
