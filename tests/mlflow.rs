//! `MlflowLogger` against a real MLflow tracking server: scripts/mlflow-server.sh installs
//! mlflow from PyPI, starts `mlflow server` on 127.0.0.1 and sets `LIGHTNING_MLFLOW_URI`;
//! these tests read the run back through MLflow's REST API and compare every logged value
//! with the same run's `metrics.csv`. Without the variable the server tests say so and pass.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use lightning::logging::LogModel;
use lightning::prelude::*;
use lightning::serde_json::Value;
use serde::Serialize;

#[derive(Serialize, Clone)]
struct Opt {
    name: String,
    betas: Vec<f64>,
}

#[derive(Serialize, Clone)]
struct Hyper {
    lr: f64,
    eps: f64,
    opt: Opt,
    nesterov: bool,
}

/// `y = w x + b` on 64 points; logs a loss and a `val_loss`, and fails at `fail_at`.
#[lightning_module]
struct Line {
    vars: VarMap,
    w: Var,
    b: Var,
    #[hparams]
    hyper: Hyper,
    fail_at: Option<usize>,
    /// Extra values logged each step, to fill batches past MLflow's 1000 a request.
    extra: usize,
}

#[lightning_module]
impl Line {
    fn training_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        if Some(trainer.global_step()) == self.fail_at {
            return Err(lightning::Error::msg("a failure on purpose"));
        }
        let pred = batch.0.broadcast_mul(self.w.as_tensor())?.broadcast_add(self.b.as_tensor())?;
        let loss = pred.sub(&batch.1)?.sqr()?.mean_all()?;
        trainer.log_with("train loss", &loss, Log::new().on_epoch(true))?;
        for i in 0..self.extra {
            trainer.log(&format!("x{i}"), (trainer.global_step() * 10 + i) as f64)?;
        }
        Ok(loss)
    }
    fn validation_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<()> {
        let pred = batch.0.broadcast_mul(self.w.as_tensor())?.broadcast_add(self.b.as_tensor())?;
        trainer.log("val_loss", pred.sub(&batch.1)?.sqr()?.mean_all()?)?;
        Ok(())
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(vec![("w".to_string(), self.w.clone()), ("b".to_string(), self.b.clone())], self.hyper.lr)
    }
}

fn model(fail_at: Option<usize>, extra: usize) -> Line {
    let zero = || Var::zeros(1, DType::F32, &Device::Cpu).unwrap();
    let opt = Opt { name: "sgd".into(), betas: vec![0.9, 0.999] };
    let (w, b) = (zero(), zero());
    Line {
        vars: lightning::var_map([("w", &w), ("b", &b)]),
        w,
        b,
        hyper: Hyper { lr: 0.05, eps: 1e-5, opt, nesterov: false },
        fail_at,
        extra,
    }
}

fn data() -> (DataLoader, DataLoader) {
    let x = Tensor::arange(0f32, 64., &Device::Cpu).unwrap().affine(1. / 64., 0.).unwrap();
    let y = x.affine(3.0, 0.5).unwrap();
    let train = DataLoader::new(x.clone(), y.clone(), 8).unwrap();
    (train, DataLoader::new(x, y, 16).unwrap())
}

fn server() -> Option<String> {
    match std::env::var("LIGHTNING_MLFLOW_URI") {
        Ok(uri) if !uri.is_empty() => Some(uri),
        _ => {
            eprintln!("SKIPPED: no MLflow server; scripts/mlflow-server.sh starts one and sets LIGHTNING_MLFLOW_URI");
            None
        }
    }
}

fn get(uri: &str, endpoint: &str, query: &[(&str, &str)]) -> Value {
    let mut r = ureq::get(&format!("{uri}/api/2.0/{endpoint}"));
    for (k, v) in query {
        r = r.query(k, v);
    }
    lightning::serde_json::from_str(&r.call().unwrap().into_string().unwrap()).unwrap()
}

/// The run's metric history, as (step, value) by key.
fn history(uri: &str, run_id: &str, key: &str) -> Vec<(i64, f64, i64)> {
    let h =
        get(uri, "mlflow/metrics/get-history", &[("run_id", run_id), ("metric_key", key), ("max_results", "25000")]);
    let mut out: Vec<(i64, f64, i64)> = h["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["step"].as_i64().unwrap(), m["value"].as_f64().unwrap(), m["timestamp"].as_i64().unwrap()))
        .collect();
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

/// `metrics.csv` as (key → [(step, value)]).
fn csv_values(path: &Path) -> BTreeMap<String, Vec<(i64, f64)>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let step_col = header.iter().position(|h| *h == "step").unwrap();
    let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let step: i64 = cells[step_col].parse().unwrap();
        for (h, c) in header.iter().zip(&cells) {
            if *h != "step" && !c.is_empty() {
                out.entry(h.to_string()).or_default().push((step, c.parse().unwrap()));
            }
        }
    }
    for v in out.values_mut() {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        // MLflow's store keeps one row per (key, step, value, timestamp): `epoch` logged with
        // the step's, the epoch's and validation's rows in one millisecond is one row there,
        // so both sides are compared as sets of (step, value)
        v.dedup();
    }
    out
}

