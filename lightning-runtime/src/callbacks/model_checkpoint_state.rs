//! `ModelCheckpoint`'s state as a checkpoint holds it: the checkpoint directory, and the
//! checkpoints in it by name (never as lossy text of a whole path, so a directory whose name
//! is not UTF-8 works), each field checked when read back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::model_checkpoint::State;
use super::Mode;
use crate::{Error, Result};

/// A path as JSON: text when it is UTF-8, else its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum PathText {
    Text(String),
    Bytes(Vec<u8>),
}

impl PathText {
    fn of(p: &Path) -> Self {
        match p.to_str() {
            Some(s) => PathText::Text(s.to_owned()),
            None => PathText::Bytes(p.as_os_str().as_encoded_bytes().to_vec()),
        }
    }

    fn path(&self) -> PathBuf {
        match self {
            PathText::Text(s) => PathBuf::from(s),
            #[cfg(unix)]
            PathText::Bytes(b) => PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b)),
            #[cfg(not(unix))]
            PathText::Bytes(b) => PathBuf::from(String::from_utf8_lossy(b).into_owned()),
        }
    }
}

/// The saved state. `dirpath` is absent in checkpoints from before it was kept; their paths
/// are whole, and their directory is the one they are in.
#[derive(Debug)]
pub(super) struct Saved {
    dirpath: Option<PathText>,
    best_k_models: Vec<(PathText, Option<f64>)>,
    best_model_path: Option<PathText>,
    best_model_score: Option<f64>,
    last_model_path: Option<PathText>,
}

/// The state resolved against its directory: whole paths again.
pub(super) struct Restored {
    pub dirpath: Option<PathBuf>,
    pub best_k_models: BTreeMap<PathBuf, f64>,
    pub best_model_path: Option<PathBuf>,
    pub best_model_score: Option<f64>,
    pub last_model_path: Option<PathBuf>,
}

fn bad(field: &str, reason: impl Into<String>) -> Error {
    super::restored::bad("ModelCheckpoint", field, reason.into())
}

/// `state[key]` as a `T` (absent or null is `None`); the wrong type is an error naming the field.
fn field<T: DeserializeOwned>(state: &Value, key: &str) -> Result<Option<T>> {
    match state.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            serde_json::from_value(v.clone()).map(Some).map_err(|e| bad(key, format!("has the wrong type: {e}")))
        }
    }
}

impl Saved {
    /// The JSON of `state` for the checkpoint directory `dir`: paths in `dir` as names. The
    /// `monitor` goes with it, as in Lightning's state (`metrics.svg` marks the best by it).
    pub fn of(dir: &Path, monitor: Option<&str>, state: &State) -> Value {
        let name = |p: &Path| match (p.parent() == Some(dir), p.file_name()) {
            (true, Some(n)) => PathText::of(Path::new(n)),
            _ => PathText::of(p),
        };
        // a JSON number cannot be NaN or infinite: those scores are saved as null, read back as the worst
        let finite = |v: f64| v.is_finite().then_some(v);
        let best_k: Vec<(PathText, Option<f64>)> =
            state.best_k_models.iter().map(|(p, v)| (name(p), finite(*v))).collect();
        // names that are text go in a map, as Lightning's `best_k_models`; others as pairs
        let best_k = match best_k.iter().all(|(p, _)| matches!(p, PathText::Text(_))) {
            true => json!(best_k
                .into_iter()
                .filter_map(|(p, v)| match p {
                    PathText::Text(s) => Some((s, v)),
                    PathText::Bytes(_) => None,
                })
                .collect::<BTreeMap<String, Option<f64>>>()),
            false => json!(best_k),
        };
        json!({
            "monitor": monitor,
            "dirpath": PathText::of(dir),
            "best_k_models": best_k,
            "best_model_path": state.best_model_path.as_deref().map(name),
            "best_model_score": state.best_model_score.and_then(finite),
            "last_model_path": state.last_model_path.as_deref().map(name),
        })
    }

    /// Reads the JSON back, checking each field's type.
    pub fn parse(state: &Value) -> Result<Self> {
        if !state.is_object() {
            return Err(bad("", "is not an object"));
        }
        let best_k_models = match state.get("best_k_models") {
            Some(Value::Array(_)) => {
                field::<Vec<(PathText, Option<f64>)>>(state, "best_k_models")?.unwrap_or_default().into_iter().collect()
            }
            _ => field::<BTreeMap<String, Option<f64>>>(state, "best_k_models")?
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (PathText::Text(k), v))
                .collect(),
        };
        Ok(Saved {
            dirpath: field(state, "dirpath")?,
            best_k_models,
            best_model_path: field(state, "best_model_path")?,
            best_model_score: field(state, "best_model_score")?,
            last_model_path: field(state, "last_model_path")?,
        })
    }

    /// Whole paths again. With `dirpath`, `best_k_models` and `last_model_path` must be plain
    /// names in it; without (older checkpoints), they must all lie in one directory.
    pub fn resolve(self, mode: Mode) -> Result<Restored> {
        let worst = match mode {
            Mode::Min => f64::INFINITY,
            Mode::Max => f64::NEG_INFINITY,
        };
        let legacy_dir = || {
            let any = self.best_model_path.as_ref().or_else(|| self.best_k_models.first().map(|(p, _)| p))?;
            any.path().parent().map(Path::to_path_buf)
        };
        let dirpath = self.dirpath.as_ref().map(PathText::path).or_else(legacy_dir);
        let dir = dirpath.clone().unwrap_or_default();
        let inside = |key: &str, p: &PathText| -> Result<PathBuf> {
            let p = p.path();
            let plain = p.file_name().is_some_and(|n| Path::new(n) == p);
            match (self.dirpath.is_some(), plain) {
                (true, true) => Ok(dir.join(p)),
                (false, _) if p.parent() == Some(dir.as_path()) => Ok(p),
                _ => Err(bad(key, format!("names {}, which is not a file of {}", p.display(), dir.display()))),
            }
        };
        let mut best_k_models = BTreeMap::new();
        for (p, v) in &self.best_k_models {
            let score = match v {
                Some(v) if v.is_nan() => worst,
                Some(v) => *v,
                None => worst,
            };
            best_k_models.insert(inside("best_k_models", p)?, score);
        }
        // the best may lie outside the directory (kept from a run before a dirpath change)
        let best_model_path = self.best_model_path.as_ref().map(|p| {
            let p = p.path();
            if p.components().count() == 1 {
                dir.join(p)
            } else {
                p
            }
        });
        let last_model_path = self.last_model_path.as_ref().map(|p| inside("last_model_path", p)).transpose()?;
        Ok(Restored {
            dirpath,
            best_k_models,
            best_model_path,
            best_model_score: self.best_model_score,
            last_model_path,
        })
    }
}
