//! What `ModelCheckpoint` holds after a save, for loggers that keep checkpoints themselves
//! (Lightning passes the callback to `Logger.after_save_checkpoint`).

use std::collections::BTreeMap;
use std::path::PathBuf;

/// `ModelCheckpoint`'s paths, scores and settings after a save, given to
/// [`Logger::after_save_checkpoint`](super::Logger::after_save_checkpoint) once the files are on disk.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SavedCheckpoints {
    /// The newest checkpoint (`last.ckpt` with `save_last`).
    pub last_model_path: Option<PathBuf>,
    /// The monitored value at this save.
    pub current_score: Option<f64>,
    pub best_model_path: Option<PathBuf>,
    pub best_model_score: Option<f64>,
    /// The checkpoints top-k keeps, with their scores.
    pub best_k_models: BTreeMap<PathBuf, f64>,
    pub monitor: Option<String>,
    /// `"min"` or `"max"`.
    pub mode: &'static str,
    pub save_last: bool,
    pub save_top_k: i64,
    pub save_weights_only: bool,
    pub every_n_train_steps: usize,
    pub every_n_epochs: Option<usize>,
}
