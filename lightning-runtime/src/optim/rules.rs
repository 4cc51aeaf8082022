//! torch.optim's update rules, step for step: SGD, Adam, AdamW, RMSprop, Adagrad.

use candle_core::Tensor;

use super::engine::{Optim, Rule};
use super::fused::AdamStep;
use super::Params;
use crate::{Error, Result};

fn check(name: &'static str, v: f64, ok: bool, want: &str) -> Result<()> {
    if v.is_finite() && ok {
        Ok(())
    } else {
        Err(Error::config(name, format!("must be {want}, got {v}")))
    }
}

fn beta(name: &'static str, b: f64) -> Result<()> {
    check(name, b, (0.0..1.0).contains(&b), "in [0, 1)")
}

fn non_negative(name: &'static str, v: f64) -> Result<()> {
    check(name, v, v >= 0.0, ">= 0")
}

/// `p·(1 − a) + b·q`, the shape of every moving average here.
fn ema(avg: &Tensor, a: f64, x: &Tensor) -> Result<Tensor> {
    Ok(((avg * a)? + (x * (1.0 - a))?)?)
}

fn with_decay(g: &Tensor, p: &Tensor, wd: f64) -> Result<Tensor> {
    Ok(if wd != 0.0 { (g + (p * wd)?)? } else { g.clone() })
}

/// Settings of `torch.optim.SGD`; the defaults are torch's (lr 1e-3).
#[derive(Clone, Copy, Debug)]
pub struct SgdConfig {
    /// The learning rate (1e-3).
    pub lr: f64,
    /// The momentum factor (0: none).
    pub momentum: f64,
    /// Dampening of the momentum (0).
    pub dampening: f64,
    /// L2 penalty, added to the gradient (0).
    pub weight_decay: f64,
    /// Nesterov momentum (off); needs `momentum > 0` and `dampening` 0.
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig { lr: 1e-3, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false }
    }
}

impl Rule for SgdConfig {
    const NAME: &'static str = "Sgd";
    const BUFFERS: &'static [&'static str] = &["momentum_buffer"];
    fn lr(&self) -> f64 {
        self.lr
    }
    fn momentum(&self) -> Option<f64> {
        Some(self.momentum)
    }
    fn set_momentum(&mut self, momentum: f64) {
        self.momentum = momentum;
    }
    fn validate(&self) -> Result<()> {
        super::check_lr(self.lr)?;
        non_negative("momentum", self.momentum)?;
        non_negative("weight_decay", self.weight_decay)?;
        check("dampening", self.dampening, (0.0..=1.0).contains(&self.dampening), "in [0, 1]")?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::config("nesterov", "Nesterov momentum needs momentum > 0 and dampening = 0"));
        }
        Ok(())
    }
    fn update(&self, lr: f64, _: u64, p: &Tensor, g: &Tensor, state: &mut [Option<Tensor>]) -> Result<Tensor> {
        let mut g = with_decay(g, p, self.weight_decay)?;
        if self.momentum != 0.0 {
            let buf = match state[0].take() {
                None => g.clone(),
                Some(b) => ((b * self.momentum)? + (&g * (1.0 - self.dampening))?)?,
            };
            g = if self.nesterov { (g + (&buf * self.momentum)?)? } else { buf.clone() };
            state[0] = Some(buf);
        }
        Ok((p - (g * lr)?)?)
    }
}

/// Settings of `torch.optim.Adam` (L2 weight decay added to the gradient).
#[derive(Clone, Copy, Debug)]
pub struct AdamConfig {
    /// The learning rate (1e-3).
    pub lr: f64,
    /// The first moment's decay, torch's `betas[0]` (0.9).
    pub beta1: f64,
    /// The second moment's decay, torch's `betas[1]` (0.999).
    pub beta2: f64,
    /// Added to the denominator for stability (1e-8).
    pub eps: f64,
    /// L2 penalty, added to the gradient (0).
    pub weight_decay: f64,
    /// Use the maximum of the second moments so far (AMSGrad; off).
    pub amsgrad: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, amsgrad: false }
    }
}

