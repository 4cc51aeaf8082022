//! The hidden siblings a checkpoint save makes (`.NAME.tmp-PID-N` while writing, `.NAME.old-PID-N`
//! for the copy it replaces, `.NAME.del-PID-N` for one being deleted), deleting checkpoints
//! without leaving half of one under a valid name, and cleaning what a killed run left.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

/// What a hidden sibling is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tag {
    /// A checkpoint being written; renamed to its name once whole.
    Tmp,
    /// The checkpoint a save replaces, between the two renames.
    Old,
    /// A checkpoint being deleted: renamed aside first, so no half-deleted one keeps a valid name.
    Del,
}

impl Tag {
    fn as_str(self) -> &'static str {
        match self {
            Tag::Tmp => "tmp",
            Tag::Old => "old",
            Tag::Del => "del",
        }
    }
}

/// `.{name}.{tag}-{pid}-{n}`: unique per process and per call, so two writers (threads or
/// processes) never share a temporary name.
pub(crate) fn sibling(dir: &Path, name: &OsStr, tag: Tag) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut s = OsString::from(".");
    s.push(name);
    s.push(format!(".{}-{}-{n}", tag.as_str(), std::process::id()));
    dir.join(s)
}

/// `(name, tag, pid)` of a hidden sibling's file name; `None` for any other name.
pub(crate) fn parse(file_name: &OsStr) -> Option<(OsString, Tag, u32)> {
    let bytes = file_name.as_encoded_bytes().strip_prefix(b".")?;
    for tag in [Tag::Tmp, Tag::Old, Tag::Del] {
        let marker = format!(".{}-", tag.as_str());
        let Some(at) = find_last(bytes, marker.as_bytes()) else { continue };
        let rest = std::str::from_utf8(&bytes[at + marker.len()..]).ok()?;
        let pid = rest.split('-').next()?.parse().ok()?;
        // SAFETY: `at` splits the bytes at an ASCII `.`, a valid boundary of an `OsStr` encoding
        let name = unsafe { OsStr::from_encoded_bytes_unchecked(&bytes[..at]) };
        return Some((name.to_os_string(), tag, pid));
    }
    None
}

fn find_last(hay: &[u8], needle: &[u8]) -> Option<usize> {
    (0..=hay.len().checked_sub(needle.len())?).rev().find(|&i| hay[i..].starts_with(needle))
}

/// Whether process `pid` still runs (on Linux, by `/proc`; elsewhere every process counts
/// as alive, so nothing of a running save is ever cleaned).
pub(crate) fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

pub(crate) fn remove_any(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Deletes a checkpoint: renamed aside (`.NAME.del-PID-N`) and synced first, so a crash
/// leaves it whole under its name or gone from it, never half-deleted. Missing is fine.
pub(crate) fn delete_checkpoint(path: &Path) -> Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::bad_file(path, "a checkpoint path needs a file name"));
    };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let aside = sibling(dir, name, Tag::Del);
    match std::fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    }
    sync_dir(dir);
    remove_any(&aside).map_err(|e| Error::io(&aside, e))
}

/// Cleans what killed saves left in a checkpoint directory, at the start of a run: the
/// temporary and deleted copies of processes no longer alive are removed, and a replaced
/// checkpoint set aside by a save killed between its two renames goes back under its name
/// (when nothing took that name since). Returns the paths removed or restored.
pub(crate) fn clean_leftovers(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut done = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let Some((name, tag, pid)) = parse(&entry.file_name()) else { continue };
        if alive(pid) {
            continue;
        }
        let path = entry.path();
        let target = dir.join(&name);
        if tag == Tag::Old && std::fs::symlink_metadata(&target).is_err() {
            std::fs::rename(&path, &target).map_err(|e| Error::io(&path, e))?;
        } else {
            remove_any(&path).map_err(|e| Error::io(&path, e))?;
        }
        done.push(path);
    }
    if !done.is_empty() {
        sync_dir(dir);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sibling_names_parse_back() {
        let dir = Path::new("/x");
        let p = sibling(dir, OsStr::new("epoch=1-step=2.ckpt"), Tag::Old);
        let (name, tag, pid) = parse(p.file_name().unwrap()).unwrap();
        assert_eq!((name.to_str().unwrap(), tag, pid), ("epoch=1-step=2.ckpt", Tag::Old, std::process::id()));
        assert!(parse(OsStr::new("last.ckpt")).is_none());
        assert!(parse(OsStr::new(".hidden")).is_none());
        assert_ne!(sibling(dir, OsStr::new("a"), Tag::Tmp), sibling(dir, OsStr::new("a"), Tag::Tmp));
    }

    #[test]
    fn leftovers_of_dead_processes_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // pid 0 is never a user process: as good as dead
        for n in [".a.ckpt.tmp-0-1", ".b.ckpt.del-0-2", ".c.ckpt.old-0-3", ".d.ckpt.old-0-4"] {
            std::fs::create_dir(d.join(n)).unwrap();
        }
        std::fs::create_dir(d.join("d.ckpt")).unwrap();
        let mine = sibling(d, OsStr::new("e.ckpt"), Tag::Tmp);
        std::fs::create_dir(&mine).unwrap();
        let done = clean_leftovers(d).unwrap();
        assert_eq!(done.len(), 4);
        let mut left: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        // c's set-aside copy is back under its name; our own running save is untouched
        let mine = mine.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(left, vec![mine, "c.ckpt".to_string(), "d.ckpt".to_string()]);
    }
}
