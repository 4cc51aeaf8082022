//! Manual optimization: the module drives its optimizers from `training_step`
//! (Lightning's `automatic_optimization = False`).

use candle_core::Tensor;

use super::backward::{backward, Sync};
use crate::trainer::dispatch;
use crate::{CallbackList, Error, Gradients, LightningModule, Optimizer, Optimizers, Result, TrainerState};

type Opt<M> = <<M as LightningModule>::Optim as Optimizers>::Optimizer;

/// What `training_step` receives as `manual` under `#[lightning_module(manual_optimization)]`:
/// Lightning's `self.manual_backward(loss)`, `opt.step()` and `opt.zero_grad()`, with their hooks.
pub trait ManualOptimization<M: LightningModule> {
    /// `manual_backward`: `on_before_backward` (callbacks, then the module), `backward` (the
    /// module), `on_after_backward` (callbacks, then the module).
    /// Gradients add up until `zero_grad`. Under `16-mixed` the loss is scaled first, as
    /// Lightning's `manual_backward` scales it.
    fn backward(&mut self, module: &mut M, trainer: &mut TrainerState, loss: &Tensor) -> Result<()>;
    /// `opt.step()` for optimizer `index`: `on_before_optimizer_step` (callbacks, then the
    /// module), then the update of
    /// that optimizer's parameters. Counts one global step. Under `16-mixed` that
    /// optimizer's gradients are unscaled first, and the update is skipped (the step still
    /// counts) when one holds an inf or NaN; the scale is updated after it.
    fn step(&mut self, module: &mut M, trainer: &mut TrainerState, index: usize) -> Result<()>;
    /// `opt.zero_grad()`: forgets all gradients.
    fn zero_grad(&mut self) -> Result<()>;
    /// Optimizer `index`, e.g. to read or set its learning rate.
    fn optimizer(&mut self, index: usize) -> Result<&mut Opt<M>>;
}

/// What an automatically optimized `training_step` gets: every call is an error that says
/// how to turn manual optimization on.
pub(crate) struct Automatic;

fn off() -> Error {
    Error::config(
        "manual_optimization",
        concat!(
            "this module is optimized automatically: write `#[lightning_module(manual_optimization)]` on its impl to drive the optimizers from ",
            dispatch::hook_name!(training_step)
        ),
    )
}

impl<M: LightningModule> ManualOptimization<M> for Automatic {
    fn backward(&mut self, _: &mut M, _: &mut TrainerState, _: &Tensor) -> Result<()> {
        Err(off())
    }
    fn step(&mut self, _: &mut M, _: &mut TrainerState, _: usize) -> Result<()> {
        Err(off())
    }
    fn zero_grad(&mut self) -> Result<()> {
        Err(off())
    }
    fn optimizer(&mut self, _: usize) -> Result<&mut Opt<M>> {
        Err(off())
    }
}

pub(crate) struct Manual<'a, M: LightningModule, C> {
    pub callbacks: &'a mut C,
    pub optim: &'a mut M::Optim,
    pub grads: &'a mut Gradients,
    pub steps: usize,
    pub guard: &'a mut crate::trainer::unused::UnusedGuard,
}

fn no_optimizer(index: usize, count: usize) -> Error {
    let hook = dispatch::name::CONFIGURE_OPTIMIZERS;
    Error::config("optimizer", format!("optimizer {index} does not exist: {hook} returned {count}"))
}

impl<M: LightningModule, C: CallbackList<M>> ManualOptimization<M> for Manual<'_, M, C> {
    fn backward(&mut self, module: &mut M, trainer: &mut TrainerState, loss: &Tensor) -> Result<()> {
        Error::check_scalar_loss(loss, "passed to `manual_backward`")?;
        // a half-precision loss goes backward from f32, as under Lightning's autocast
        let wide = crate::devices::precision::widen(loss)?;
        let loss = &wide;
        // DDP syncs every manual backward, as torch's DDP does in backward: gradients already
        // averaged stay equal on every rank, so the sum stays the mean. Unused parameters
        // are checked per optimizer at `step`.
        backward(trainer, module, self.callbacks, self.grads, loss, Sync::Now, |_, _| Ok(()))
    }

    fn step(&mut self, module: &mut M, trainer: &mut TrainerState, index: usize) -> Result<()> {
        let count = self.optim.count();
        let opt = self.optim.get(index).ok_or_else(|| no_optimizer(index, count))?;
        // 16-mixed: this optimizer's gradients unscaled before the hook (torch's `unscale_`)
        let found_inf = match &trainer.scaler {
            Some(s) => s.unscale(self.grads, opt)?,
            None => false,
        };
        dispatch::on_before_optimizer_step(trainer, module, self.callbacks, opt, self.grads)?;
        self.guard.check(index, opt, self.grads, &trainer.frozen)?;
        if !found_inf {
            opt.step(self.grads)?;
        }
        if let Some(s) = &mut trainer.scaler {
            s.update(found_inf);
        }
        self.steps += 1;
        Ok(())
    }

    fn zero_grad(&mut self) -> Result<()> {
        self.grads.clear();
        Ok(())
    }

    fn optimizer(&mut self, index: usize) -> Result<&mut Opt<M>> {
        let count = self.optim.count();
        self.optim.get(index).ok_or_else(|| no_optimizer(index, count))
    }
}
