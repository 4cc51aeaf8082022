//! The optimizer closure: what `optimizer_step` runs to get gradients, as in Lightning.

use candle_core::Tensor;

use super::backward::{backward, Sync};
use crate::trainer::dispatch;
use crate::{
    CallbackList, Error, GradientClipAlgorithm, Gradients, LightningModule, Optimizer, Optimizers, Result, StepOutput,
    TrainerState,
};

type Opt<M> = <<M as LightningModule>::Optim as Optimizers>::Optimizer;

/// What `optimizer_step` receives as `optimizer_closure`.
///
/// `step(self, optimizer)` is Lightning's `optimizer.step(closure=optimizer_closure)`:
/// it runs `training_step`, zero-grad (first batch of a window), backward and their hooks,
/// then `on_before_optimizer_step`, `configure_gradient_clipping` and the update.
/// An override of `optimizer_step` must call `step` or `call`.
pub trait OptimizerClosure<M: LightningModule> {
    /// Runs the closure: `training_step`, zero-grad, backward. Returns the loss (already
    /// divided by `accumulate_grad_batches`), or `None` when the step returned none.
    fn call(&mut self, module: &mut M, optimizer: &mut Opt<M>) -> Result<Option<Tensor>>;
    /// Runs the closure if not yet run, then clips and applies the gradients.
    fn step(&mut self, module: &mut M, optimizer: &mut Opt<M>) -> Result<()>;
    /// The trainer's state.
    fn trainer(&mut self) -> &mut TrainerState;
}

pub(crate) struct Closure<'a, M: LightningModule, C> {
    pub state: &'a mut TrainerState,
    pub callbacks: &'a mut C,
    pub batch: &'a M::Batch,
    pub batch_idx: usize,
    pub grads: &'a mut Gradients,
    /// First batch of an accumulation window: zero the gradients.
    pub zero_grad: bool,
    /// Last batch of an accumulation window: under DDP, average the gradients over the
    /// ranks (earlier micro-batches only accumulate, as under torch's `no_sync`).
    pub sync: bool,
    pub clip: (Option<f64>, GradientClipAlgorithm),
    pub output: Option<StepOutput>,
    pub stepped: bool,
    pub guard: &'a mut crate::trainer::unused::UnusedGuard,
}

impl<M: LightningModule, C: CallbackList<M>> Closure<'_, M, C> {
    pub fn was_called(&self) -> bool {
        self.output.is_some()
    }
}

impl<M: LightningModule, C: CallbackList<M>> OptimizerClosure<M> for Closure<'_, M, C> {
    fn call(&mut self, module: &mut M, optimizer: &mut Opt<M>) -> Result<Option<Tensor>> {
        let state = &mut *self.state;
        let cbs = &mut *self.callbacks;
        let mut out =
            dispatch::training_step(state, module, cbs, self.batch, self.batch_idx, &mut super::manual::Automatic)?;
        // a half-precision loss is backpropagated and shown in f32, as under Lightning's autocast
        if let Some(loss) = out.loss.take() {
            out.loss = Some(crate::devices::precision::widen(&loss)?);
        }
        let k = state.accumulate_grad_batches;
        if k > 1 {
            if let Some(loss) = out.loss.take() {
                out.loss = Some((loss / k as f64)?);
            }
        }
        if let Some(loss) = &out.loss {
            Error::check_scalar_loss(loss, concat!("returned by `", dispatch::hook_name!(training_step), "`"))?;
        }
        if self.zero_grad {
            dispatch::on_before_zero_grad(state, module, cbs, optimizer)?;
            let epoch = state.current_epoch;
            dispatch::optimizer_zero_grad(state, module, cbs, epoch, self.batch_idx, optimizer, self.grads)?;
        }
        if let Some(loss) = &out.loss {
            let (window_end, guard) = (self.sync, &mut *self.guard);
            let sync = if window_end { Sync::Now } else { Sync::Later };
            // the unused-parameter check once per window, on this rank's own gradients
            let check = |s: &TrainerState, g: &Gradients| {
                if window_end {
                    guard.check(0, optimizer, g, &s.frozen)
                } else {
                    Ok(())
                }
            };
            backward(state, module, cbs, self.grads, loss, sync, check)?;
        }
        let loss = out.loss.clone();
        self.output = Some(out);
        Ok(loss)
    }

    fn step(&mut self, module: &mut M, optimizer: &mut Opt<M>) -> Result<()> {
        if !self.was_called() {
            self.call(module, optimizer)?;
        }
        let state = &mut *self.state;
        // 16-mixed (Lightning's `MixedPrecision.optimizer_step`): unscaled before the hook and
        // clipping; a closure that ran no backward (no loss) neither unscales nor steps
        let ran_backward = self.output.as_ref().is_some_and(|o| o.loss.is_some());
        let found_inf = match (&state.scaler, ran_backward) {
            (Some(s), true) => Some(s.unscale(self.grads, optimizer)?),
            (Some(_), false) => None,
            (None, _) => Some(false),
        };
        dispatch::on_before_optimizer_step(state, module, self.callbacks, optimizer, self.grads)?;
        dispatch::configure_gradient_clipping(
            state,
            module,
            self.callbacks,
            optimizer,
            self.clip.0,
            self.clip.1,
            self.grads,
        )?;
        if found_inf == Some(false) {
            optimizer.step(self.grads)?;
        }
        if let (Some(s), Some(inf)) = (&mut state.scaler, found_inf) {
            s.update(inf);
        }
        // a step the scaler skipped counts, as Lightning counts it
        self.stepped = true;
        Ok(())
    }

    fn trainer(&mut self) -> &mut TrainerState {
        self.state
    }
}

pub(crate) fn ensure_called<M: LightningModule, C: CallbackList<M>>(c: &Closure<'_, M, C>) -> Result<()> {
    if c.was_called() {
        Ok(())
    } else {
        Err(Error::ClosureNotCalled)
    }
}
