//! `EmaWeights`: an exponential moving average of the weights, used for validation and kept
//! at the end of training (Lightning's `WeightAveraging` with an EMA average).

use std::collections::BTreeMap;

use candle_core::Tensor;

use crate::{Checkpoint, HasParameters, Result};

/// Prefix of the averages' names among a checkpoint's tensors.
const PREFIX: &str = "ema/";

/// Keeps `ema = decay · ema + (1 − decay) · w` for every parameter after each optimizer
/// step; validation runs with the averaged weights (the training weights come back after it),
/// and when `fit` ends the module keeps the averaged weights.
///
/// Checkpoints keep the average (as `ema/<name>` tensors in `extra.safetensors`) and the
/// update count, so a resumed run continues the same average; the checkpoint's weights stay
/// the training weights, which resuming needs.
#[derive(Debug, Clone)]
pub struct EmaWeights {
    decay: f64,
    ema: BTreeMap<String, Tensor>,
    backup: BTreeMap<String, Tensor>,
    /// Averages read from a checkpoint, used by the next `on_fit_start`.
    restored: BTreeMap<String, Tensor>,
    /// Updates done.
    pub updates: usize,
}

impl EmaWeights {
    /// `decay` in [0, 1): the weight of the old average (0.999 is usual).
    pub fn new(decay: f64) -> Self {
        EmaWeights {
            decay: decay.clamp(0.0, 1.0),
            ema: BTreeMap::new(),
            backup: BTreeMap::new(),
            restored: BTreeMap::new(),
            updates: 0,
        }
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
        let restored = std::mem::take(&mut self.restored);
        self.ema = data
            .iter()
            .map(|(k, v)| {
                let w = v.as_tensor();
                let avg = match restored.get(k) {
                    // a resumed run continues the saved average, on the weights' device and dtype
                    Some(a) if a.dims() == w.dims() => a.to_device(w.device())?.to_dtype(w.dtype())?,
                    _ => w.copy()?,
                };
                Ok((k.clone(), avg))
            })
            .collect::<Result<_>>()?;
        Ok(())
    }

    fn state_dict(&mut self) -> serde_json::Value {
        serde_json::json!({ "updates": self.updates, "decay": self.decay })
    }

    fn load_state_dict(&mut self, state_dict: &serde_json::Value) -> Result<()> {
        self.updates = super::restored::count(state_dict, "EmaWeights", "updates")?.unwrap_or(0);
        Ok(())
    }

    fn on_save_checkpoint(&mut self, checkpoint: &mut Checkpoint) {
        for (name, avg) in &self.ema {
            checkpoint.tensors.insert(format!("{PREFIX}{name}"), avg.clone());
        }
    }

    fn on_load_checkpoint(&mut self, checkpoint: &mut Checkpoint) {
        self.restored = checkpoint
            .tensors
            .iter()
            .filter_map(|(k, t)| Some((k.strip_prefix(PREFIX)?.to_string(), t.clone())))
            .collect();
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
