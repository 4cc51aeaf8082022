//! Checkpoints as run artifacts (Lightning's `log_model`), laid out as Lightning's
//! `_scan_and_log_checkpoints` does: `<prefix>/<stem>/` holds the checkpoint (here a
//! directory, `<stem>.ckpt/`, with its files), `metadata.yaml` (score, file name, the
//! callback's settings) and `aliases.txt` (`['latest', 'best']`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::json;

use super::client::{Client, Failure};
use crate::logging::{to_yaml, SavedCheckpoints};

/// Where a run's artifacts go, from its `artifact_uri`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Store {
    /// `mlflow-artifacts:/<path>`: through the server's artifact proxy (its default).
    Proxy(String),
    /// `file:///dir` or a plain path: the server shares this machine's disk.
    Local(PathBuf),
    /// Anything else (`s3://...`): not reachable from here.
    Other(String),
}

impl Store {
    pub fn parse(uri: &str) -> Store {
        if let Some(rest) = uri.strip_prefix("mlflow-artifacts:") {
            // `mlflow-artifacts://host:port/path` names the server; we talk to ours
            let path = match rest.strip_prefix("//") {
                Some(host_and_path) => host_and_path.split_once('/').map_or("", |(_, p)| p),
                None => rest,
            };
            return Store::Proxy(path.trim_matches('/').to_owned());
        }
        if let Some(p) = uri.strip_prefix("file://") {
            return Store::Local(PathBuf::from(p));
        }
        if uri.starts_with('/') {
            return Store::Local(PathBuf::from(uri));
        }
        Store::Other(uri.to_owned())
    }

    /// Puts one local file at `artifact` (a `/`-separated path in the run's artifacts).
    fn put(&self, client: &Client, artifact: &str, file: &Path) -> Result<(), Failure> {
        match self {
            Store::Proxy(base) => client.retrying(|c| c.put_file(&format!("{base}/{artifact}"), file)),
            Store::Local(base) => {
                let to = base.join(artifact);
                let io = |e: std::io::Error| Failure::Transient(format!("{}: {e}", to.display()));
                std::fs::create_dir_all(to.parent().unwrap_or(base)).map_err(io)?;
                std::fs::copy(file, &to).map(|_| ()).map_err(io)
            }
            Store::Other(uri) => Err(Failure::Refused {
                status: 0,
                error_code: "UNSUPPORTED_ARTIFACT_STORE".into(),
                message: format!(
                    "the run's artifacts live at {uri}, which this logger cannot write: start the server with its \
                     artifact proxy (`mlflow server --artifacts-destination <dir or uri>`, the default), so that \
                     artifacts go through the tracking server"
                ),
            }),
        }
    }
}

/// The checkpoints of `saved` not uploaded yet, or rewritten since (`last.ckpt`): Lightning's
/// `_scan_checkpoints`, oldest first, with each one's score and whether it is the best.
pub(crate) fn to_upload(
    saved: &SavedCheckpoints,
    uploaded: &BTreeMap<PathBuf, SystemTime>,
) -> Vec<(SystemTime, PathBuf, Option<f64>)> {
    let mut found: BTreeMap<PathBuf, Option<f64>> = BTreeMap::new();
    if let Some(p) = &saved.last_model_path {
        found.insert(p.clone(), saved.current_score);
    }
    if let Some(p) = &saved.best_model_path {
        found.insert(p.clone(), saved.best_model_score);
    }
    for (p, s) in &saved.best_k_models {
        found.insert(p.clone(), Some(*s));
    }
    let mut out: Vec<_> = found
        .into_iter()
        .filter_map(|(p, s)| Some((modified(&p)?, p, s)))
        .filter(|(t, p, _)| uploaded.get(p).is_none_or(|done| done < t))
        .collect();
    out.sort_by_key(|a| a.0);
    out
}

/// When a checkpoint was written: its state file's time for a directory checkpoint.
fn modified(p: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(p).ok()?;
    if meta.is_dir() {
        let state = p.join("trainer_state.json");
        return std::fs::metadata(state).ok()?.modified().ok();
    }
    meta.modified().ok()
}

/// Uploads one checkpoint with its `metadata.yaml` and `aliases.txt`.
pub(crate) fn upload(
    client: &Client,
    store: &Store,
    prefix: &str,
    saved: &SavedCheckpoints,
    path: &Path,
    score: Option<f64>,
) -> Result<(), Failure> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let base = if prefix.is_empty() { stem } else { format!("{}/{stem}", prefix.trim_matches('/')) };
    for (file, rel) in files_of(path)? {
        store.put(client, &format!("{base}/{rel}"), &file)?;
    }
    let dir = tempfile_dir()?;
    let metadata = json!({
        "score": score,
        "original_filename": name,
        "Checkpoint": {
            "monitor": saved.monitor,
            "mode": saved.mode,
            "save_last": saved.save_last,
            "save_top_k": saved.save_top_k,
            "save_weights_only": saved.save_weights_only,
            "_every_n_train_steps": saved.every_n_train_steps,
            "_every_n_val_epochs": saved.every_n_epochs,
        },
    });
    let best = saved.best_model_path.as_deref() == Some(path);
    let aliases = if best { "['latest', 'best']" } else { "['latest']" };
    let result = (|| {
        for (file, text) in [("metadata.yaml", to_yaml(&metadata)), ("aliases.txt", aliases.to_owned())] {
            let local = dir.join(file);
            std::fs::write(&local, text).map_err(|e| Failure::Transient(format!("{}: {e}", local.display())))?;
            store.put(client, &format!("{base}/{file}"), &local)?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The files of a checkpoint with their artifact paths: `<name>` for a file,
/// `<name>/<file>` for each file of a directory.
fn files_of(path: &Path) -> Result<Vec<(PathBuf, String)>, Failure> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let io = |e: std::io::Error| Failure::Transient(format!("{}: {e}", path.display()));
    if !path.is_dir() {
        return Ok(vec![(path.to_path_buf(), name)]);
    }
    let mut out = Vec::new();
    let mut todo = vec![(path.to_path_buf(), name)];
    while let Some((dir, rel)) = todo.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let rel = format!("{rel}/{}", entry.file_name().to_string_lossy());
            if entry.file_type().map_err(io)?.is_dir() {
                todo.push((entry.path(), rel));
            } else {
                out.push((entry.path(), rel));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// A fresh directory for the two small files (the system's temporary directory).
fn tempfile_dir() -> Result<PathBuf, Failure> {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("lightning-mlflow-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Failure::Transient(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_uris_resolve_to_the_proxy_or_the_disk() {
        assert_eq!(Store::parse("mlflow-artifacts:/1/abc/artifacts"), Store::Proxy("1/abc/artifacts".into()));
        assert_eq!(Store::parse("mlflow-artifacts://h:5000/1/abc/artifacts"), Store::Proxy("1/abc/artifacts".into()));
        assert_eq!(Store::parse("file:///tmp/a/1"), Store::Local("/tmp/a/1".into()));
        assert_eq!(Store::parse("s3://b/1"), Store::Other("s3://b/1".into()));
    }
}
