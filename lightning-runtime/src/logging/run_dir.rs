//! `<root>/<name>/version_N`: where a logger writes, shared by the CSV and TensorBoard loggers.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use super::to_yaml;
use crate::{Error, Result};

/// A logger's run directory. The version is the one given, or the next free one, claimed
/// the first time the directory is needed: created with `create_dir` (never `_all` on the
/// last component), so of runs started together on one root each gets its own version.
/// Loggers of one trainer with the same root and name share the version the first claimed.
#[derive(Debug, Clone)]
pub(crate) struct RunDir {
    pub root: PathBuf,
    pub name: String,
    pub version: Option<usize>,
}

thread_local! {
    /// The versions claimed while one trainer prepares its loggers, by `<root>/<name>`.
    static CLAIMS: RefCell<Option<Vec<(PathBuf, usize)>>> = const { RefCell::new(None) };
}

/// Runs `f` (the preparing of one trainer's loggers) so that loggers of the same
/// `<root>/<name>` share one claimed version, as they would in Lightning.
pub(crate) fn sharing_versions<R>(f: impl FnOnce() -> R) -> R {
    let outer = CLAIMS.with(|c| c.borrow_mut().replace(Vec::new()));
    let r = f();
    CLAIMS.with(|c| *c.borrow_mut() = outer);
    r
}

impl RunDir {
    pub fn new(root: PathBuf) -> Self {
        RunDir { root, name: "lightning_logs".into(), version: None }
    }

    fn path(&self, v: usize) -> PathBuf {
        self.root.join(&self.name).join(format!("version_{v}"))
    }

    /// The directory, created, with its version fixed.
    pub fn create(&mut self) -> Result<PathBuf> {
        self.fix_version()?;
        let dir = self.path(self.version.unwrap_or_default());
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(dir)
    }

    /// Fixes the version: the given one, or the next free one, claimed by creating its directory.
    pub fn fix_version(&mut self) -> Result<()> {
        if self.version.is_some() {
            return Ok(());
        }
        let parent = self.root.join(&self.name);
        let shared = CLAIMS.with(|c| c.borrow().as_ref()?.iter().find(|(p, _)| *p == parent).map(|(_, v)| *v));
        let v = match shared {
            Some(v) => v,
            None => claim(&self.root, &self.name)?,
        };
        CLAIMS.with(|c| {
            if let Some(claims) = c.borrow_mut().as_mut() {
                claims.push((parent, v));
            }
        });
        self.version = Some(v);
        Ok(())
    }

    /// The directory, once its version is fixed.
    pub fn known(&self) -> Option<PathBuf> {
        self.version.map(|v| self.path(v))
    }

    /// `hparams.yaml`, as Lightning's `save_hparams_to_yaml` writes it (atomically).
    pub fn write_hparams(&mut self, params: &serde_json::Value) -> Result<()> {
        let path = self.create()?.join("hparams.yaml");
        crate::checkpoints::atomic::write_atomic(&path, to_yaml(params).as_bytes())
    }
}

/// Creates `<root>/<name>/version_N` for the first free N from `next_version` on, exclusively:
/// a version another run created meanwhile is skipped.
pub fn claim(root: &Path, name: &str) -> Result<usize> {
    let parent = root.join(name);
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let mut v = next_version(root, name);
    loop {
        let dir = parent.join(format!("version_{v}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(v),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => v += 1,
            Err(e) => return Err(Error::io(&dir, e)),
        }
    }
}

/// `<root>/<name>/version_N` with N one more than the largest existing version (Lightning's
/// rule). Only a guess when other runs may start at the same time: loggers claim theirs.
pub fn next_version(root: &Path, name: &str) -> usize {
    let dir = root.join(name);
    let Ok(entries) = std::fs::read_dir(&dir) else { return 0 };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("version_")?.parse::<usize>().ok())
        .map(|v| v + 1)
        .max()
        .unwrap_or(0)
}
