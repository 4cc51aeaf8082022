//! A TensorBoard event-file writer: TFRecord framing with masked CRC-32C around protobuf
//! `Event` messages (scalars, and the hparams plugin's three summaries).
//!
//! Written here because no maintained Rust crate writes event files; the messages are the
//! subset of TensorFlow's `event.proto`/`summary.proto` and TensorBoard's `hparams` protos
//! that scalars and hyperparameters need, declared with `prost`'s derive (no protoc).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use super::run_dir::RunDir;
use super::Logger;
use crate::{Error, Result};

/// `tensorflow.Event`.
#[derive(Clone, PartialEq, Message)]
pub struct Event {
    /// When it was written, in seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The step it belongs to (the trainer's `global_step`).
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// What the event carries.
    #[prost(oneof = "What", tags = "3, 5")]
    pub what: Option<What>,
}

/// `Event.what`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    /// The file's version header, `brain.Event:2`, in the first record.
    #[prost(string, tag = "3")]
    FileVersion(String),
    /// Scalars or plugin data.
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, Message)]
pub struct Summary {
    /// The summary's values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`: a scalar (`simple_value`) or plugin data in `metadata`.
#[derive(Clone, PartialEq, Message)]
pub struct SummaryValue {
    /// The value's name: a metric's name, or the hparams plugin's summary tag.
    #[prost(string, tag = "1")]
    pub tag: String,
    /// A scalar's value.
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
    /// Plugin data (the hyperparameters).
    #[prost(message, optional, tag = "9")]
    pub metadata: Option<SummaryMetadata>,
}

/// `tensorflow.SummaryMetadata`.
#[derive(Clone, PartialEq, Message)]
pub struct SummaryMetadata {
    /// The plugin the value is for, and its data.
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
}

/// `tensorflow.SummaryMetadata.PluginData`.
#[derive(Clone, PartialEq, Message)]
pub struct PluginData {
    /// The plugin's name (`hparams`).
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    /// The plugin's own message, encoded (an [`HParamsPluginData`]).
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

/// `tensorboard.hparams.HParamsPluginData`.
#[derive(Clone, PartialEq, Message)]
pub struct HParamsPluginData {
    /// The plugin data's version (0).
    #[prost(int32, tag = "1")]
    pub version: i32,
    /// Which of the three summaries this is.
    #[prost(oneof = "HParamsData", tags = "2, 3, 4")]
    pub data: Option<HParamsData>,
}

/// `HParamsPluginData.data`: the hparams plugin's three summaries.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum HParamsData {
    /// The hyperparameters and metrics the run declares.
    #[prost(message, tag = "2")]
    Experiment(Experiment),
    /// The run's hyperparameter values, at its start.
    #[prost(message, tag = "3")]
    SessionStartInfo(SessionStartInfo),
    /// How the run ended.
    #[prost(message, tag = "4")]
    SessionEndInfo(SessionEndInfo),
}

/// `tensorboard.hparams.Experiment`: the hyperparameters and metrics declared.
#[derive(Clone, PartialEq, Message)]
pub struct Experiment {
    /// One per hyperparameter.
    #[prost(message, repeated, tag = "4")]
    pub hparam_infos: Vec<HParamInfo>,
    /// One per metric shown against them (`hp_metric`).
    #[prost(message, repeated, tag = "5")]
    pub metric_infos: Vec<MetricInfo>,
}

/// `tensorboard.hparams.HParamInfo`: one hyperparameter's declaration.
#[derive(Clone, PartialEq, Message)]
pub struct HParamInfo {
    /// The hyperparameter's name (nested keys joined with `/`).
    #[prost(string, tag = "1")]
    pub name: String,
    /// `DataType`: 1 string, 2 bool, 3 float64.
    #[prost(int32, tag = "4")]
    pub r#type: i32,
}

/// `tensorboard.hparams.MetricInfo`: one metric's declaration.
#[derive(Clone, PartialEq, Message)]
pub struct MetricInfo {
    /// The metric's name.
    #[prost(message, optional, tag = "1")]
    pub name: Option<MetricName>,
}

/// `tensorboard.hparams.MetricName`.
#[derive(Clone, PartialEq, Message)]
pub struct MetricName {
    /// The run subdirectory the metric is in (empty: the run's own).
    #[prost(string, tag = "1")]
    pub group: String,
    /// The metric's tag.
    #[prost(string, tag = "2")]
    pub tag: String,
}

/// `tensorboard.hparams.SessionStartInfo`: the run's hyperparameter values.
#[derive(Clone, PartialEq, Message)]
pub struct SessionStartInfo {
    /// The values, by hyperparameter name.
    #[prost(btree_map = "string, message", tag = "1")]
    pub hparams: std::collections::BTreeMap<String, ProtoValue>,
    /// When the run started, in seconds since the Unix epoch.
    #[prost(double, tag = "5")]
    pub start_time_secs: f64,
}

/// `tensorboard.hparams.SessionEndInfo`: how the run ended.
#[derive(Clone, PartialEq, Message)]
pub struct SessionEndInfo {
    /// `Status`: 1 success, 2 failure.
    #[prost(int32, tag = "1")]
    pub status: i32,
    /// When the run ended, in seconds since the Unix epoch.
    #[prost(double, tag = "2")]
    pub end_time_secs: f64,
}

/// `google.protobuf.Value`, the scalar kinds.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoValue {
    /// The value.
    #[prost(oneof = "Kind", tags = "2, 3, 4")]
    pub kind: Option<Kind>,
}

