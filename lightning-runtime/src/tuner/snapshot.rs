//! A copy of a module's weights, taken before a tuner run and written back after it
//! (Lightning saves and restores a checkpoint around `lr_find` and `scale_batch_size`).

use std::collections::HashMap;

use candle_core::Tensor;
use candle_nn::VarMap;

use crate::{Error, Result};

/// Every variable of a `VarMap`, copied (optimizers update variables in place).
pub(crate) struct Snapshot(HashMap<String, Tensor>);

impl Snapshot {
    pub(crate) fn take(vars: &VarMap) -> Result<Self> {
        let data = vars.data().lock().unwrap_or_else(|p| p.into_inner());
        let copies =
            data.iter().map(|(name, var)| Ok((name.clone(), var.as_tensor().copy()?))).collect::<Result<_>>()?;
        Ok(Snapshot(copies))
    }

    /// Writes the copies back. The run may have moved the variables to the device or
    /// converted them to the precision's dtype: each copy follows its variable there.
    pub(crate) fn restore(&self, vars: &VarMap) -> Result<()> {
        let data = vars.data().lock().unwrap_or_else(|p| p.into_inner());
        for (name, var) in data.iter() {
            let saved = self.0.get(name).ok_or_else(|| {
                Error::Tuner(format!("cannot restore `{name}`: the variable was added during the tuning run"))
            })?;
            var.set(&saved.to_device(var.device())?.to_dtype(var.dtype())?)?;
        }
        Ok(())
    }
}