fn trainer(root: &Path, logger: MlflowLogger, checkpoint: ModelCheckpoint) -> Trainer<()> {
    Trainer::builder()
        .max_epochs(3)
        .log_every_n_steps(2)
        .default_root_dir(root)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .logger(logger)
        .logger(CsvLogger::new(root))
        .checkpoint(checkpoint)
        .build()
        .unwrap()
}

#[test]
fn a_run_reads_back_with_every_value_its_params_tags_and_checkpoints() {
    let Some(uri) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let logger = MlflowLogger::new()
        .tracking_uri(&uri)
        .experiment_name(format!("lightning-test-{}", std::process::id()))
        .run_name("line-fit")
        .tag("purpose", "test")
        .log_model(LogModel::All);
    let ck = ModelCheckpoint::new().monitor("val_loss").save_top_k(2).save_last(true);
    let mut t = trainer(dir.path(), logger, ck);
    let (train, val) = data();
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    t.fit(&mut model(None, 0), Data::loader(train).val(val)).unwrap();

    // the run: found by its experiment's name
    let exp = get(
        &uri,
        "mlflow/experiments/get-by-name",
        &[("experiment_name", &format!("lightning-test-{}", std::process::id()))],
    );
    let exp_id = exp["experiment"]["experiment_id"].as_str().unwrap().to_owned();
    let runs = ureq::post(&format!("{uri}/api/2.0/mlflow/runs/search"))
        .set("Content-Type", "application/json")
        .send_string(&lightning::serde_json::json!({"experiment_ids": [exp_id]}).to_string())
        .unwrap()
        .into_string()
        .unwrap();
    let runs: Value = lightning::serde_json::from_str(&runs).unwrap();
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run_id = runs[0]["info"]["run_id"].as_str().unwrap().to_owned();
    let run = &get(&uri, "mlflow/runs/get", &[("run_id", &run_id)])["run"];
    assert_eq!(run["info"]["status"], "FINISHED");
    assert_eq!(run["info"]["run_name"], "line-fit");
    assert!(run["info"]["end_time"].as_i64().unwrap() >= started);
    let pairs = |k: &str| -> BTreeMap<String, String> {
        run["data"][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["key"].as_str().unwrap().into(), p["value"].as_str().unwrap().into()))
            .collect()
    };
    let params = pairs("params");
    let want: BTreeMap<String, String> =
        [("lr", "0.05"), ("eps", "1e-05"), ("nesterov", "False"), ("opt/name", "sgd"), ("opt/betas", "[0.9, 0.999]")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
    assert_eq!(params, want);
    let tags = pairs("tags");
    assert_eq!(tags["purpose"], "test");
    assert_eq!(tags["mlflow.runName"], "line-fit");
    assert_eq!(tags["mlflow.source.type"], "LOCAL");

    // every value the CSV logger wrote, at the same step, and nothing else
    let csv = csv_values(&dir.path().join("lightning_logs/version_0/metrics.csv"));
    let logged: Vec<String> =
        run["data"]["metrics"].as_array().unwrap().iter().map(|m| m["key"].as_str().unwrap().to_owned()).collect();
    let mut logged_sorted = logged.clone();
    logged_sorted.sort();
    assert_eq!(logged_sorted, csv.keys().cloned().collect::<Vec<_>>());
    let mut total = 0;
    for (key, values) in &csv {
        let h = history(&uri, &run_id, key);
        let mut got: Vec<(i64, f64)> = h.iter().map(|(s, v, _)| (*s, *v)).collect();
        got.dedup();
        assert_eq!(&got, values, "metric `{key}`");
        assert!(h.iter().all(|(_, _, t)| *t >= started), "timestamps of `{key}`");
        total += got.len();
    }
    assert!(csv.contains_key("train loss_step") && csv.contains_key("val_loss") && total >= 30, "{csv:?}");

    // checkpoints: the kept ones and last.ckpt, byte for byte, with Lightning's metadata
    // MLflow first: checkpoints under <root>/<experiment id>/<run id>/checkpoints, as in Lightning
    let ckpt_dir = dir.path().join(&exp_id).join(&run_id).join("checkpoints");
    let mut kept: Vec<String> =
        std::fs::read_dir(&ckpt_dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    kept.sort();
    assert_eq!(kept.len(), 3, "{kept:?}");
    let artifacts = |path: &str| -> Vec<String> {
        let l = get(&uri, "mlflow/artifacts/list", &[("run_id", &run_id), ("path", path)]);
        l["files"]
            .as_array()
            .map(|a| a.iter().map(|f| f["path"].as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    let top = artifacts("");
    for name in &kept {
        let stem = name.trim_end_matches(".ckpt");
        assert!(top.contains(&stem.to_owned()), "{stem} in {top:?}");
        let inside = artifacts(stem);
        for f in ["metadata.yaml", "aliases.txt"] {
            assert!(inside.contains(&format!("{stem}/{f}")), "{inside:?}");
        }
        for file in std::fs::read_dir(ckpt_dir.join(name)).unwrap() {
            let file = file.unwrap();
            let url = format!(
                "{uri}/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/{stem}/{name}/{}",
                file.file_name().to_str().unwrap()
            );
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut ureq::get(&url).call().unwrap().into_reader(), &mut bytes).unwrap();
            assert_eq!(bytes, std::fs::read(file.path()).unwrap(), "{url}");
        }
    }
    let best = t.checkpoint_callback().unwrap().best_model_path().unwrap().to_owned();
    let stem = best.file_stem().unwrap().to_str().unwrap();
    let url = format!("{uri}/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/{stem}/aliases.txt");
    assert_eq!(ureq::get(&url).call().unwrap().into_string().unwrap(), "['latest', 'best']");
    let url = format!("{uri}/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/{stem}/metadata.yaml");
    let meta = ureq::get(&url).call().unwrap().into_string().unwrap();
    assert!(
        meta.contains("monitor: val_loss") && meta.contains(&format!("original_filename: \"{stem}.ckpt\"")),
        "{meta}"
    );
}

#[test]
fn a_failed_run_is_failed_and_more_than_a_batch_of_values_all_arrive() {
    let Some(uri) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let logger = MlflowLogger::new().tracking_uri(&uri).experiment_name("lightning-test-failed");
    // 8 steps an epoch, 150 values each step logged every 2nd: 1500 values before the failure
    // at step 20, more than one request holds
    let mut m = model(Some(20), 150);
    let (train, val) = data();
    let mut t = trainer(dir.path(), logger, ModelCheckpoint::new());
    let err = t.fit(&mut m, Data::loader(train).val(val)).unwrap_err();
    assert!(err.to_string().contains("a failure on purpose"), "{err}");
    let exp = get(&uri, "mlflow/experiments/get-by-name", &[("experiment_name", "lightning-test-failed")]);
    let exp_id = exp["experiment"]["experiment_id"].as_str().unwrap();
    let body = lightning::serde_json::json!({"experiment_ids": [exp_id], "order_by": ["attributes.start_time DESC"]});
    let runs = ureq::post(&format!("{uri}/api/2.0/mlflow/runs/search"))
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
        .unwrap();
    let runs: Value = lightning::serde_json::from_str(&runs.into_string().unwrap()).unwrap();
    let run = &runs["runs"][0];
    assert_eq!(run["info"]["status"], "FAILED");
    let run_id = run["info"]["run_id"].as_str().unwrap();
    let csv = csv_values(&dir.path().join("lightning_logs/version_0/metrics.csv"));
    let mut total = 0;
    for (key, values) in &csv {
        let mut got: Vec<(i64, f64)> = history(&uri, run_id, key).into_iter().map(|(s, v, _)| (s, v)).collect();
        got.dedup();
        assert_eq!(&got, values, "metric `{key}`");
        total += got.len();
    }
    assert!(total > 1200, "only {total} values: the test must fill more than one request");
}

#[test]
fn a_server_that_is_not_there_stops_fit_before_training_with_what_to_do() {
    // a port nobody listens on
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let uri = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let mut t = trainer(dir.path(), MlflowLogger::new().tracking_uri(&uri), ModelCheckpoint::new());
    let mut m = model(None, 0);
    let (train, val) = data();
    let err = t.fit(&mut m, Data::loader(train).val(val)).unwrap_err();
    assert!(matches!(err, lightning::Error::Mlflow { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&uri) && msg.contains("mlflow server --host 127.0.0.1") && msg.contains("MLFLOW_TRACKING_URI"),
        "{msg}"
    );
    assert_eq!(m.w.as_tensor().to_vec1::<f32>().unwrap(), [0.0], "no step was taken");
}

#[test]
fn no_tracking_uri_is_an_error_that_says_how_to_give_one() {
    if std::env::var_os("MLFLOW_TRACKING_URI").is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut t = trainer(dir.path(), MlflowLogger::new(), ModelCheckpoint::new());
    let (train, val) = data();
    let err = t.fit(&mut model(None, 0), Data::loader(train).val(val)).unwrap_err();
    assert!(err.to_string().contains("MLFLOW_TRACKING_URI=http://127.0.0.1:5000"), "{err}");
}
