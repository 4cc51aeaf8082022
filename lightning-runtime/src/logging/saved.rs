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
    /// The checkpoint with the best monitored value so far.
    pub best_model_path: Option<PathBuf>,
    /// Its monitored value.
    pub best_model_score: Option<f64>,
    /// The checkpoints top-k keeps, with their scores.
    pub best_k_models: BTreeMap<PathBuf, f64>,
    /// The logged metric the callback ranks checkpoints by, if any.
    pub monitor: Option<String>,
    /// `"min"` or `"max"`.
    pub mode: &'static str,
    /// Whether `last.ckpt` is written at every save.
    pub save_last: bool,
    /// How many checkpoints are kept: the best k with a monitor; `-1` all, `0` none.
    pub save_top_k: i64,
    /// Whether checkpoints hold only the weights and counters (no optimizer state).
    pub save_weights_only: bool,
    /// Saves every N optimizer steps (0: not by steps).
    pub every_n_train_steps: usize,
    /// Saves every N epochs (`None`: the default, 1 unless saving by steps).
    pub every_n_epochs: Option<usize>,
}
