//! Atomic file writes: a temporary file in the same directory, synced, then renamed.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Writes `bytes` to `path` so that a crash at any moment leaves the old file or the new
/// one, never part of one: temporary file, fsync, rename, fsync of the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path.file_name().ok_or_else(|| Error::bad_file(path, "the path needs a file name"))?;
    // unique per process and per call: two writers of one path never share a temporary file
    let tmp: PathBuf = crate::checkpoints::ckpt_files::sibling(dir, name, crate::checkpoints::ckpt_files::Tag::Tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // make the rename itself durable
        crate::checkpoints::ckpt_files::sync_dir(dir);
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}