/// `google.protobuf.Value.kind`, the scalar kinds.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    /// A number.
    #[prost(double, tag = "2")]
    Number(f64),
    /// A string.
    #[prost(string, tag = "3")]
    String(String),
    /// A boolean.
    #[prost(bool, tag = "4")]
    Bool(bool),
}

/// TFRecord's checksum: CRC-32C, rotated and offset so CRCs of CRCs stay useful.
pub fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its masked CRC, the data, the data's masked CRC.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// Reads an event file back, checking both CRCs of every record.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |r: String| Error::bad_file(path, r);
    let (mut at, mut out) = (0usize, Vec::new());
    while at < bytes.len() {
        let header = bytes.get(at..at + 12).ok_or_else(|| bad(format!("truncated record header at byte {at}")))?;
        let len_bytes = &header[..8];
        let crc = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if crc != masked_crc(len_bytes) {
            return Err(bad(format!("length CRC mismatch at byte {at}")));
        }
        let len = usize::try_from(u64::from_le_bytes(len_bytes.try_into().expect("8 bytes")))
            .map_err(|_| bad(format!("record length too large at byte {at}")))?;
        let data_end = (at + 12).checked_add(len).filter(|e| e + 4 <= bytes.len());
        let data_end = data_end.ok_or_else(|| bad(format!("truncated record at byte {at}")))?;
        let data = &bytes[at + 12..data_end];
        let crc = u32::from_le_bytes(bytes[data_end..data_end + 4].try_into().expect("4 bytes"));
        if crc != masked_crc(data) {
            return Err(bad(format!("data CRC mismatch in the record at byte {at}")));
        }
        out.push(Event::decode(data).map_err(|e| bad(format!("not an Event protobuf at byte {at}: {e}")))?);
        at = data_end + 4;
    }
    Ok(out)
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Lightning's `TensorBoardLogger`: `<root>/lightning_logs/version_N/events.out.tfevents.*`
/// with every logged scalar, the hyperparameters for TensorBoard's HPARAMS tab, and
/// `hparams.yaml`. Open with `tensorboard --logdir <root>/lightning_logs`.
///
/// ```no_run
/// use lightning::prelude::*;
/// let trainer = Trainer::builder().logger(TensorBoardLogger::new("runs")).build()?;
/// # Ok::<(), lightning::Error>(())
/// ```
pub struct TensorBoardLogger {
    dir: RunDir,
    file: Option<(PathBuf, BufWriter<File>)>,
    hparams_logged: bool,
}

impl std::fmt::Debug for TensorBoardLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorBoardLogger").field("dir", &self.dir).finish()
    }
}

