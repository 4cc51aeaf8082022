//! Carrying out checkpoint saves that hooks asked for.

use super::dispatch;
use crate::checkpoints::checkpoint::module_state;
use crate::checkpoints::ckpt_files::delete_checkpoint;
use crate::{
    CallbackList, Checkpoint, DataModule, LightningModule, LrScheduler, Optimizer, Optimizers, Result, TrainerState,
};

/// Builds a checkpoint in Lightning's order: the trainer's counters and the weights,
/// every callback's `state_dict`, then `on_save_checkpoint` of the callbacks, then the module.
pub(crate) fn build<M: LightningModule, L: CallbackList<M>, DM: DataModule<Batch = M::Batch>>(
    state: &mut TrainerState,
    model: &mut M,
    cbs: &mut L,
    dm: &mut DM,
    optim: Option<&mut M::Optim>,
    weights_only: bool,
) -> Result<Checkpoint> {
    let mut ck = Checkpoint {
        epoch: state.current_epoch,
        global_step: state.global_step,
        batches_done: state.batches_done,
        epoch_complete: state.at_epoch_end,
        state_dict: weights_state(state, model.parameters()),
        hyper_parameters: model.hyperparameters()?,
        weights_only,
        dropout: Some(crate::nn::dropout_state()),
        // with the optimizers' states: what a resume continues from
        grad_scaler: if weights_only { None } else { state.scaler.as_ref().map(|s| s.state_dict()) },
        frozen: state.frozen.saved(),
        ..Checkpoint::default()
    };
    match (optim, weights_only) {
        (Some(optim), false) => (ck.optimizers, ck.scheduler) = optimizer_state(optim)?,
        // an on_exception checkpoint after a signal: the states taken when the loop stopped
        (None, false) => {
            if let Some((optimizers, scheduler)) = &state.stopped_optim {
                (ck.optimizers, ck.scheduler) = (optimizers.clone(), scheduler.clone());
            }
        }
        _ => {}
    }
    for (key, value) in dispatch::state_dict(state, model, cbs)? {
        if !value.is_null() {
            ck.callbacks.insert(key.to_owned(), value);
        }
    }
    let dm_state = dispatch::datamodule_state_dict(dm)?;
    if !dm_state.is_null() {
        ck.datamodule = Some(dm_state);
    }
    dispatch::on_save_checkpoint(state, model, cbs, &mut ck)?;
    Ok(ck)
}

/// The optimizers' states and the scheduler's.
pub(crate) fn optimizer_state<O: Optimizers>(
    optim: &mut O,
) -> Result<(Vec<crate::optim::OptimizerState>, Option<serde_json::Value>)> {
    let states = (0..optim.count()).filter_map(|i| optim.get(i).map(|o| o.state_dict())).collect::<Result<_>>()?;
    Ok((states, optim.parts().1.map(|(s, _)| s.state())))
}

/// Writes every requested checkpoint (on rank 0 under DDP). Files replaced by top-k are
/// deleted only after every new checkpoint (`last.ckpt` included) is on disk, so no
/// checkpoint left by a crash names a best that is gone; each is renamed aside before it is
/// deleted, so none is left half-deleted under its name.
#[inline]
pub(crate) fn flush<M: LightningModule, L: CallbackList<M>, DM: DataModule<Batch = M::Batch>>(
    state: &mut TrainerState,
    model: &mut M,
    cbs: &mut L,
    dm: &mut DM,
    mut optim: Option<&mut M::Optim>,
) -> Result<()> {
    if state.save_requests.is_empty() {
        return Ok(());
    }
    // under DDP every rank builds the checkpoint (its hooks run everywhere, as in Lightning)
    // and rank 0 alone writes it
    let writer = state.is_global_zero();
    let requests = std::mem::take(&mut state.save_requests);
    for req in &requests {
        let ck = build(state, model, cbs, dm, optim.as_deref_mut(), req.weights_only)?;
        if writer {
            ck.save(&req.path)?;
        }
        state.last_saved = Some(req.path.clone());
    }
    if writer {
        let written: Vec<&std::path::Path> = requests.iter().map(|r| r.path.as_path()).collect();
        for old in requests.iter().filter_map(|r| r.replaces.as_deref()) {
            if !written.contains(&old) {
                delete_checkpoint(old)?;
            }
        }
        if let Some(saved) = &state.saved_checkpoints {
            for l in &mut state.loggers {
                l.after_save_checkpoint(saved)?;
            }
        }
    }
    Ok(())
}

/// The module's weights for `model.safetensors`: under mixed precision the f32 master weights
/// in place of the variables computed with, as Lightning's f32 module saves them.
fn weights_state(
    state: &TrainerState,
    params: &candle_nn::VarMap,
) -> std::collections::BTreeMap<String, candle_core::Tensor> {
    let mut weights = module_state(params);
    if !state.masters.is_empty() {
        for (name, v) in crate::checkpoints::checkpoint::module_vars(params) {
            if let Some(m) = state.masters.get(&v.id()) {
                weights.insert(name, m.as_tensor().clone());
            }
        }
    }
    weights
}

/// Files for the run's log directory (the CLI's `config.yaml`, as Lightning's
/// `SaveConfigCallback` writes it), each written whole or not at all.
pub(crate) fn log_files(dir: &std::path::Path, files: &[(String, String)]) -> Result<()> {
    for (name, text) in files {
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
        crate::checkpoints::atomic::write_atomic(&dir.join(name), text.as_bytes())?;
    }
    Ok(())
}
