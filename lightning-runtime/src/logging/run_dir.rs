//! `<root>/<name>/version_N`: where a logger writes, shared by the CSV and TensorBoard loggers.

use std::path::{Path, PathBuf};

use super::to_yaml;
use crate::{Error, Result};

/// A logger's run directory. The version is the one given, or the next free one, fixed the
/// first time the directory is needed (Lightning's rule).
#[derive(Debug, Clone)]
pub(crate) struct RunDir {
    pub root: PathBuf,
    pub name: String,
    pub version: Option<usize>,
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
        let v = *self.version.get_or_insert_with(|| next_version(&self.root, &self.name));
        let dir = self.path(v);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(dir)
    }

    /// Fixes the version (the given one, or the next free one) without creating anything.
    pub fn fix_version(&mut self) {
        self.version.get_or_insert_with(|| next_version(&self.root, &self.name));
    }

    /// The directory, once its version is fixed.
    pub fn known(&self) -> Option<PathBuf> {
        self.version.map(|v| self.path(v))
    }

    /// `hparams.yaml`, as Lightning's `save_hparams_to_yaml` writes it (atomically).
    pub fn write_hparams(&mut self, params: &serde_json::Value) -> Result<()> {
        let path = self.create()?.join("hparams.yaml");
        crate::atomic::write_atomic(&path, to_yaml(params).as_bytes())
    }
}

/// `<root>/<name>/version_N` with N one more than the largest existing version (Lightning's rule).
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
