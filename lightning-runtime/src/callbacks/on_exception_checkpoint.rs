//! `OnExceptionCheckpoint`: a checkpoint when a run fails or is interrupted.

use std::path::PathBuf;

use crate::TrainerState;

/// Lightning's `OnExceptionCheckpoint`: when a run fails (an error, or Ctrl-C) it writes
/// `<dirpath>/<filename>.ckpt` with the weights, the counters and the callbacks' states, so
/// the run can resume (without optimizer state: the optimizer belongs to the failed loop).
/// A run that ends normally removes a file left by an earlier failure.
#[derive(Debug, Clone)]
pub struct OnExceptionCheckpoint {
    pub dirpath: PathBuf,
    pub filename: String,
}

impl OnExceptionCheckpoint {
    pub fn new(dirpath: impl Into<PathBuf>) -> Self {
        OnExceptionCheckpoint { dirpath: dirpath.into(), filename: "on_exception".into() }
    }

    /// The file it writes.
    pub fn path(&self) -> PathBuf {
        self.dirpath.join(format!("{}.ckpt", self.filename))
    }
}

#[lightning_macros::callback(monitoring)]
impl OnExceptionCheckpoint {
    fn on_exception(&mut self, trainer: &mut TrainerState) {
        trainer.save_checkpoint(self.path());
    }

    fn teardown(&mut self) -> std::io::Result<()> {
        match std::fs::remove_file(self.path()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
