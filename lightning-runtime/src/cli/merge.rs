//! The keys of each section, and the values of a run merged from the defaults, the config
//! files in order and the flags, each remembering where it came from.

use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use serde_norway::Value;

use super::CliArgs;
use crate::TrainerConfig;

/// Names the program's own top-level options cannot take.
const RESERVED: [&str; 7] = ["config", "print_config", "ckpt_path", "trainer", "model", "data", "help"];

/// One section's keys and default values, in the struct's field order.
pub(crate) struct Section {
    /// `trainer`, `model`, `data`; empty for the top-level options.
    pub name: &'static str,
    pub heading: &'static str,
    pub defaults: Vec<(String, Value)>,
}

impl Section {
    fn of<T: CliArgs>(name: &'static str, heading: &'static str) -> Result<Self, clap::Error> {
        Self::from_value(name, heading, serde_norway::to_value(T::default()), std::any::type_name::<T>())
    }

    fn from_value(
        name: &'static str,
        heading: &'static str,
        value: Result<Value, serde_norway::Error>,
        type_name: &str,
    ) -> Result<Self, clap::Error> {
        let not_struct = || {
            clap::Error::raw(
                ErrorKind::InvalidValue,
                format!("`{type_name}` cannot be a CLI section: it must serialize as a struct with named fields"),
            )
        };
        let Ok(Value::Mapping(map)) = value else { return Err(not_struct()) };
        let mut defaults = Vec::new();
        for (k, v) in map {
            let Value::String(k) = k else { return Err(not_struct()) };
            defaults.push((k, v));
        }
        Ok(Section { name, heading, defaults })
    }

    /// The flag's name: `trainer.max_epochs`, or `ckpt_path` at the top level.
    pub fn full_key(&self, key: &str) -> String {
        if self.name.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.name)
        }
    }

    fn default_of(&self, key: &str) -> Option<&Value> {
        self.defaults.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// The trainer's, the model's, the datamodule's and the top-level keys.
pub(crate) struct Sections {
    pub list: [Section; 4],
}

/// Where the top-level section sits in [`Sections::list`].
pub(crate) const TOP: usize = 3;

impl Sections {
    pub fn of<M: CliArgs, D: CliArgs, X: CliArgs>(trainer_defaults: &TrainerConfig) -> Result<Self, clap::Error> {
        let trainer = Section::from_value(
            "trainer",
            "Trainer flags (--trainer.<flag>)",
            serde_norway::to_value(trainer_defaults),
            "TrainerConfig",
        )?;
        let mut top = Section::of::<X>("", "Options")?;
        if let Some((k, _)) = top.defaults.iter().find(|(k, _)| RESERVED.contains(&k.as_str())) {
            return Err(clap::Error::raw(
                ErrorKind::ArgumentConflict,
                format!("the program's top-level option `{k}` has the name of a LightningCli option: rename the field"),
            ));
        }
        top.defaults.push(("ckpt_path".into(), Value::Null));
        Ok(Sections {
            list: [
                trainer,
                Section::of::<M>("model", "Model (--model.<field>)")?,
                Section::of::<D>("data", "Data (--data.<field>)")?,
                top,
            ],
        })
    }

    /// Every key at its default.
    pub fn defaults(&self) -> Tree {
        let mut entries = Vec::new();
        for (i, s) in self.list.iter().enumerate() {
            for (k, v) in &s.defaults {
                entries.push(Entry { section: i, key: k.clone(), value: v.clone(), source: Source::Default });
            }
        }
        Tree { entries }
    }

    fn section_named(&self, name: &str) -> Option<usize> {
        self.list[..TOP].iter().position(|s| s.name == name)
    }
}

/// Where a value came from, for the error that rejects it.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Default,
    File(PathBuf),
    /// The flag's text as given.
    Flag(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub section: usize,
    pub key: String,
    pub value: Value,
    pub source: Source,
}

/// Every key's current value.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    pub entries: Vec<Entry>,
}

