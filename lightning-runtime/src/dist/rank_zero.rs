//! Lightning's `rank_zero_only` for code outside the hooks (prints, files, downloads): this
//! process's rank, known once the trainer joined a job, else read from the launcher's
//! variables, else 0.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::WorldEnv;

/// The rank the trainer joined as (`usize::MAX`: none yet).
static JOINED: AtomicUsize = AtomicUsize::new(usize::MAX);

pub(crate) fn set_global_rank(rank: usize) {
    JOINED.store(rank, Ordering::Relaxed);
}

/// This process's rank in a data-parallel job: the trainer's once built, else the launcher's
/// (`mpirun`, torchrun-style variables), else 0.
pub fn global_rank() -> usize {
    match JOINED.load(Ordering::Relaxed) {
        usize::MAX => WorldEnv::detect().ok().flatten().map_or(0, |e| e.rank),
        rank => rank,
    }
}

/// Runs `f` on rank 0 only (Lightning's `@rank_zero_only`); `None` on the other ranks.
///
/// ```
/// let printed = lightning::dist::rank_zero_only(|| println!("once per job"));
/// assert!(printed.is_some(), "a process started alone is rank 0");
/// ```
pub fn rank_zero_only<R>(f: impl FnOnce() -> R) -> Option<R> {
    (global_rank() == 0).then(f)
}

/// Prints `warning: {message}` to standard error on rank 0 only, so a job prints it once
/// (Lightning's `rank_zero_warn`).
pub fn rank_zero_warn(message: impl std::fmt::Display) {
    rank_zero_only(|| eprintln!("warning: {message}"));
}
