//! `OnExceptionCheckpoint`: a checkpoint when a run fails or is interrupted.

use std::path::PathBuf;

use crate::TrainerState;

/// Lightning's `OnExceptionCheckpoint`: when a run fails (an error, Ctrl-C, or a preemption
/// signal: SIGTERM, SIGUSR1, SIGHUP) it writes `<dirpath>/<filename>.ckpt` with the weights,
/// the counters (mid-epoch: the batches done) and the callbacks' states, so the run can
/// resume from it. After a signal, which stops the loop between batches, it also holds the
/// optimizer and scheduler states, and the resume is exact; after an error it does not (the
/// optimizer may be half-way through a step). A run that ends normally removes a file left
/// by an earlier failure.
///
/// ```
/// use lightning::OnExceptionCheckpoint;
/// // beside the run's other checkpoints: <log_dir>/checkpoints/on_exception.ckpt
/// let beside = OnExceptionCheckpoint::default();
/// let fixed = OnExceptionCheckpoint::new("ckpts");
/// assert_eq!(fixed.path(), std::path::Path::new("ckpts/on_exception.ckpt"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct OnExceptionCheckpoint {
    /// Where it writes; empty (the default): the run's checkpoint directory, where
    /// `ModelCheckpoint` saves by default (`<log_dir>/checkpoints`).
    pub dirpath: PathBuf,
    /// Without `.ckpt` (default `on_exception`).
    pub filename: String,
    written: Option<PathBuf>,
}

impl OnExceptionCheckpoint {
    /// Writes `<dirpath>/on_exception.ckpt` (Lightning's `OnExceptionCheckpoint(dirpath)`).
    pub fn new(dirpath: impl Into<PathBuf>) -> Self {
        OnExceptionCheckpoint { dirpath: dirpath.into(), filename: "on_exception".into(), written: None }
    }

    /// The file it writes, for a `dirpath` that was given.
    pub fn path(&self) -> PathBuf {
        self.dirpath.join(format!("{}.ckpt", self.file_stem()))
    }

    /// The checkpoint the last failed run asked for (written unless the save itself failed).
    pub fn written(&self) -> Option<&std::path::Path> {
        self.written.as_deref()
    }

    fn file_stem(&self) -> &str {
        if self.filename.is_empty() {
            "on_exception"
        } else {
            &self.filename
        }
    }

    /// The file for this run: an empty `dirpath` means the run's checkpoint directory.
    fn path_in(&self, t: &TrainerState) -> PathBuf {
        if !self.dirpath.as_os_str().is_empty() {
            return self.path();
        }
        let base = t.log_dir.clone().unwrap_or_else(|| t.default_root_dir.clone());
        base.join("checkpoints").join(format!("{}.ckpt", self.file_stem()))
    }
}

#[lightning_macros::callback(monitoring)]
impl OnExceptionCheckpoint {
    fn on_exception(&mut self, trainer: &mut TrainerState) {
        let path = self.path_in(trainer);
        self.written = Some(path.clone());
        trainer.save_checkpoint(path);
    }

    fn teardown(&mut self, trainer: &TrainerState) -> std::io::Result<()> {
        let path = self.path_in(trainer);
        // a checkpoint is a directory (format 3) or a file (format 2)
        let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
