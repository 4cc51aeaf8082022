//! AdamW, as `torch.optim.AdamW`.

use candle_core::{Tensor, Var};

use super::{check_lr, Optimizer};
use crate::{Gradients, Result};

/// Settings of [`AdamW`]; the defaults are torch's.
#[derive(Clone, Copy, Debug)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-2 }
    }
}

#[derive(Debug)]
struct Moments {
    m: Tensor,
    v: Tensor,
}

/// Adam with decoupled weight decay, step for step as `torch.optim.AdamW`.
#[derive(Debug)]
pub struct AdamW {
    vars: Vec<Var>,
    moments: Vec<Option<Moments>>,
    steps: Vec<u64>,
    config: AdamWConfig,
}

impl AdamW {
    pub fn new(vars: Vec<Var>, config: AdamWConfig) -> Result<Self> {
        check_lr(config.lr)?;
        let n = vars.len();
        Ok(AdamW { vars, moments: (0..n).map(|_| None).collect(), steps: vec![0; n], config })
    }

    /// AdamW with torch's defaults and this learning rate.
    pub fn with_lr(vars: Vec<Var>, lr: f64) -> Result<Self> {
        Self::new(vars, AdamWConfig { lr, ..AdamWConfig::default() })
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, grads: &Gradients) -> Result<()> {
        let c = self.config;
        for ((var, slot), t) in self.vars.iter().zip(self.moments.iter_mut()).zip(self.steps.iter_mut()) {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            *t += 1;
            let p = var.as_tensor();
            let p = if c.weight_decay != 0.0 { (p * (1.0 - c.lr * c.weight_decay))? } else { p.clone() };
            let (m, v) = match slot.take() {
                None => ((g * (1.0 - c.beta1))?, (g.sqr()? * (1.0 - c.beta2))?),
                Some(Moments { m, v }) => {
                    (((m * c.beta1)? + (g * (1.0 - c.beta1))?)?, ((v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?)
                }
            };
            let bc1 = 1.0 - c.beta1.powi(*t as i32);
            let bc2 = 1.0 - c.beta2.powi(*t as i32);
            let denom = ((v.sqrt()? / bc2.sqrt())? + c.eps)?;
            let update = ((&m / denom)? * (c.lr / bc1))?;
            var.set(&(p - update)?)?;
            *slot = Some(Moments { m, v });
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