/// Settings of `torch.optim.AdamW` (decoupled weight decay).
#[derive(Clone, Copy, Debug)]
pub struct AdamWConfig {
    /// The learning rate (1e-3).
    pub lr: f64,
    /// The first moment's decay, torch's `betas[0]` (0.9).
    pub beta1: f64,
    /// The second moment's decay, torch's `betas[1]` (0.999).
    pub beta2: f64,
    /// Added to the denominator for stability (1e-8).
    pub eps: f64,
    /// Decoupled weight decay: each step scales the parameters by `1 − lr·weight_decay` (1e-2).
    pub weight_decay: f64,
    /// Use the maximum of the second moments so far (AMSGrad; off).
    pub amsgrad: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-2, amsgrad: false }
    }
}

/// Adam's moment update, shared by Adam and AdamW.
fn adam_step(
    lr: f64,
    (b1, b2, eps, amsgrad): (f64, f64, f64, bool),
    step: u64,
    p: &Tensor,
    g: &Tensor,
    state: &mut [Option<Tensor>],
) -> Result<Tensor> {
    let m = match state[0].take() {
        None => (g * (1.0 - b1))?,
        Some(m) => ema(&m, b1, g)?,
    };
    let g2 = g.sqr()?;
    let v = match state[1].take() {
        None => (&g2 * (1.0 - b2))?,
        Some(v) => ema(&v, b2, &g2)?,
    };
    let bc1 = 1.0 - b1.powi(step as i32);
    let bc2_sqrt = (1.0 - b2.powi(step as i32)).sqrt();
    let second = if amsgrad {
        let vmax = match state[2].take() {
            None => v.clone(),
            Some(old) => old.maximum(&v)?,
        };
        state[2] = Some(vmax.clone());
        vmax
    } else {
        v.clone()
    };
    let denom = ((second.sqrt()? / bc2_sqrt)? + eps)?;
    let new = (p - ((&m / denom)? * (lr / bc1))?)?;
    state[0] = Some(m);
    state[1] = Some(v);
    Ok(new)
}

fn adam_checks(lr: f64, b1: f64, b2: f64, eps: f64, wd: f64) -> Result<()> {
    super::check_lr(lr)?;
    beta("beta1", b1)?;
    beta("beta2", b2)?;
    non_negative("eps", eps)?;
    non_negative("weight_decay", wd)
}

impl Rule for AdamConfig {
    const NAME: &'static str = "Adam";
    const BUFFERS: &'static [&'static str] = &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"];
    fn lr(&self) -> f64 {
        self.lr
    }
    fn momentum(&self) -> Option<f64> {
        Some(self.beta1)
    }
    fn set_momentum(&mut self, momentum: f64) {
        self.beta1 = momentum;
    }
    fn validate(&self) -> Result<()> {
        adam_checks(self.lr, self.beta1, self.beta2, self.eps, self.weight_decay)
    }
    fn update(&self, lr: f64, step: u64, p: &Tensor, g: &Tensor, state: &mut [Option<Tensor>]) -> Result<Tensor> {
        let g = with_decay(g, p, self.weight_decay)?;
        adam_step(lr, (self.beta1, self.beta2, self.eps, self.amsgrad), step, p, &g, state)
    }
    fn update_in_place(
        &self,
        lr: f64,
        step: u64,
        p: &Tensor,
        g: &Tensor,
        state: &mut [Option<Tensor>],
    ) -> Result<bool> {
        let (b1, b2, eps, amsgrad) = (self.beta1, self.beta2, self.eps, self.amsgrad);
        let s = AdamStep { b1, b2, eps, amsgrad, l2: self.weight_decay, shrink: 1.0, lr, step };
        Ok(super::fused::adam_in_place(s, p, g, state)?)
    }
}

