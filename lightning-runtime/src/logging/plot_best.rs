//! Which checkpoints `metrics.svg` marks: the best of every `ModelCheckpoint` with a monitor.
//!
//! The newest checkpoint in `<dir>/checkpoints` holds every checkpoint callback's state
//! (`best_model_path`, `monitor`, `dirpath`), as it stood when it was written; the best one's
//! own `trainer_state.json` gives its epoch and step. This is right with `save_top_k > 1` (the
//! directory then holds several epochs) and with several checkpoint callbacks (each is marked).
//! Python Lightning's checkpoints are pickles: for those, and for runs of ours without
//! readable checkpoints, the one `epoch=E-…` file of a top-1 directory is marked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// A vertical line: its legend entry and its step.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Marker {
    pub label: String,
    pub step: f64,
}

/// The parts of a checkpoint's `trainer_state.json` the markers need.
struct Saved {
    epoch: i64,
    global_step: i64,
    callbacks: serde_json::Map<String, Value>,
}

fn read_saved(ckpt: &Path) -> Option<Saved> {
    let text = std::fs::read_to_string(ckpt.join("trainer_state.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Some(Saved {
        epoch: v.get("epoch")?.as_i64()?,
        global_step: v.get("global_step")?.as_i64()?,
        callbacks: v.get("callbacks").and_then(Value::as_object).cloned().unwrap_or_default(),
    })
}

/// The epoch in a checkpoint's name (`epoch=E-…`, as `ModelCheckpoint` names them).
fn epoch_in_name(path: &Path) -> Option<i64> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix("epoch=")?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// The markers for the run in `dir`; `epoch_end` is each epoch's last step in its CSV.
pub(super) fn markers(dir: &Path, epoch_end: &BTreeMap<i64, f64>) -> Vec<Marker> {
    let entries: Vec<PathBuf> = match std::fs::read_dir(dir.join("checkpoints")) {
        Ok(rd) => rd.filter_map(|e| Some(e.ok()?.path())).collect(),
        Err(_) => return Vec::new(),
    };
    let newest = entries.iter().filter_map(|p| read_saved(p)).max_by_key(|s| (s.global_step, s.epoch));
    match newest {
        Some(saved) => from_states(&saved, epoch_end),
        None => only_epoch(&entries, epoch_end).into_iter().collect(),
    }
}

/// One marker per checkpoint callback state with a monitor and a best path.
fn from_states(saved: &Saved, epoch_end: &BTreeMap<i64, f64>) -> Vec<Marker> {
    let mut out: Vec<Marker> = Vec::new();
    for state in saved.callbacks.values() {
        // a monitor-less ModelCheckpoint's "best" is only its latest: nothing to mark
        let monitor = match state.get("monitor") {
            Some(Value::String(m)) => Some(m.as_str()),
            Some(_) => continue,
            None => None, // saved before the monitor was kept
        };
        let Some(best) = state.get("best_model_path").and_then(Value::as_str).map(Path::new) else {
            continue;
        };
        let best = match state.get("dirpath").and_then(Value::as_str) {
            Some(d) if best.components().count() == 1 => Path::new(d).join(best),
            _ => best.to_path_buf(),
        };
        let at = read_saved(&best).map(|s| (s.epoch, s.global_step as f64 - 1.0)).or_else(|| {
            let e = epoch_in_name(&best)?;
            Some((e, *epoch_end.get(&e)?))
        });
        let Some((epoch, step)) = at else { continue };
        let label = match monitor {
            Some(m) => format!("best checkpoint by {m} (epoch {epoch})"),
            None => format!("best checkpoint (epoch {epoch})"),
        };
        if !out.iter().any(|m| m.label == label) {
            // rows are logged at the step before the counter moves (Lightning's `step - 1`)
            out.push(Marker { label, step: step.max(0.0) });
        }
    }
    out
}

/// The one epoch among `epoch=E-…` checkpoints (a top-1 directory); none when several.
fn only_epoch(entries: &[PathBuf], epoch_end: &BTreeMap<i64, f64>) -> Option<Marker> {
    let mut epochs: Vec<i64> = entries.iter().filter_map(|p| epoch_in_name(p)).collect();
    epochs.sort_unstable();
    epochs.dedup();
    let [epoch] = epochs[..] else { return None };
    Some(Marker { label: format!("best checkpoint (epoch {epoch})"), step: *epoch_end.get(&epoch)? })
}
