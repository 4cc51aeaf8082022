//! Lightning's `MLFlowLogger`: a run on an MLflow tracking server, through its REST API.

mod artifacts;
mod client;
mod params;
mod sender;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use self::artifacts::Store;
use self::client::{Client, Failure};
use self::sender::{Metric, Sender, MAX_METRICS};
use super::{Logger, SavedCheckpoints};
use crate::dist::rank_zero_warn;
use crate::{Error, Result};

/// Which checkpoints become run artifacts (Lightning's `log_model`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogModel {
    /// None (Lightning's `False`, the default).
    #[default]
    No,
    /// The checkpoints `ModelCheckpoint` keeps, at the end of the run (Lightning's `True`);
    /// every one as it is saved when `save_top_k(-1)` keeps them all.
    AtEnd,
    /// Every checkpoint as it is saved (Lightning's `"all"`).
    All,
}

impl From<bool> for LogModel {
    fn from(v: bool) -> Self {
        if v {
            LogModel::AtEnd
        } else {
            LogModel::No
        }
    }
}

/// The run on the server, once created or found.
#[derive(Debug, Clone)]
struct Run {
    experiment_id: String,
    run_id: String,
    artifacts: Store,
}

/// Logs to an MLflow tracking server (Lightning's `MLFlowLogger`): the experiment by name
/// (created if missing), one run with its name and tags, the module's hyperparameters as
/// params (flattened with `/`), every logged metric with its step and time, checkpoints as
/// artifacts with [`log_model`](Self::log_model), and the run's end as `FINISHED` or
/// `FAILED` (an interrupted run too, as in Lightning).
///
/// Metrics are sent in batches of up to 1000 (`runs/log-batch`) by a thread of their own at
/// every epoch end, when 1000 are waiting, and at the end, so no step waits for the server.
/// A server not answering at the start is an error; one that goes away during the run gets
/// a warning, its metrics are held and retried, and training (and checkpointing) goes on.
///
/// Start a server with `mlflow server --host 127.0.0.1 --port 5000` (see the README).
///
/// ```no_run
/// use lightning::prelude::*;
/// use lightning::logging::LogModel;
/// let logger = MlflowLogger::new()
///     .tracking_uri("http://127.0.0.1:5000") // or set MLFLOW_TRACKING_URI
///     .experiment_name("fashion")
///     .run_name("mlp-lr3e-3")
///     .tag("team", "vision")
///     .log_model(LogModel::All);
/// let trainer = Trainer::builder().logger(logger).build()?;
/// # Ok::<(), lightning::Error>(())
/// ```
#[derive(Debug)]
pub struct MlflowLogger {
    experiment_name: String,
    run_name: Option<String>,
    tracking_uri: Option<String>,
    tags: BTreeMap<String, String>,
    log_model: LogModel,
    checkpoint_path_prefix: String,
    prefix: String,
    artifact_location: Option<String>,
    run_id: Option<String>,
    timeout: Duration,
    client: Option<Client>,
    run: Option<Run>,
    pending: Vec<Metric>,
    sender: Option<Sender>,
    uploaded: BTreeMap<PathBuf, SystemTime>,
    saved: Option<SavedCheckpoints>,
    renamed: BTreeSet<String>,
}

impl Default for MlflowLogger {
    fn default() -> Self {
        Self::new()
    }
}

