//! Lightning's `ckpt_path`: `"best"`, `"last"` or a path, parsed once and resolved when
//! the entry point starts.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use crate::{Error, ModelCheckpoint, Result};

/// The checkpoint `fit`, `validate`, `test` or `predict` starts from (Lightning's
/// `ckpt_path`), set with [`crate::Trainer::ckpt_path`]. `fit` resumes from it (a larger
/// `max_epochs` goes on training); the others load its weights into the module first.
///
/// `"best"` and `"last"` parse to [`CkptPath::Best`] and [`CkptPath::Last`]; any other
/// string is a path.
///
/// ```
/// use lightning::CkptPath;
/// assert_eq!("best".parse::<CkptPath>(), Ok(CkptPath::Best));
/// assert_eq!(CkptPath::from("runs/last.ckpt"), CkptPath::Path("runs/last.ckpt".into()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CkptPath {
    /// The trainer's `ModelCheckpoint`'s best checkpoint (`best_model_path`).
    Best,
    /// The last checkpoint the trainer's `ModelCheckpoint` saved in this process; else the
    /// newest `last.ckpt` under `<default_root_dir>/lightning_logs/version_*/checkpoints/`
    /// or `<default_root_dir>/checkpoints/` (a run started again finds its predecessor's).
    Last,
    /// A checkpoint directory.
    Path(PathBuf),
}

impl FromStr for CkptPath {
    type Err = Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Infallible> {
        Ok(match s {
            "best" => CkptPath::Best,
            "last" => CkptPath::Last,
            path => CkptPath::Path(path.into()),
        })
    }
}

impl From<&str> for CkptPath {
    fn from(s: &str) -> Self {
        s.parse().unwrap_or_else(|e: Infallible| match e {})
    }
}

impl From<String> for CkptPath {
    fn from(s: String) -> Self {
        CkptPath::from(s.as_str())
    }
}

impl From<PathBuf> for CkptPath {
    fn from(p: PathBuf) -> Self {
        CkptPath::Path(p)
    }
}

impl From<&Path> for CkptPath {
    fn from(p: &Path) -> Self {
        CkptPath::Path(p.to_path_buf())
    }
}

impl From<&PathBuf> for CkptPath {
    fn from(p: &PathBuf) -> Self {
        CkptPath::Path(p.clone())
    }
}

impl CkptPath {
    /// The checkpoint directory this names, or an error saying why there is none.
    pub(crate) fn resolve(&self, checkpoint: Option<&ModelCheckpoint>, root: &Path) -> Result<PathBuf> {
        match self {
            CkptPath::Path(p) => Ok(p.clone()),
            CkptPath::Best => {
                let Some(ck) = checkpoint else {
                    return Err(Error::config(
                        "ckpt_path",
                        "\"best\" needs the trainer's ModelCheckpoint, and checkpointing is off: turn on `enable_checkpointing`, or pass a path",
                    ));
                };
                ck.best_model_path().map(Path::to_path_buf).ok_or_else(|| {
                    Error::config(
                        "ckpt_path",
                        "\"best\": this trainer's ModelCheckpoint has saved no checkpoint yet (\"best\" is the best one `fit` saved with this trainer): run `fit` with it first, or pass a checkpoint's path",
                    )
                })
            }
            CkptPath::Last => {
                if let Some(p) = checkpoint.and_then(|c| c.last_model_path()).filter(|p| p.exists()) {
                    return Ok(p.to_path_buf());
                }
                newest_last(root).ok_or_else(|| {
                    Error::config(
                        "ckpt_path",
                        format!(
                            "\"last\": no checkpoint saved in this process, and no last.ckpt under {0}/lightning_logs/version_*/checkpoints or {0}/checkpoints: save one with `ModelCheckpoint::save_last(true)`, or pass a path",
                            root.display()
                        ),
                    )
                })
            }
        }
    }
}

/// The most recently written `last.ckpt` of the runs under `root`, or `on_exception.ckpt`
/// (an `OnExceptionCheckpoint`'s default, after a failure or a signal): Lightning picks
/// among both by time.
fn newest_last(root: &Path) -> Option<PathBuf> {
    let mut dirs = vec![root.join("checkpoints")];
    if let Ok(versions) = std::fs::read_dir(root.join("lightning_logs")) {
        dirs.extend(versions.flatten().map(|v| v.path().join("checkpoints")));
    }
    let found = dirs.iter().flat_map(|d| [d.join("last.ckpt"), d.join("on_exception.ckpt")]);
    let written = |p: &PathBuf| -> Option<SystemTime> {
        let state = p.join("trainer_state.json");
        std::fs::metadata(&state).or_else(|_| std::fs::metadata(p)).and_then(|m| m.modified()).ok()
    };
    found.filter_map(|p| written(&p).map(|t| (t, p))).max().map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_once_and_names_what_is_missing() {
        assert_eq!(CkptPath::from("last"), CkptPath::Last);
        assert_eq!(CkptPath::from(String::from("a/b")), CkptPath::Path("a/b".into()));
        let root = std::env::temp_dir().join(format!("ckpt-path-{}", std::process::id()));
        let e = CkptPath::Best.resolve(None, &root).unwrap_err().to_string();
        assert!(e.contains("checkpointing is off"), "{e}");
        let e = CkptPath::Best.resolve(Some(&ModelCheckpoint::new()), &root).unwrap_err().to_string();
        assert!(e.contains("ModelCheckpoint has saved no checkpoint yet"), "{e}");
        let e = CkptPath::Last.resolve(None, &root).unwrap_err().to_string();
        assert!(e.contains("no last.ckpt under"), "{e}");
        // the newest of two runs' last.ckpt
        for v in ["version_0", "version_1"] {
            let dir = root.join("lightning_logs").join(v).join("checkpoints").join("last.ckpt");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("trainer_state.json"), "{}").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let got = CkptPath::Last.resolve(None, &root).unwrap();
        assert!(got.ends_with("version_1/checkpoints/last.ckpt"), "{got:?}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
