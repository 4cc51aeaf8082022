//! Resuming a fit from a checkpoint, all or nothing: every part of the checkpoint is read
//! and checked before any is applied, so a checkpoint that does not fit leaves the module's
//! weights and the trainer's counters as they were.

use std::path::{Path, PathBuf};

use candle_core::{Tensor, Var};

use super::dispatch;
use crate::checkpoints::checkpoint::{optimizer_mismatch, set_all};
use crate::{
    CallbackList, Checkpoint, DataModule, Error, LightningModule, LrScheduler, Optimizer, Optimizers, Result,
    TrainerState,
};

/// A checkpoint read and checked against the module, waiting for the optimizers.
pub(crate) struct Resume {
    path: PathBuf,
    ck: Checkpoint,
    /// The module's variables and their values from the checkpoint, converted, not yet set.
    weights: Vec<(Var, Tensor)>,
}

impl Resume {
    /// Reads the checkpoint and runs Lightning's restore hooks: the module's
    /// `on_load_checkpoint` (it may edit the dict), the datamodule's and the callbacks' states.
    /// The weights and the optimizers' states are checked against the module after the
    /// module's hook and before the others, and applied only by [`Resume::apply`].
    pub(crate) fn read<M: LightningModule, L: CallbackList<M>, DM: DataModule<Batch = M::Batch>>(
        path: &Path,
        state: &mut TrainerState,
        model: &mut M,
        cbs: &mut L,
        dm: &mut DM,
    ) -> Result<Self> {
        let mut ck = Checkpoint::load(path)?;
        if ck.weights_only {
            return Err(Error::bad_file(
                path,
                "a weights-only checkpoint has no optimizer state to resume training from: load it with `load_from_checkpoint`",
            ));
        }
        let mut weights = Vec::new();
        // after the module's hook (it may edit the dict), before the callbacks'
        dispatch::on_load_checkpoint(state, model, cbs, &mut ck, |state, model, _, ck| {
            weights = ck.prepare_weights(model.parameters(), path)?;
            // mixed precision: the master weights from the checkpoint's (f32) weights, not their
            // rounding (the optimizer's saved master copies, when there, are the same values)
            let names = crate::checkpoints::checkpoint::module_vars(model.parameters());
            for (name, v) in &names {
                if let (Some(m), Some(t)) = (state.masters.get(&v.id()), ck.state_dict.get(name)) {
                    weights.push((m.clone(), t.to_device(m.device())?.to_dtype(m.dtype())?.copy()?));
                }
            }
            ck.check_optimizer_state(model.parameters(), path)?;
            match &ck.datamodule {
                Some(s) => dispatch::datamodule_load_state_dict(dm, s),
                None => Ok(()),
            }
        })?;
        dispatch::load_state_dict(state, model, cbs, &ck.callbacks)?;
        Ok(Resume { path: path.to_path_buf(), ck, weights })
    }

    /// The epoch to start at and the batches of it already done.
    pub(crate) fn start(&self) -> (usize, usize) {
        let ck = &self.ck;
        if ck.epoch_complete {
            (ck.epoch + 1, 0)
        } else {
            (ck.epoch, ck.batches_done)
        }
    }

    /// Re-creates the parameter groups the saved run added while training (fine-tuning's
    /// unfrozen groups), before the master weights and the states are checked and applied.
    pub(crate) fn restore_groups<O: Optimizers>(&self, optim: &mut O, vars: &candle_nn::VarMap) -> Result<()> {
        for (i, s) in self.ck.optimizers.iter().enumerate() {
            if let Some(o) = optim.get(i) {
                crate::optim::added_groups::restore(o, s, vars)
                    .map_err(|e| optimizer_mismatch(&self.path, i, unprefixed(e)))?;
            }
        }
        Ok(())
    }

    /// Checks the optimizers' and the scheduler's states against what `configure_optimizers`
    /// returned, then applies every part: the weights, the optimizers' and the scheduler's
    /// states, the step counter. An error before that changes none of them.
    pub(crate) fn apply<O: Optimizers>(self, state: &mut TrainerState, optim: &mut O) -> Result<()> {
        let Resume { path, ck, weights } = self;
        let n = optim.count();
        if !ck.optimizers.is_empty() && ck.optimizers.len() != n {
            let (saved, hook) = (ck.optimizers.len(), dispatch::name::CONFIGURE_OPTIMIZERS);
            let reason = format!("the checkpoint has {saved} optimizers, {hook} {n}");
            return Err(optimizer_mismatch(&path, 0, reason));
        }
        for (i, s) in ck.optimizers.iter().enumerate() {
            if let Some(o) = optim.get(i) {
                o.check_state_dict(s).map_err(|e| optimizer_mismatch(&path, i, unprefixed(e)))?;
            }
        }
        // a fresh scheduler, replaced whole: nothing else has changed if it refuses the state
        if let (Some((sched, _)), Some(s)) = (optim.parts().1, &ck.scheduler) {
            sched.load_state(s).map_err(|e| Error::CheckpointMismatch {
                path: path.clone(),
                reason: format!(
                    "the LR scheduler's state does not fit the scheduler {} returned ({}); resume with the scheduler it was saved with",
                    dispatch::name::CONFIGURE_OPTIMIZERS,
                    unprefixed(e)
                ),
            })?;
        }
        if let Some(st) = ck.grad_scaler.filter(|_| state.scaler.is_some()) {
            st.check().map_err(|reason| Error::CheckpointField {
                path: Some(path.clone()),
                field: "grad_scaler".into(),
                reason,
            })?;
        }
        set_all(weights)?;
        for (i, s) in ck.optimizers.iter().enumerate() {
            if let Some(o) = optim.get(i) {
                o.load_state_dict(s)?;
            }
        }
        if let Some(d) = ck.dropout {
            crate::nn::set_dropout_state(d);
        }
        if let Some(frozen) = ck.frozen {
            // what was frozen when it was saved, not what `setup` froze again
            state.frozen.set(frozen);
        }
        state.global_step = ck.global_step;
        restore_scaler(state, ck.grad_scaler.as_ref(), &path);
        super::results::restored_all(&path);
        Ok(())
    }
}

/// The loss scaler's state under `16-mixed` (torch's `load_state_dict`: the saved settings
/// replace the configured ones, which a warning says). A checkpoint of another precision
/// leaves the fresh scaler; one with a scaler resumed under another precision drops it.
fn restore_scaler(state: &mut TrainerState, saved: Option<&crate::GradScalerState>, path: &Path) {
    let Some(scaler) = &mut state.scaler else { return };
    let Some(saved) = saved else {
        crate::dist::rank_zero_warn(format_args!(
            "the checkpoint {} has no loss scaler state (it was not saved under precision \"16-mixed\"): the scaler starts at its init_scale",
            path.display()
        ));
        return;
    };
    if scaler.load_state_dict(saved) {
        crate::dist::rank_zero_warn(format_args!(
            "the loss scaler's growth_factor {}, backoff_factor {} and growth_interval {} come from the checkpoint {}, in place of the configured ones (as torch's GradScaler.load_state_dict)",
            saved.growth_factor,
            saved.backoff_factor,
            saved.growth_interval,
            path.display()
        ));
    }
}

/// A configuration error's reason, without the `flag:` prefix it is displayed with.
fn unprefixed(e: Error) -> String {
    match e {
        Error::Config { reason, .. } => reason,
        other => other.to_string(),
    }
}
