//! Hook sequences shared by every entry point.

use candle_core::Device;

use crate::{CallbackList, LightningModule, Result, Stage, TrainerState};

/// `prepare_data`, `setup` (callbacks, then module), `configure_model`.
pub(crate) fn setup<M: LightningModule, L: CallbackList<M>>(
    stage: Stage,
    state: &mut TrainerState,
    model: &mut M,
    cbs: &mut L,
) -> Result<()> {
    model.prepare_data(state)?;
    if L::IMPL_SETUP {
        cbs.setup(state, model, stage)?;
    }
    model.setup(state, stage)?;
    model.configure_model(state)?;
    // Lightning's strategy moves the module here: after configure_model, before the optimizers
    let dtype = state.precision.map(|p| p.dtype());
    if let Some(r) = crate::relocate::plan(model.parameters(), &state.device, dtype)? {
        model.relocate_fields(&r)?;
        state.relocated = true;
    }
    crate::device::check_parameters(&state.device, model.parameters())
}

/// `teardown`: callbacks, then module. Not reached when the run failed.
pub(crate) fn teardown<M: LightningModule, L: CallbackList<M>>(
    stage: Stage,
    state: &mut TrainerState,
    model: &mut M,
    cbs: &mut L,
) -> Result<()> {
    if L::IMPL_TEARDOWN {
        cbs.teardown(state, model, stage)?;
    }
    model.teardown(state, stage)
}

/// `on_before_batch_transfer` → `transfer_batch_to_device` → `on_after_batch_transfer`.
#[inline(always)]
pub(crate) fn transfer<M: LightningModule>(
    state: &mut TrainerState,
    model: &mut M,
    batch: M::Batch,
    device: &Device,
    dataloader_idx: usize,
) -> Result<M::Batch> {
    let batch = model.on_before_batch_transfer(state, batch, dataloader_idx)?;
    let batch = model.transfer_batch_to_device(state, batch, device, dataloader_idx)?;
    let batch = model.on_after_batch_transfer(state, batch, dataloader_idx)?;
    // the precision flag's input conversion (Lightning's `convert_input`)
    match state.precision {
        None => Ok(batch),
        Some(p) => crate::TransferBatch::cast_floats(batch, p.dtype()),
    }
}
