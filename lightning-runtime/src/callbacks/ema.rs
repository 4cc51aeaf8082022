//! `EmaWeights`: an exponential moving average of the weights, used for validation and kept
//! at the end of training (Lightning's `WeightAveraging` with an EMA average).

use std::collections::BTreeMap;

use candle_core::Tensor;

use crate::{HasParameters, Result};

/// Keeps `ema = decay · ema + (1 − decay) · w` for every parameter after each optimizer
/// step; validation runs with the averaged weights (the training weights come back after it),
/// and when `fit` ends the module keeps the averaged weights.
///
/// The average lives in memory only: a resumed run starts it again from the loaded weights.
#[derive(Debug, Clone)]
pub struct EmaWeights {
    decay: f64,
    ema: BTreeMap<String, Tensor>,
    backup: BTreeMap<String, Tensor>,
    /// Updates done.
    pub updates: usize,
}

impl EmaWeights {
    /// `decay` in [0, 1): the weight of the old average (0.999 is usual).
    pub fn new(decay: f64) -> Self {
        EmaWeights { decay: decay.clamp(0.0, 1.0), ema: BTreeMap::new(), backup: BTreeMap::new(), updates: 0 }
    }

    /// The averaged value of one parameter.
    pub fn average(&self, name: &str) -> Option<&Tensor> {
        self.ema.get(name)
    }

    fn swap_in(&mut self, module: &impl HasParameters) -> Result<()> {
        let data = module.parameters().data().lock().unwrap_or_else(|p| p.into_inner());
        for (name, var) in data.iter() {
            if let Some(avg) = self.ema.get(name) {
                self.backup.insert(name.clone(), var.as_tensor().copy()?);
                var.set(avg)?;
            }
        }
        Ok(())
    }

    fn swap_out(&mut self, module: &impl HasParameters) -> Result<()> {
        let data = module.parameters().data().lock().unwrap_or_else(|p| p.into_inner());
        for (name, saved) in std::mem::take(&mut self.backup) {
            if let Some(var) = data.get(&name) {
                var.set(&saved)?;
            }
        }
        Ok(())
    }
}

#[lightning_macros::callback]
impl EmaWeights {
    fn on_fit_start(&mut self, module: &mut impl HasParameters) -> Result<()> {
        let data = module.parameters().data().lock().unwrap_or_else(|p| p.into_inner());
        self.ema = data.iter().map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?))).collect::<Result<_>>()?;
        Ok(())
    }

    fn on_train_batch_end(&mut self, module: &mut impl HasParameters) -> Result<()> {
        let data = module.parameters().data().lock().unwrap_or_else(|p| p.into_inner());
        for (name, var) in data.iter() {
            if let Some(avg) = self.ema.get_mut(name) {
                *avg = (avg.affine(self.decay, 0.0)? + var.as_tensor().detach().affine(1.0 - self.decay, 0.0)?)?;
            }
        }
        self.updates += 1;
        Ok(())
    }

    fn on_validation_start(&mut self, module: &mut impl HasParameters) -> Result<()> {
        self.swap_in(module)
    }

    fn on_validation_end(&mut self, module: &mut impl HasParameters) -> Result<()> {
        self.swap_out(module)
    }

    fn on_fit_end(&mut self, module: &mut impl HasParameters) -> Result<()> {
        let data = module.parameters().data().lock().unwrap_or_else(|p| p.into_inner());
        for (name, var) in data.iter() {
            if let Some(avg) = self.ema.get(name) {
                var.set(avg)?;
            }
        }
        Ok(())
    }
}
