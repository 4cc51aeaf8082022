//! Hook sequences shared by every entry point.

use candle_core::Device;

use super::dispatch;
use crate::{CallbackList, DataModule, LightningModule, Result, Stage, TrainerState};

/// `prepare_data` (datamodule, module; once per node under DDP), `setup` (datamodule,
/// callbacks, module), `configure_model`, then the move of the parameters to the device and
/// dtype.
pub(crate) fn setup<M: LightningModule, L: CallbackList<M>, DM: DataModule<Batch = M::Batch>>(
    stage: Stage,
    state: &mut TrainerState,
    model: &mut M,
    cbs: &mut L,
    dm: &mut DM,
) -> Result<()> {
    // under DDP, once per node (its local rank 0, as Lightning's default
    // `prepare_data_per_node`); the other ranks wait for it, then every rank sets up
    dispatch::warn_replaced::<M, DM>();
    if state.local_rank() == 0 {
        dispatch::prepare_data(state, model, cbs, dm)?;
    }
    if let Some(world) = &state.world {
        // Lightning's "pre_setup" barrier
        world.barrier()?;
    }
    dispatch::setup(state, model, cbs, dm, stage)?;
    if let Some(world) = &state.world {
        // Lightning's "post_setup" barrier: no rank starts its loop before all are set up
        world.barrier()?;
    }
    dispatch::configure_model(state, model, cbs)?;
    // Lightning's strategy moves the module here: after configure_model, before the optimizers
    let dtype = state.precision.map(|p| p.dtype());
    let master = state.precision.and_then(|p| p.master_dtype());
    if let Some(m) = master {
        // mixed precision: the module's variables on the device in the master dtype are the
        // master weights, kept before the conversion to the compute dtype
        if let Some(r) = crate::devices::relocate::plan(model.parameters(), &state.device, Some(m))? {
            model.relocate_fields(&r)?;
            state.relocated = true;
        }
    }
    let before = master.map(|_| crate::checkpoints::checkpoint::module_vars(model.parameters()));
    if let Some(r) = crate::devices::relocate::plan(model.parameters(), &state.device, dtype)? {
        model.relocate_fields(&r)?;
        state.relocated = true;
    }
    if let (Some(m), Some(before)) = (master, before) {
        state.masters.clear();
        for (name, v) in crate::checkpoints::checkpoint::module_vars(model.parameters()) {
            if let Some(old) = before.get(&name).filter(|o| o.id() != v.id() && o.dtype() == m) {
                state.masters.insert(v.id(), old.clone());
            }
        }
    }
    crate::devices::device::check_parameters(&state.device, model.parameters())
}

/// `teardown`: datamodule, callbacks, module. Not reached when the run failed.
pub(crate) fn teardown<M: LightningModule, L: CallbackList<M>, DM: DataModule<Batch = M::Batch>>(
    stage: Stage,
    state: &mut TrainerState,
    model: &mut M,
    cbs: &mut L,
    dm: &mut DM,
) -> Result<()> {
    dispatch::teardown(state, model, cbs, dm, stage)
}

/// `on_before_batch_transfer` → `transfer_batch_to_device` → `on_after_batch_transfer`, each
/// the datamodule's when it writes that hook, else the module's (Lightning's
/// `_DataHookSelector`).
#[inline(always)]
pub(crate) fn transfer<M: LightningModule, L: CallbackList<M>, DM: DataModule<Batch = M::Batch>>(
    state: &mut TrainerState,
    model: &mut M,
    cbs: &mut L,
    dm: &mut DM,
    batch: M::Batch,
    device: &Device,
    dataloader_idx: usize,
) -> Result<M::Batch> {
    let batch = dispatch::on_before_batch_transfer(state, model, cbs, dm, batch, dataloader_idx)?;
    let batch = dispatch::transfer_batch_to_device(state, model, cbs, dm, batch, device, dataloader_idx)?;
    let batch = dispatch::on_after_batch_transfer(state, model, cbs, dm, batch, dataloader_idx)?;
    // the precision flag's input conversion (Lightning's `convert_input`)
    match state.precision {
        None => Ok(batch),
        Some(p) => crate::TransferBatch::cast_floats(batch, p.dtype()),
    }
}
