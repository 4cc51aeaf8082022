//! `ModelCheckpoint`: saves checkpoints during `fit` (the latest one is kept).

use std::path::PathBuf;

use crate::TrainerState;

/// Lightning's `ModelCheckpoint` without a monitor: keeps the latest checkpoint, named
/// `epoch={epoch}-step={step}.ckpt`. It saves in `on_train_epoch_end` when validation
/// runs once per epoch (or not at all), otherwise after each validation run; never
/// during the sanity check, and never twice for one global step.
#[derive(Debug, Clone, Default)]
pub struct ModelCheckpoint {
    dirpath: Option<PathBuf>,
    save_on_train_epoch_end: Option<bool>,
    last_global_step_saved: Option<usize>,
    last_path: Option<PathBuf>,
}

impl ModelCheckpoint {
    pub fn new() -> Self {
        Self::default()
    }

    /// The directory (default: `<default_root_dir>/checkpoints`).
    pub fn dirpath(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dirpath = Some(dir.into());
        self
    }

    /// Forces saving at train epoch end (`true`) or after validation (`false`).
    pub fn save_on_train_epoch_end(mut self, v: bool) -> Self {
        self.save_on_train_epoch_end = Some(v);
        self
    }

    /// The last checkpoint this callback asked for.
    pub fn last_model_path(&self) -> Option<&std::path::Path> {
        self.last_path.as_deref()
    }

    fn on_epoch_end_rule(&self, t: &TrainerState) -> bool {
        if let Some(v) = self.save_on_train_epoch_end {
            return v;
        }
        if t.check_val_every_n_epoch != Some(1) {
            return false;
        }
        t.num_val_batches == 0 || t.val_check_once_per_epoch
    }

    fn save(&mut self, t: &mut TrainerState) {
        if t.sanity_checking || t.stage != crate::Stage::Fit || self.last_global_step_saved == Some(t.global_step) {
            return;
        }
        let dir = self.dirpath.clone().unwrap_or_else(|| t.default_root_dir.join("checkpoints"));
        let path = dir.join(format!("epoch={}-step={}.ckpt", t.current_epoch, t.global_step));
        let replaces = self.last_path.replace(path.clone());
        t.request_save(path, replaces);
        self.last_global_step_saved = Some(t.global_step);
    }
}

#[lightning_macros::callback(monitoring)]
impl ModelCheckpoint {
    fn on_train_epoch_end(&mut self, trainer: &mut TrainerState) {
        if self.on_epoch_end_rule(trainer) {
            self.save(trainer);
        }
    }

    fn on_validation_end(&mut self, trainer: &mut TrainerState) {
        if !self.on_epoch_end_rule(trainer) {
            self.save(trainer);
        }
    }
}
