//! The one backward sequence, shared by automatic optimization (inside the optimizer
//! closure) and manual optimization (`manual_backward`).

use candle_core::Tensor;

use crate::trainer::dispatch;
use crate::{CallbackList, Error, Gradients, LightningModule, Result, TrainerState};

/// When the gradients are averaged over DDP's ranks.
pub(crate) enum Sync {
    /// Not now: a micro-batch inside an accumulation window (torch's `no_sync`).
    Later,
    /// Now, as torch's DDP does during backward.
    Now,
}

/// Under `16-mixed` the loss times the scale (Lightning's `pre_backward`), then
/// `on_before_backward` (callbacks, then the module), `backward`, the gradients of the
/// unfrozen parameters added to `grads`, `check` (run before the DDP mean, which fills
/// missing gradients with zeros), the mean over the ranks, then `on_after_backward`
/// (callbacks, then the module). As in Lightning, the hooks and `backward` see the scaled
/// loss and the scaled gradients.
pub(crate) fn backward<M, C>(
    state: &mut TrainerState,
    module: &mut M,
    cbs: &mut C,
    grads: &mut Gradients,
    loss: &Tensor,
    sync: Sync,
    check: impl FnOnce(&TrainerState, &Gradients) -> Result<()>,
) -> Result<()>
where
    M: LightningModule,
    C: CallbackList<M>,
{
    let scaled = match &state.scaler {
        Some(s) => Some(s.scale(loss)?),
        None => None,
    };
    let loss = scaled.as_ref().unwrap_or(loss);
    dispatch::on_before_backward(state, module, cbs, loss)?;
    let mut store = dispatch::backward(state, module, cbs, loss)?;
    if !state.frozen.is_empty() {
        // frozen parameters get no gradient (torch's `requires_grad = False`)
        state.frozen.drop_grads(&mut store);
    }
    grads.accumulate(store)?;
    // no gradient at all after a relocation has its own error below
    if !(state.relocated && grads.is_empty()) {
        check(state, grads)?;
    }
    if let (Some(world), Sync::Now) = (&state.world, sync) {
        // the mean gradient over the ranks, before any hook sees it
        crate::dist::average_gradients(world.as_ref(), grads)?;
        if !state.frozen.is_empty() {
            // the mean filled the frozen parameters' gradients with zeros: a step would decay them
            state.frozen.drop_accumulated(grads);
        }
    }
    if state.relocated && grads.is_empty() {
        return Err(Error::Device(format!(
            "the loss depends on none of the parameters moved to {:?}: a field of `{}` still holds the old tensors; implement `lightning::Relocate` for its type, or build the module on `trainer.device()` in its final dtype",
            state.device.location(),
            M::NAME
        )));
    }
    dispatch::on_after_backward(state, module, cbs, grads)
}
