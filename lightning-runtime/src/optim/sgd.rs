//! SGD with momentum, dampening, Nesterov and weight decay, as `torch.optim.SGD`.

use candle_core::{Tensor, Var};

use super::{check_lr, Optimizer};
use crate::{Error, Gradients, Result};

/// Settings of [`Sgd`]; the defaults are torch's.
#[derive(Clone, Copy, Debug)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig { lr: 1e-3, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false }
    }
}

/// Stochastic gradient descent, step for step as `torch.optim.SGD`.
#[derive(Debug)]
pub struct Sgd {
    vars: Vec<Var>,
    momentum: Vec<Option<Tensor>>,
    config: SgdConfig,
}

impl Sgd {
    /// Plain SGD with this learning rate.
    pub fn new(vars: Vec<Var>, lr: f64) -> Result<Self> {
        Self::with_config(vars, SgdConfig { lr, ..SgdConfig::default() })
    }

    pub fn with_config(vars: Vec<Var>, config: SgdConfig) -> Result<Self> {
        check_lr(config.lr)?;
        if config.nesterov && (config.momentum <= 0.0 || config.dampening != 0.0) {
            return Err(Error::config("nesterov", "Nesterov momentum needs momentum > 0 and dampening = 0"));
        }
        let momentum = vec![None; vars.len()];
        Ok(Sgd { vars, momentum, config })
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &Gradients) -> Result<()> {
        let c = self.config;
        for (var, buf) in self.vars.iter().zip(self.momentum.iter_mut()) {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            let mut g = g.clone();
            if c.weight_decay != 0.0 {
                g = (g + (var.as_tensor() * c.weight_decay)?)?;
            }
            if c.momentum != 0.0 {
                let b = match buf.take() {
                    None => g.clone(),
                    Some(b) => ((b * c.momentum)? + (&g * (1.0 - c.dampening))?)?,
                };
                g = if c.nesterov { (g + (&b * c.momentum)?)? } else { b.clone() };
                *buf = Some(b);
            }
            var.set(&(var.as_tensor() - (g * c.lr)?)?)?;
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.config.lr = lr;
    }
}