impl MlflowLogger {
    /// Experiment `lightning_logs`, the server of `MLFLOW_TRACKING_URI`.
    pub fn new() -> Self {
        MlflowLogger {
            experiment_name: "lightning_logs".into(),
            run_name: None,
            tracking_uri: None,
            tags: BTreeMap::new(),
            log_model: LogModel::No,
            checkpoint_path_prefix: String::new(),
            prefix: String::new(),
            artifact_location: None,
            run_id: None,
            timeout: Duration::from_secs(30),
            client: None,
            run: None,
            pending: Vec::new(),
            sender: None,
            uploaded: BTreeMap::new(),
            saved: None,
            renamed: BTreeSet::new(),
        }
    }
    /// The server, `http(s)://host:port` (default: `MLFLOW_TRACKING_URI`).
    pub fn tracking_uri(mut self, uri: impl Into<String>) -> Self {
        self.tracking_uri = Some(uri.into());
        self
    }
    /// The experiment, created when missing (default `lightning_logs`).
    pub fn experiment_name(mut self, name: impl Into<String>) -> Self {
        self.experiment_name = name.into();
        self
    }
    /// The run's name (the `mlflow.runName` tag); default: one the server makes up.
    pub fn run_name(mut self, name: impl Into<String>) -> Self {
        self.run_name = Some(name.into());
        self
    }
    /// A tag of the new run.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }
    /// Which checkpoints become artifacts: `true` (those kept, at the end), `LogModel::All`.
    pub fn log_model(mut self, v: impl Into<LogModel>) -> Self {
        self.log_model = v.into();
        self
    }
    /// A folder in the run's artifacts for the checkpoints (default: none).
    pub fn checkpoint_path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.checkpoint_path_prefix = prefix.into();
        self
    }
    /// Put before every metric's name, joined with `-` (Lightning's `prefix`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// Where a created experiment keeps its artifacts (default: the server's choice).
    pub fn artifact_location(mut self, uri: impl Into<String>) -> Self {
        self.artifact_location = Some(uri.into());
        self
    }
    /// Logs into this existing run instead of creating one (to resume a run).
    pub fn run_id(mut self, id: impl Into<String>) -> Self {
        self.run_id = Some(id.into());
        self
    }
    /// How long one request may take (default 30 s).
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    /// The run's id, once the run is created (at the start of `fit`) or given.
    pub fn id(&self) -> Option<&str> {
        self.run.as_ref().map(|r| r.run_id.as_str()).or(self.run_id.as_deref())
    }
    /// The experiment's id, once known.
    pub fn experiment_id(&self) -> Option<&str> {
        self.run.as_ref().map(|r| r.experiment_id.as_str())
    }

    fn uri(&self) -> Result<String> {
        let uri = self.tracking_uri.clone().or_else(|| std::env::var("MLFLOW_TRACKING_URI").ok());
        let uri = uri.filter(|u| !u.trim().is_empty()).ok_or_else(|| Error::Mlflow {
            uri: "(none)".into(),
            reason:
                "no tracking server given: set MLFLOW_TRACKING_URI=http://127.0.0.1:5000 or call \
                     `MlflowLogger::tracking_uri`, and start a server with `mlflow server --host 127.0.0.1 --port 5000`"
                    .into(),
        })?;
        if !(uri.starts_with("http://") || uri.starts_with("https://")) {
            return Err(Error::Mlflow {
                uri,
                reason: "only http:// and https:// tracking servers are supported (no `file:` or database stores): \
                         start `mlflow server --backend-store-uri <that store>` and give its http:// address"
                    .into(),
            });
        }
        Ok(uri)
    }

    fn err(&self, what: &str, f: Failure) -> Error {
        let uri = self.client.as_ref().map(|c| c.base.clone()).unwrap_or_default();
        let reason = match f {
            Failure::Transient(e) => format!(
                "{what}: the server does not answer ({e}). Start one with `mlflow server --host 127.0.0.1 --port \
                 5000` and set MLFLOW_TRACKING_URI (or `MlflowLogger::tracking_uri`) to its address"
            ),
            refused => format!("{what}: refused, {refused}"),
        };
        Error::Mlflow { uri, reason }
    }

    /// Finds or creates the experiment and the run (Lightning's `experiment` property).
    fn ensure_run(&mut self) -> Result<()> {
        if self.run.is_some() {
            return Ok(());
        }
        let client = Client::new(&self.uri()?, self.timeout);
        self.client = Some(client.clone());
        let info = match &self.run_id {
            Some(id) => {
                let got = client.retrying(|c| c.get("runs/get", &[("run_id", id)]));
                let run = got.map_err(|e| self.err(&format!("looking up run {id}"), e))?;
                // a resumed run is running again until its end is logged
                let update = json!({"run_id": id, "status": "RUNNING"});
                client.retrying(|c| c.post("runs/update", &update)).map_err(|e| self.err("reopening the run", e))?;
                run["run"]["info"].clone()
            }
            None => {
                let experiment_id = self.experiment(&client)?;
                let body = self.create_run_body(&experiment_id);
                let got = client.retrying(|c| c.post("runs/create", &body));
                got.map_err(|e| self.err("creating a run", e))?["run"]["info"].clone()
            }
        };
        let text = |k: &str| info[k].as_str().unwrap_or_default().to_owned();
        let run = Run {
            experiment_id: text("experiment_id"),
            run_id: text("run_id"),
            artifacts: Store::parse(&text("artifact_uri")),
        };
        if self.log_model != LogModel::No {
            if let Store::Other(uri) = &run.artifacts {
                rank_zero_warn(format!(
                    "MlflowLogger: log_model is on but the run's artifacts live at {uri}, which only the server's \
                     artifact proxy can reach: checkpoints will not be uploaded (start the server with \
                     `--artifacts-destination`, its default)"
                ));
            }
        }
        self.run = Some(run);
        Ok(())
    }

    /// The experiment's id, created when missing, as Lightning does.
    fn experiment(&self, client: &Client) -> Result<String> {
        let name = self.experiment_name.as_str();
        match client.retrying(|c| c.get("experiments/get-by-name", &[("experiment_name", name)])) {
            Ok(e) if e["experiment"]["lifecycle_stage"] != "deleted" => {
                return Ok(e["experiment"]["experiment_id"].as_str().unwrap_or_default().to_owned())
            }
            Ok(_) => {}
            Err(Failure::Refused { error_code, .. }) if error_code == "RESOURCE_DOES_NOT_EXIST" => {}
            Err(e) => return Err(self.err(&format!("looking up experiment `{name}`"), e)),
        }
        eprintln!("MLflow: experiment `{name}` not found; creating it");
        let mut body = json!({ "name": name });
        if let Some(loc) = &self.artifact_location {
            body["artifact_location"] = json!(loc);
        }
        match client.retrying(|c| c.post("experiments/create", &body)) {
            Ok(r) => Ok(r["experiment_id"].as_str().unwrap_or_default().to_owned()),
            // another run created it meanwhile
            Err(Failure::Refused { error_code, .. }) if error_code == "RESOURCE_ALREADY_EXISTS" => {
                let got = client.retrying(|c| c.get("experiments/get-by-name", &[("experiment_name", name)]));
                let e = got.map_err(|e| self.err(&format!("looking up experiment `{name}`"), e))?;
                Ok(e["experiment"]["experiment_id"].as_str().unwrap_or_default().to_owned())
            }
            Err(e) => Err(self.err(&format!("creating experiment `{name}`"), e)),
        }
    }

    /// `runs/create`: the user's tags, the run name, and the context tags MLflow's client adds.
    fn create_run_body(&self, experiment_id: &str) -> Value {
        let mut tags = BTreeMap::new();
        let user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "unknown".into());
        tags.insert("mlflow.user".to_owned(), user.clone());
        tags.insert("mlflow.source.type".to_owned(), "LOCAL".to_owned());
        if let Some(program) = std::env::args().next() {
            tags.insert("mlflow.source.name".to_owned(), program);
        }
        tags.extend(self.tags.clone());
        if let Some(name) = &self.run_name {
            if self.tags.contains_key("mlflow.runName") {
                rank_zero_warn("MlflowLogger: the tag `mlflow.runName` is replaced by the run name given");
            }
            tags.insert("mlflow.runName".to_owned(), name.clone());
        }
        let mut body = json!({
            "experiment_id": experiment_id,
            "user_id": user,
            "start_time": now_ms(),
            "tags": tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        });
        if let Some(name) = &self.run_name {
            body["run_name"] = json!(name);
        }
        body
    }

    /// A metric name as MLflow takes it: Lightning's prefix, and only `[a-zA-Z0-9_/. -]`.
    fn metric_key(&mut self, name: &str) -> String {
        let key = if self.prefix.is_empty() { name.to_owned() } else { format!("{}-{name}", self.prefix) };
        let clean: String = key.chars().filter(|c| c.is_ascii_alphanumeric() || "_/. -".contains(*c)).collect();
        if clean != key && self.renamed.insert(key.clone()) {
            rank_zero_warn(format!(
                "MLFlow only allows '_', '/', '.' and ' ' special characters in metric name. Replacing {key} with {clean}."
            ));
        }
        clean
    }

    fn send_pending(&mut self) {
        if let Some(s) = &self.sender {
            s.send(std::mem::take(&mut self.pending));
        }
    }

    /// Uploads the checkpoints not uploaded yet; a failure is a warning (the files stay on disk).
    fn upload_checkpoints(&mut self, saved: &SavedCheckpoints, at_end: bool) {
        let (Some(client), Some(run)) = (&self.client, &self.run) else { return };
        if matches!(run.artifacts, Store::Other(_)) {
            return;
        }
        for (t, path, score) in artifacts::to_upload(saved, &self.uploaded) {
            match artifacts::upload(client, &run.artifacts, &self.checkpoint_path_prefix, saved, &path, score) {
                Ok(()) => {
                    self.uploaded.insert(path, t);
                }
                Err(e) => rank_zero_warn(format!(
                    "MLflow: could not upload the checkpoint {} ({e}); it stays on disk{}",
                    path.display(),
                    if at_end { "" } else { ", and is tried again at the next save and at the end" }
                )),
            }
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Logger for MlflowLogger {
    fn log_metrics(&mut self, metrics: &[(String, f64)], step: usize) -> Result<()> {
        self.ensure_run()?;
        let timestamp = now_ms();
        for (name, value) in metrics {
            let key = self.metric_key(name);
            self.pending.push(Metric { key, value: *value, timestamp, step: step as i64 });
            if self.pending.len() >= MAX_METRICS {
                self.send_pending();
            }
        }
        Ok(())
    }

    /// Sent at once, 100 a request (MLflow's limit), so a server that refuses them (a
    /// resumed run whose hyperparameters changed) stops the run at its start.
    fn log_hyperparams(&mut self, hparams: &Value) -> Result<()> {
        self.ensure_run()?;
        let run_id = self.id().unwrap_or_default().to_owned();
        let mut params = params::flatten(hparams);
        for (k, v) in &mut params {
            if v.chars().count() > params::MAX_VALUE {
                rank_zero_warn(format!(
                    "MLflow: the param `{k}` is cut to {} characters, as Lightning does",
                    params::MAX_VALUE
                ));
                *v = v.chars().take(params::MAX_VALUE).collect();
            }
        }
        let client = self.client.clone().expect("ensure_run sets the client");
        for chunk in params.chunks(100) {
            let list: Vec<Value> = chunk.iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
            let body = json!({"run_id": run_id, "params": list});
            client.retrying(|c| c.post("runs/log-batch", &body)).map_err(|e| {
                self.err(&format!("logging the hyperparameters to run {run_id} (a resumed run keeps its params: start a new run to change them)"), e)
            })?;
        }
        Ok(())
    }

    /// Hands the buffered metrics to the sending thread (every epoch end).
    fn save(&mut self) -> Result<()> {
        self.send_pending();
        Ok(())
    }

    /// Sends what is left, uploads the kept checkpoints (`log_model(true)`), and ends the run
    /// `FINISHED` or `FAILED`. What could not be delivered is a warning, never a lost run.
    fn finalize(&mut self, status: &str) -> Result<()> {
        if self.run.is_none() {
            return Ok(());
        }
        self.send_pending();
        if let Some(s) = self.sender.take() {
            let lost = s.finish();
            if lost.metrics > 0 {
                rank_zero_warn(format!(
                    "MLflow: {} metric values could not be sent to run {} ({}); the checkpoints are on disk",
                    lost.metrics,
                    self.id().unwrap_or_default(),
                    lost.last_error.unwrap_or_default()
                ));
            }
        }
        if self.log_model != LogModel::No {
            if let Some(saved) = self.saved.clone() {
                self.upload_checkpoints(&saved, true);
            }
        }
        let status = if status == "success" { "FINISHED" } else { "FAILED" };
        let (client, run_id) =
            (self.client.clone().expect("set with the run"), self.id().unwrap_or_default().to_owned());
        let body = json!({"run_id": run_id, "status": status, "end_time": now_ms()});
        match client.retrying(|c| c.post("runs/update", &body)) {
            // where to look, as MLflow's own client says at the end of a run
            Ok(_) => {
                let experiment = self.experiment_id().unwrap_or_default();
                let url = format!("{}/#/experiments/{experiment}/runs/{run_id}", client.base);
                crate::dist::rank_zero_only(|| eprintln!("MLflow: run {run_id} {status}: {url}"));
            }
            Err(e) => {
                rank_zero_warn(format!("MLflow: could not mark run {run_id} {status} ({e}); it shows as RUNNING"))
            }
        }
        Ok(())
    }

    /// Creates (or finds) the run, so a server that is not there stops `fit` before training,
    /// and starts the thread that sends metrics.
    fn prepare(&mut self) -> Result<()> {
        self.ensure_run()?;
        if self.sender.is_none() {
            let (client, run_id) =
                (self.client.clone().expect("set with the run"), self.id().unwrap_or_default().to_owned());
            self.sender = Some(Sender::start(client, run_id).map_err(|e| Error::Mlflow {
                uri: self.client.as_ref().map(|c| c.base.clone()).unwrap_or_default(),
                reason: format!("cannot start the thread that sends metrics: {e}"),
            })?);
        }
        Ok(())
    }

    /// `<experiment_id>/<run_id>`, under `default_root_dir`, as Lightning's `<name>/<version>`.
    fn run_subdir(&self) -> Option<PathBuf> {
        self.run.as_ref().map(|r| PathBuf::from(&r.experiment_id).join(&r.run_id))
    }

    fn after_save_checkpoint(&mut self, saved: &SavedCheckpoints) -> Result<()> {
        match self.log_model {
            LogModel::All => self.upload_checkpoints(saved, false),
            LogModel::AtEnd if saved.save_top_k == -1 => self.upload_checkpoints(saved, false),
            _ => {}
        }
        self.saved = Some(saved.clone());
        Ok(())
    }
}

impl Drop for MlflowLogger {
    /// A logger dropped without `finalize` (a panic) still sends what it holds.
    fn drop(&mut self) {
        self.send_pending();
        if let Some(s) = self.sender.take() {
            let _ = s.finish();
        }
    }
}
