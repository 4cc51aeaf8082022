//! The merged values as the sections' types; a value that does not fit is an error naming
//! the flag, or the file and key, it came from.

use clap::error::ErrorKind;
use serde::de::DeserializeOwned;
use serde_norway::{Mapping, Value};

use super::merge::{invalid, Source, Tree, TOP};
use super::CliArgs;
use crate::{CkptPath, TrainerConfig};

pub(crate) struct Parsed<M, D, X> {
    pub trainer: TrainerConfig,
    pub model: M,
    pub data: D,
    pub extra: X,
    pub ckpt_path: Option<CkptPath>,
    pub yaml: String,
}

const NAMES: [&str; 3] = ["trainer", "model", "data"];

/// Reads every section, checks it, and renders the config as YAML.
pub(crate) fn read<M: CliArgs, D: CliArgs, X: CliArgs>(tree: &mut Tree) -> Result<Parsed<M, D, X>, clap::Error> {
    let trainer: TrainerConfig = section(tree, 0)?;
    if let Err(crate::Error::Config { flag, reason }) = trainer.validate() {
        return Err(rejected(tree, 0, flag, &reason));
    }
    let model: M = section(tree, 1)?;
    model.check().map_err(|e| rejected(tree, 1, &e.key, &e.message))?;
    let data: D = section(tree, 2)?;
    data.check().map_err(|e| rejected(tree, 2, &e.key, &e.message))?;
    let ckpt_path = match tree.entries.iter().find(|e| e.section == TOP && e.key == "ckpt_path").map(|e| &e.value) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(CkptPath::from(s.as_str())),
        Some(_) => return Err(rejected(tree, TOP, "ckpt_path", "must be best, last or a path")),
    };
    let extra: X = section(tree, TOP)?;
    extra.check().map_err(|e| rejected(tree, TOP, &e.key, &e.message))?;
    let yaml = serde_norway::to_string(&document(tree))
        .map_err(|e| invalid(format!("the config does not render as YAML: {e}")))?;
    Ok(Parsed { trainer, model, data, extra, ckpt_path, yaml })
}

fn mapping(tree: &Tree, section: usize) -> Mapping {
    let mut map = Mapping::new();
    for e in tree.entries.iter().filter(|e| e.section == section) {
        if !(section == TOP && e.key == "ckpt_path") {
            map.insert(Value::String(e.key.clone()), e.value.clone());
        }
    }
    map
}

/// Lightning's layout: `trainer:`, `model:`, `data:`, the top-level options, `ckpt_path:`.
fn document(tree: &Tree) -> Value {
    let mut doc = Mapping::new();
    for (i, name) in NAMES.iter().enumerate() {
        doc.insert(Value::String((*name).into()), Value::Mapping(mapping(tree, i)));
    }
    for e in tree.entries.iter().filter(|e| e.section == TOP) {
        doc.insert(Value::String(e.key.clone()), e.value.clone());
    }
    Value::Mapping(doc)
}

/// One section as its type. A flag's text that was read as another YAML type (`--model.name
/// 123` for an `Option<String>`) is tried again as the text itself before it is an error.
fn section<T: DeserializeOwned>(tree: &mut Tree, section: usize) -> Result<T, clap::Error> {
    let mut retried = Vec::new();
    loop {
        let err = match serde_path_to_error::deserialize(Value::Mapping(mapping(tree, section))) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let key = match err.path().iter().next() {
            Some(serde_path_to_error::Segment::Map { key }) => key.clone(),
            _ => String::new(),
        };
        let entry = tree.entries.iter_mut().find(|e| e.section == section && e.key == key);
        if let Some(e) = entry {
            if let Source::Flag(raw) = &e.source {
                if !matches!(e.value, Value::String(_)) && !retried.contains(&key) {
                    e.value = Value::String(raw.clone());
                    retried.push(key);
                    continue;
                }
            }
        }
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        // `deny_unknown_fields` names a key inside a nested value; the path is where
        let key = if key.is_empty() { path } else { key };
        return Err(rejected(tree, section, &key, &message));
    }
}

/// An error naming where the rejected value came from: the flag, the file and key, or the
/// default (a section whose own default does not read back).
fn rejected(tree: &Tree, section: usize, key: &str, message: &str) -> clap::Error {
    let full = if section == TOP { key.to_string() } else { format!("{}.{key}", NAMES[section]) };
    let source = tree.entries.iter().find(|e| e.section == section && e.key == key).map(|e| &e.source);
    match source {
        Some(Source::Flag(raw)) => {
            clap::Error::raw(ErrorKind::ValueValidation, format!("invalid value '{raw}' for '--{full}': {message}"))
        }
        Some(Source::File(path)) => invalid(format!("{}: invalid value for `{full}`: {message}", path.display())),
        _ => invalid(format!("invalid value for `{full}` (its default): {message}")),
    }
}