impl Rule for AdamWConfig {
    const NAME: &'static str = "AdamW";
    const BUFFERS: &'static [&'static str] = &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"];
    fn lr(&self) -> f64 {
        self.lr
    }
    fn momentum(&self) -> Option<f64> {
        Some(self.beta1)
    }
    fn set_momentum(&mut self, momentum: f64) {
        self.beta1 = momentum;
    }
    fn validate(&self) -> Result<()> {
        adam_checks(self.lr, self.beta1, self.beta2, self.eps, self.weight_decay)
    }
    fn update(&self, lr: f64, step: u64, p: &Tensor, g: &Tensor, state: &mut [Option<Tensor>]) -> Result<Tensor> {
        let p = if self.weight_decay != 0.0 { (p * (1.0 - lr * self.weight_decay))? } else { p.clone() };
        adam_step(lr, (self.beta1, self.beta2, self.eps, self.amsgrad), step, &p, g, state)
    }
    fn update_in_place(
        &self,
        lr: f64,
        step: u64,
        p: &Tensor,
        g: &Tensor,
        state: &mut [Option<Tensor>],
    ) -> Result<bool> {
        let (b1, b2, eps, amsgrad) = (self.beta1, self.beta2, self.eps, self.amsgrad);
        let shrink = 1.0 - lr * self.weight_decay;
        let s = AdamStep { b1, b2, eps, amsgrad, l2: 0.0, shrink, lr, step };
        Ok(super::fused::adam_in_place(s, p, g, state)?)
    }
}

/// Settings of `torch.optim.RMSprop`.
#[derive(Clone, Copy, Debug)]
pub struct RmsPropConfig {
    /// The learning rate (1e-2).
    pub lr: f64,
    /// The squared gradients' average's decay (0.99).
    pub alpha: f64,
    /// Added to the denominator for stability (1e-8).
    pub eps: f64,
    /// L2 penalty, added to the gradient (0).
    pub weight_decay: f64,
    /// The momentum factor (0: none).
    pub momentum: f64,
    /// Normalise by the gradient's estimated variance instead of its second moment (off).
    pub centered: bool,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        RmsPropConfig { lr: 1e-2, alpha: 0.99, eps: 1e-8, weight_decay: 0.0, momentum: 0.0, centered: false }
    }
}

impl Rule for RmsPropConfig {
    const NAME: &'static str = "RmsProp";
    const BUFFERS: &'static [&'static str] = &["square_avg", "momentum_buffer", "grad_avg"];
    fn lr(&self) -> f64 {
        self.lr
    }
    fn momentum(&self) -> Option<f64> {
        Some(self.momentum)
    }
    fn set_momentum(&mut self, momentum: f64) {
        self.momentum = momentum;
    }
    fn validate(&self) -> Result<()> {
        super::check_lr(self.lr)?;
        non_negative("alpha", self.alpha)?;
        non_negative("eps", self.eps)?;
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("momentum", self.momentum)
    }
    fn update(&self, lr: f64, _: u64, p: &Tensor, g: &Tensor, state: &mut [Option<Tensor>]) -> Result<Tensor> {
        let g = with_decay(g, p, self.weight_decay)?;
        let g2 = g.sqr()?;
        let sq = match state[0].take() {
            None => (&g2 * (1.0 - self.alpha))?,
            Some(s) => ema(&s, self.alpha, &g2)?,
        };
        let avg = if self.centered {
            let ga = match state[2].take() {
                None => (&g * (1.0 - self.alpha))?,
                Some(a) => ema(&a, self.alpha, &g)?,
            };
            let avg = ((&sq - ga.sqr()?)?.sqrt()? + self.eps)?;
            state[2] = Some(ga);
            avg
        } else {
            (sq.sqrt()? + self.eps)?
        };
        state[0] = Some(sq);
        let step = (g / avg)?;
        if self.momentum > 0.0 {
            let buf = match state[1].take() {
                None => step,
                Some(b) => ((b * self.momentum)? + step)?,
            };
            let new = (p - (&buf * lr)?)?;
            state[1] = Some(buf);
            Ok(new)
        } else {
            Ok((p - (step * lr)?)?)
        }
    }
}

/// Settings of `torch.optim.Adagrad`.
#[derive(Clone, Copy, Debug)]
pub struct AdagradConfig {
    /// The learning rate (1e-2).
    pub lr: f64,
    /// The rate at step `t` is `lr / (1 + (t − 1)·lr_decay)` (0).
    pub lr_decay: f64,
    /// L2 penalty, added to the gradient (0).
    pub weight_decay: f64,
    /// The starting value of the sum of squared gradients (0).
    pub initial_accumulator_value: f64,
    /// Added to the denominator for stability (1e-10).
    pub eps: f64,
}