impl TensorBoardLogger {
    /// A logger writing under `root` (Lightning's `save_dir`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        TensorBoardLogger { dir: RunDir::new(root.into()), file: None, hparams_logged: false }
    }
    /// The experiment's directory name under the root (default `lightning_logs`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.dir.name = name.into();
        self
    }
    /// A fixed version instead of the next free one.
    pub fn version(mut self, v: usize) -> Self {
        self.dir.version = Some(v);
        self
    }

    /// The event file, created on first use with its `brain.Event:2` header record.
    pub fn event_file(&mut self) -> Result<PathBuf> {
        if self.file.is_none() {
            let dir = self.dir.create()?;
            let t = now();
            let path = dir.join(format!("events.out.tfevents.{}.{}.{}.0", t as u64, hostname(), std::process::id()));
            let f = File::create(&path).map_err(|e| Error::io(&path, e))?;
            self.file = Some((path, BufWriter::new(f)));
            let header = Event { wall_time: t, step: 0, what: Some(What::FileVersion("brain.Event:2".into())) };
            self.write(&header)?;
        }
        Ok(self.file.as_ref().map(|(p, _)| p.clone()).expect("just created"))
    }

    fn write(&mut self, e: &Event) -> Result<()> {
        if self.file.is_none() {
            self.event_file()?;
        }
        let (path, w) = self.file.as_mut().expect("opened above");
        w.write_all(&record(&e.encode_to_vec())).map_err(|err| Error::io(&*path, err))
    }

    fn summary(&mut self, step: usize, value: Vec<SummaryValue>) -> Result<()> {
        self.write(&Event { wall_time: now(), step: step as i64, what: Some(What::Summary(Summary { value })) })
    }

    fn hparams_summary(tag: &str, data: HParamsData) -> SummaryValue {
        let content = HParamsPluginData { version: 0, data: Some(data) }.encode_to_vec();
        SummaryValue {
            tag: tag.into(),
            simple_value: None,
            metadata: Some(SummaryMetadata {
                plugin_data: Some(PluginData { plugin_name: "hparams".into(), content }),
            }),
        }
    }
}

/// Flattens nested hyperparameters to `a/b` keys, as Lightning's `_flatten_dict` does.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, ProtoValue)>) {
    let kind = match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}/{k}") };
                flatten(&key, v, out);
            }
            return;
        }
        serde_json::Value::Number(n) => Kind::Number(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::Bool(b) => Kind::Bool(*b),
        serde_json::Value::String(s) => Kind::String(s.clone()),
        other => Kind::String(other.to_string()),
    };
    out.push((prefix.to_owned(), ProtoValue { kind: Some(kind) }));
}

impl Logger for TensorBoardLogger {
    fn log_metrics(&mut self, metrics: &[(String, f64)], step: usize) -> Result<()> {
        let values = metrics
            .iter()
            .map(|(k, v)| SummaryValue { tag: k.clone(), simple_value: Some(*v as f32), metadata: None })
            .collect();
        self.summary(step, values)
    }

    fn log_hyperparams(&mut self, params: &serde_json::Value) -> Result<()> {
        self.dir.write_hparams(params)?;
        let mut flat = Vec::new();
        flatten("", params, &mut flat);
        let infos = flat
            .iter()
            .map(|(k, v)| HParamInfo {
                name: k.clone(),
                r#type: match v.kind {
                    Some(Kind::String(_)) => 1,
                    Some(Kind::Bool(_)) => 2,
                    _ => 3,
                },
            })
            .collect();
        // Lightning's `default_hp_metric`: a placeholder metric so the HPARAMS tab shows the run
        let metric = MetricInfo { name: Some(MetricName { group: String::new(), tag: "hp_metric".into() }) };
        let exp = Experiment { hparam_infos: infos, metric_infos: vec![metric] };
        let ssi = SessionStartInfo { hparams: flat.into_iter().collect(), start_time_secs: now() };
        let summaries = vec![
            Self::hparams_summary("_hparams_/experiment", HParamsData::Experiment(exp)),
            Self::hparams_summary("_hparams_/session_start_info", HParamsData::SessionStartInfo(ssi)),
        ];
        self.summary(0, summaries)?;
        self.summary(0, vec![SummaryValue { tag: "hp_metric".into(), simple_value: Some(-1.0), metadata: None }])?;
        self.hparams_logged = true;
        Ok(())
    }

    fn save(&mut self) -> Result<()> {
        if let Some((path, w)) = &mut self.file {
            w.flush().map_err(|e| Error::io(&*path, e))?;
        }
        Ok(())
    }

    fn finalize(&mut self, status: &str) -> Result<()> {
        if self.hparams_logged {
            let sei = SessionEndInfo { status: if status == "success" { 1 } else { 2 }, end_time_secs: now() };
            let v = Self::hparams_summary("_hparams_/session_end_info", HParamsData::SessionEndInfo(sei));
            self.summary(0, vec![v])?;
        }
        self.save()
    }

    fn prepare(&mut self) -> Result<()> {
        self.dir.fix_version()
    }

    fn log_dir(&self) -> Option<PathBuf> {
        self.dir.known()
    }

    fn version(&self) -> Option<usize> {
        self.dir.version
    }
}