impl Tree {
    fn set(&mut self, section: usize, key: &str, value: Value, source: Source) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.section == section && e.key == key) {
            e.value = value;
            e.source = source;
        }
    }

    /// Merges a config file over the values so far; an unknown key is an error with the
    /// closest known one.
    pub fn load_file(&mut self, sections: &Sections, path: &Path) -> Result<(), clap::Error> {
        let file = path.display();
        let text =
            std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot read the config file {file}: {e}")))?;
        let doc: Value =
            serde_norway::from_str(&text).map_err(|e| invalid(format!("{file} is not valid YAML: {e}")))?;
        let map = match doc {
            Value::Null => return Ok(()),
            Value::Mapping(m) => m,
            _ => return Err(invalid(format!("{file}: a config is a mapping of keys (trainer:, model:, data:, ...)"))),
        };
        let source = || Source::File(path.to_path_buf());
        for (k, v) in map {
            let k = key_text(&k, &file)?;
            if let Some(i) = sections.section_named(&k) {
                let inner = match v {
                    Value::Null => continue,
                    Value::Mapping(m) => m,
                    _ => return Err(invalid(format!("{file}: `{k}` must be a mapping of its keys"))),
                };
                for (sk, sv) in inner {
                    let sk = key_text(&sk, &file)?;
                    if sections.list[i].default_of(&sk).is_none() {
                        let known = sections.list[i].defaults.iter().map(|(k, _)| k.as_str());
                        return Err(unknown(&file, &format!("{k}.{sk}"), &sk, known, &format!("{k}.")));
                    }
                    self.set(i, &sk, sv, source());
                }
            } else if sections.list[TOP].default_of(&k).is_some() {
                self.set(TOP, &k, v, source());
            } else {
                let names = sections.list[..TOP].iter().map(|s| s.name);
                let known = names.chain(sections.list[TOP].defaults.iter().map(|(k, _)| k.as_str()));
                return Err(unknown(&file, &k, &k, known, ""));
            }
        }
        Ok(())
    }

    /// The flags given on the command line, over everything else.
    pub fn apply_flags(&mut self, sections: &Sections, m: &clap::ArgMatches) {
        for (i, s) in sections.list.iter().enumerate() {
            for (k, default) in &s.defaults {
                let id = s.full_key(k);
                if m.value_source(&id) != Some(clap::parser::ValueSource::CommandLine) {
                    continue;
                }
                if let Some(raw) = m.get_one::<String>(&id) {
                    self.set(i, k, scalar(raw, default), Source::Flag(raw.clone()));
                }
            }
        }
    }
}

/// A flag's text as a value: as written for a key whose default is a string, else read as
/// YAML (`10`, `0.5`, `true`, `null`, `[1, 2]`), or the text itself if it is not YAML; one
/// value for a list is a list of one.
pub(crate) fn scalar(raw: &str, default: &Value) -> Value {
    if matches!(default, Value::String(_)) {
        return Value::String(raw.to_string());
    }
    let value = serde_norway::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
    match (default, value) {
        // `--data.mirror http://a/` for a list: a list of one
        (Value::Sequence(_), Value::Sequence(v)) => Value::Sequence(v),
        (Value::Sequence(_), Value::Null) => Value::Sequence(Vec::new()),
        (Value::Sequence(_), v) => Value::Sequence(vec![v]),
        (_, v) => v,
    }
}

fn key_text(k: &Value, file: &std::path::Display<'_>) -> Result<String, clap::Error> {
    match k {
        Value::String(s) => Ok(s.clone()),
        other => Err(invalid(format!("{file}: the key {other:?} is not a name"))),
    }
}

pub(crate) fn invalid(msg: String) -> clap::Error {
    clap::Error::raw(ErrorKind::InvalidValue, msg)
}

fn unknown<'a>(
    file: &std::path::Display<'_>,
    full: &str,
    key: &str,
    known: impl Iterator<Item = &'a str>,
    prefix: &str,
) -> clap::Error {
    let best =
        known.map(|c| (strsim::jaro_winkler(key, c), c)).filter(|(s, _)| *s >= 0.8).max_by(|a, b| a.0.total_cmp(&b.0));
    let hint = match best {
        Some((_, c)) => format!("; did you mean `{prefix}{c}`?"),
        None => "; `--help` lists the keys".to_string(),
    };
    clap::Error::raw(ErrorKind::UnknownArgument, format!("{file}: unknown key `{full}`{hint}"))
}