impl Default for AdagradConfig {
    fn default() -> Self {
        AdagradConfig { lr: 1e-2, lr_decay: 0.0, weight_decay: 0.0, initial_accumulator_value: 0.0, eps: 1e-10 }
    }
}

impl Rule for AdagradConfig {
    const NAME: &'static str = "Adagrad";
    const BUFFERS: &'static [&'static str] = &["sum"];
    fn lr(&self) -> f64 {
        self.lr
    }
    fn validate(&self) -> Result<()> {
        super::check_lr(self.lr)?;
        non_negative("lr_decay", self.lr_decay)?;
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("initial_accumulator_value", self.initial_accumulator_value)?;
        non_negative("eps", self.eps)
    }
    fn update(&self, lr: f64, step: u64, p: &Tensor, g: &Tensor, state: &mut [Option<Tensor>]) -> Result<Tensor> {
        let g = with_decay(g, p, self.weight_decay)?;
        let clr = lr / (1.0 + (step - 1) as f64 * self.lr_decay);
        let sum = match state[0].take() {
            None => ((p.ones_like()? * self.initial_accumulator_value)? + g.sqr()?)?,
            Some(s) => (s + g.sqr()?)?,
        };
        let std = (sum.sqrt()? + self.eps)?;
        let new = (p - ((g / std)? * clr)?)?;
        state[0] = Some(sum);
        Ok(new)
    }
}

/// `torch.optim.SGD`.
pub type Sgd = Optim<SgdConfig>;
/// `torch.optim.Adam`.
pub type Adam = Optim<AdamConfig>;
/// `torch.optim.AdamW`.
pub type AdamW = Optim<AdamWConfig>;
/// `torch.optim.RMSprop`.
pub type RmsProp = Optim<RmsPropConfig>;
/// `torch.optim.Adagrad`.
pub type Adagrad = Optim<AdagradConfig>;

impl Sgd {
    /// Plain SGD with this learning rate.
    pub fn new(params: impl Into<Params>, lr: f64) -> Result<Self> {
        Self::with_rule(params, SgdConfig { lr, ..SgdConfig::default() })
    }
    /// SGD with these settings (momentum, Nesterov, weight decay, ...).
    pub fn with_config(params: impl Into<Params>, config: SgdConfig) -> Result<Self> {
        Self::with_rule(params, config)
    }
}

impl Adam {
    /// Adam with these settings (`AdamConfig::default()` for torch's).
    pub fn new(params: impl Into<Params>, config: AdamConfig) -> Result<Self> {
        Self::with_rule(params, config)
    }
    /// Adam with torch's defaults and this learning rate.
    pub fn with_lr(params: impl Into<Params>, lr: f64) -> Result<Self> {
        Self::with_rule(params, AdamConfig { lr, ..AdamConfig::default() })
    }
}

impl AdamW {
    /// AdamW with these settings (`AdamWConfig::default()` for torch's).
    pub fn new(params: impl Into<Params>, config: AdamWConfig) -> Result<Self> {
        Self::with_rule(params, config)
    }
    /// AdamW with torch's defaults and this learning rate.
    pub fn with_lr(params: impl Into<Params>, lr: f64) -> Result<Self> {
        Self::with_rule(params, AdamWConfig { lr, ..AdamWConfig::default() })
    }
}

impl RmsProp {
    /// RMSprop with these settings (`RmsPropConfig::default()` for torch's).
    pub fn new(params: impl Into<Params>, config: RmsPropConfig) -> Result<Self> {
        Self::with_rule(params, config)
    }
    /// RMSprop with torch's defaults and this learning rate.
    pub fn with_lr(params: impl Into<Params>, lr: f64) -> Result<Self> {
        Self::with_rule(params, RmsPropConfig { lr, ..RmsPropConfig::default() })
    }
}

impl Adagrad {
    /// Adagrad with these settings (`AdagradConfig::default()` for torch's).
    pub fn new(params: impl Into<Params>, config: AdagradConfig) -> Result<Self> {
        Self::with_rule(params, config)
    }
    /// Adagrad with torch's defaults and this learning rate.
    pub fn with_lr(params: impl Into<Params>, lr: f64) -> Result<Self> {
        Self::with_rule(params, AdagradConfig { lr, ..AdagradConfig::default() })
    }
}
