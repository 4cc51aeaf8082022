//! Checkpoints on disk: their format and loading, atomic writes, and the files a run keeps.

pub(crate) mod atomic;
pub(crate) mod checkpoint;
pub(crate) mod ckpt_files;
