//! `lightning::metrics` against scikit-learn: `scripts/metrics-reference.py` computed each
//! metric on fixed inputs into `tests/fixtures/metrics-reference.json`. Here the same inputs
//! go through the metrics in batches of 4, directly and through the trainer
//! (`TrainerState::log_metric` in `on_train_epoch_end`); with the `mpi` feature, also on 2
//! ranks under `mpirun`, each rank seeing half of the batches and computing, synced, the
//! value over all of them.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder, VarMap};
use lightning::metrics::{
    Accuracy, Auroc, Average, ConfusionMatrix, F1Score, MeanAbsoluteError, MeanMetric, MeanSquaredError, Metric,
    Precision, R2Score, Recall, SumMetric,
};
use lightning::prelude::*;
use lightning::serde_json::Value;

const BATCH: usize = 4;

fn reference() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/metrics-reference.json"))
        .expect("tests/fixtures/metrics-reference.json (scripts/metrics-reference.py writes it)");
    lightning::serde_json::from_str(&text).unwrap()
}

fn column(r: &Value, name: &str) -> Vec<f64> {
    r["inputs"][name].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

/// The inputs as one (N, 8) f64 tensor: probs (3), binary score, binary label, regression
/// prediction, regression target, weight; and the class labels (N,) as u32.
fn data(r: &Value) -> (Tensor, Tensor) {
    let probs: Vec<Vec<f64>> = r["inputs"]["probs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect())
        .collect();
    let cols = ["binary_scores", "binary_labels", "reg_pred", "reg_target", "weights"].map(|c| column(r, c));
    let n = probs.len();
    let x: Vec<f64> = (0..n).flat_map(|i| probs[i].iter().copied().chain(cols.iter().map(move |c| c[i]))).collect();
    let labels: Vec<u32> = column(r, "labels").into_iter().map(|v| v as u32).collect();
    (Tensor::from_vec(x, (n, 8), &Device::Cpu).unwrap(), Tensor::from_vec(labels, n, &Device::Cpu).unwrap())
}

#[derive(Clone, Debug)]
struct Suite {
    accuracy: Accuracy,
    accuracy_top2: Accuracy,
    precision_macro: Precision,
    precision_micro: Precision,
    recall_macro: Recall,
    recall_micro: Recall,
    f1_macro: F1Score,
    f1_micro: F1Score,
    auroc_binary: Auroc,
    auroc_ovr: Auroc,
    mse: MeanSquaredError,
    mae: MeanAbsoluteError,
    r2: R2Score,
    mean: MeanMetric,
    sum: SumMetric,
    confusion: ConfusionMatrix,
}

impl Suite {
    fn new(c: usize) -> Self {
        Suite {
            accuracy: Accuracy::new(c),
            accuracy_top2: Accuracy::new(c).top_k(2),
            precision_macro: Precision::new(c),
            precision_micro: Precision::new(c).average(Average::Micro),
            recall_macro: Recall::new(c).average(Average::Macro),
            recall_micro: Recall::new(c).average(Average::Micro),
            f1_macro: F1Score::new(c),
            f1_micro: F1Score::new(c).average(Average::Micro),
            auroc_binary: Auroc::binary(),
            auroc_ovr: Auroc::one_vs_rest(c),
            mse: MeanSquaredError::new(),
            mae: MeanAbsoluteError::new(),
            r2: R2Score::new(),
            mean: MeanMetric::new(),
            sum: SumMetric::new(),
            confusion: ConfusionMatrix::new(c),
        }
    }

    fn update(&mut self, x: &Tensor, labels: &Tensor) -> lightning::Result<()> {
        let col = |i: usize| x.narrow(1, i, 1).and_then(|t| t.squeeze(1));
        let probs = x.narrow(1, 0, 3)?;
        // class indices as predictions (f64 whole numbers), and as scores
        self.accuracy.update((&probs.argmax(1)?, labels))?;
        self.accuracy_top2.update((&probs, labels))?;
        self.precision_macro.update((&probs, labels))?;
        self.precision_micro.update((&probs, labels))?;
        self.recall_macro.update((&probs, labels))?;
        self.recall_micro.update((&probs, labels))?;
        self.f1_macro.update((&probs, labels))?;
        self.f1_micro.update((&probs, labels))?;
        self.confusion.update((&probs, labels))?;
        self.auroc_binary.update((&col(3)?, &col(4)?))?;
        self.auroc_ovr.update((&probs, labels))?;
        let (pred, target) = (col(5)?, col(6)?);
        self.mse.update((&pred, &target))?;
        self.mae.update((&pred, &target))?;
        self.r2.update((&pred, &target))?;
        self.mean.update_weighted(&pred, &col(7)?)?;
        self.sum.update(&pred)
    }

    /// Every scalar metric by its reference name, logged (computed over all ranks, then reset).
    fn log(&mut self, t: &mut TrainerState) -> lightning::Result<Vec<(&'static str, f64)>> {
        Ok(vec![
            ("accuracy", t.log_metric("accuracy", &mut self.accuracy)?),
            ("accuracy_top2", t.log_metric("accuracy_top2", &mut self.accuracy_top2)?),
            ("precision_macro", t.log_metric("precision_macro", &mut self.precision_macro)?),
            ("precision_micro", t.log_metric("precision_micro", &mut self.precision_micro)?),
            ("recall_macro", t.log_metric("recall_macro", &mut self.recall_macro)?),
            ("recall_micro", t.log_metric("recall_micro", &mut self.recall_micro)?),
            ("f1_macro", t.log_metric("f1_macro", &mut self.f1_macro)?),
            ("f1_micro", t.log_metric("f1_micro", &mut self.f1_micro)?),
            ("auroc_binary", t.log_metric("auroc_binary", &mut self.auroc_binary)?),
            ("auroc_ovr", t.log_metric("auroc_ovr", &mut self.auroc_ovr)?),
            ("mse", t.log_metric("mse", &mut self.mse)?),
            ("mae", t.log_metric("mae", &mut self.mae)?),
            ("r2", t.log_metric("r2", &mut self.r2)?),
            ("mean", t.log_metric("mean", &mut self.mean)?),
            ("sum", t.log_metric("sum", &mut self.sum)?),
        ])
    }
}

fn assert_matches(name: &str, got: f64, r: &Value, context: &str) {
    let want = r["values"][name].as_f64().unwrap();
    assert!((got - want).abs() < 1e-9, "{context}: {name} = {got}, scikit-learn says {want}");
}

fn confusion_reference(r: &Value) -> Vec<Vec<u64>> {
    r["confusion_matrix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect())
        .collect()
}

#[test]
fn each_metric_equals_scikit_learn_over_batches() {
    let r = reference();
    let (x, labels) = data(&r);
    let mut suite = Suite::new(3);
    for start in (0..x.dim(0).unwrap()).step_by(BATCH) {
        suite.update(&x.narrow(0, start, BATCH).unwrap(), &labels.narrow(0, start, BATCH).unwrap()).unwrap();
    }
    let s = &suite;
    let values = [
        ("accuracy", s.accuracy.compute()),
        ("accuracy_top2", s.accuracy_top2.compute()),
        ("precision_macro", s.precision_macro.compute()),
        ("precision_micro", s.precision_micro.compute()),
        ("recall_macro", s.recall_macro.compute()),
        ("recall_micro", s.recall_micro.compute()),
        ("f1_macro", s.f1_macro.compute()),
        ("f1_micro", s.f1_micro.compute()),
        ("auroc_binary", s.auroc_binary.compute()),
        ("auroc_ovr", s.auroc_ovr.compute()),
        ("mse", s.mse.compute()),
        ("mae", s.mae.compute()),
        ("r2", s.r2.compute()),
        ("mean", s.mean.compute()),
        ("sum", s.sum.compute()),
    ];
    assert_eq!(values.len(), r["values"].as_object().unwrap().len(), "one check per reference value");
    for (name, v) in values {
        assert_matches(name, v.unwrap(), &r, "one process");
    }
    assert_eq!(suite.confusion.compute().unwrap(), confusion_reference(&r));
    // a reset forgets everything: nothing to compute, rather than a silent 0
    suite.accuracy.reset();
    assert!(matches!(suite.accuracy.compute(), Err(lightning::Error::Metric { .. })));
}

#[test]
fn wrong_inputs_are_errors_naming_the_metric() {
    let dev = Device::Cpu;
    let scores = Tensor::new(&[[0.2f32, 0.8], [0.6, 0.4]], &dev).unwrap();
    let err = |e: lightning::Result<()>| e.unwrap_err().to_string();
    let mut acc = Accuracy::new(3);
    assert!(err(acc.update((&scores, &Tensor::new(&[0u32, 1], &dev).unwrap()))).contains("(N, 3)"));
    assert!(err(acc.update((&scores, &Tensor::new(&[0u32, 5], &dev).unwrap()))).contains("not a class index"));
    let mut top = Accuracy::new(2).top_k(3);
    assert!(err(top.update((&scores, &Tensor::new(&[0u32, 1], &dev).unwrap()))).contains("top_k"));
    let mut mse = MeanSquaredError::new();
    assert!(err(mse.update((&scores, &Tensor::zeros(2, DType::F32, &dev).unwrap()))).contains("same shape"));
    let mut auroc = Auroc::binary();
    auroc.update((&Tensor::new(&[0.1f32, 0.9], &dev).unwrap(), &Tensor::new(&[1u32, 1], &dev).unwrap())).unwrap();
    assert!(auroc.compute().unwrap_err().to_string().contains("no positive or no negative"));
    assert!(R2Score::new().compute().is_err());
}

/// Feeds the reference inputs as training batches; logs every metric at the epoch's end.
#[lightning_module]
struct Evaluated {
    vars: VarMap,
    layer: Linear,
    suite: Suite,
    /// What `log_metric` returned at the last epoch end.
    logged: Vec<(&'static str, f64)>,
    confusion: Vec<Vec<u64>>,
    /// This rank's own sum of the regression predictions (not synced).
    local_sum: f64,
    /// Calls `log_metric` from `training_step`, which must fail.
    log_in_step: bool,
}

#[lightning_module]
impl Evaluated {
    fn training_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        self.suite.update(&batch.0, &batch.1)?;
        if self.log_in_step {
            trainer.log_metric("accuracy", &mut self.suite.accuracy)?;
        }
        // a loss that trains nothing (the weights are not used): only the metrics matter
        Ok(self.layer.forward(&batch.0)?.mean_all()?)
    }
    fn on_train_epoch_end(&mut self, trainer: &mut TrainerState) -> lightning::Result<()> {
        self.confusion = trainer.compute_metric(&self.suite.confusion)?;
        self.suite.confusion.reset();
        self.local_sum = self.suite.sum.compute()?;
        self.logged = self.suite.log(trainer)?;
        Ok(())
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&self.vars, 1e-9)
    }
}

fn evaluated() -> Evaluated {
    let vars = VarMap::new();
    let layer = candle_nn::linear(8, 1, VarBuilder::from_varmap(&vars, DType::F64, &Device::Cpu)).unwrap();
    Evaluated {
        vars,
        layer,
        suite: Suite::new(3),
        logged: Vec::new(),
        confusion: Vec::new(),
        local_sum: 0.0,
        log_in_step: false,
    }
}

/// Fits one epoch over the reference inputs, `batch` rows per step; checks and returns
/// what was logged.
fn fit_and_check(builder: lightning::TrainerBuilder, batch: usize, context: &str) -> lightning::Result<Evaluated> {
    let r = reference();
    let (x, labels) = data(&r);
    let mut model = evaluated();
    let mut trainer = builder.max_epochs(1).enable_checkpointing(false).enable_progress_bar(false).build()?;
    let out = trainer.fit(&mut model, Data::loader(DataLoader::new(x, labels, batch)?))?;
    assert_eq!(model.logged.len(), r["values"].as_object().unwrap().len());
    for &(name, v) in &model.logged {
        assert_matches(name, v, &r, context);
        // logged as an epoch value: in the run's metrics under its own name
        assert_eq!(out.metrics[name], v, "{context}: {name} in callback_metrics");
    }
    assert_eq!(model.confusion, confusion_reference(&r), "{context}: confusion matrix");
    // log_metric reset each metric for the next epoch
    assert!(model.suite.accuracy.compute().is_err(), "{context}: reset after logging");
    Ok(model)
}

#[test]
fn log_metric_logs_the_epoch_value_and_resets() {
    let dir = tempfile::tempdir().unwrap();
    let builder = Trainer::builder().default_root_dir(dir.path()).enable_model_summary(false);
    fit_and_check(builder, BATCH, "trainer, one process").unwrap();
}

#[test]
fn log_metric_outside_an_epoch_end_hook_is_an_error() {
    let r = reference();
    let (x, labels) = data(&r);
    let mut model = Evaluated { log_in_step: true, ..evaluated() };
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .max_epochs(1)
        .enable_checkpointing(false)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .build()
        .unwrap();
    let err = trainer.fit(&mut model, Data::loader(DataLoader::new(x, labels, BATCH).unwrap())).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, lightning::Error::Hook { source, .. } if matches!(**source, lightning::Error::MetricLoggedPerBatch { .. }))
            || matches!(err, lightning::Error::MetricLoggedPerBatch { .. }),
        "{err:?}"
    );
    assert!(
        text.contains("log_metric(\"accuracy\", ..)")
            && text.contains("`training_step`")
            && text.contains("epoch-end hook"),
        "{text}"
    );
}

/// Under `mpirun`: 2 ranks, each fitting on its shard (6 of the 12 batches), each logging
/// every metric computed over all 48 samples.
#[cfg(feature = "mpi")]
mod ddp {
    use super::*;
    use std::process::Command;

    /// The test harness entry of a rank; does nothing unless `mpirun` started it.
    #[test]
    fn metrics_worker() {
        if let Ok(root) = std::env::var("LIGHTNING_METRICS_WORKER") {
            let builder = Trainer::builder()
                .default_root_dir(root)
                .enable_model_summary(false)
                .ddp(lightning::dist::Mpi::init().expect("MPI"));
            let model = fit_and_check(builder, BATCH, "rank").expect("the rank failed");
            println!("\nMETRICS-OK {:.17e}", model.local_sum);
        }
    }

    #[test]
    fn two_ranks_compute_the_values_over_all_samples() {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mpirun")
            .args(["-np", "2"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", "ddp::metrics_worker", "--nocapture", "--test-threads=1"])
            .env("LIGHTNING_METRICS_WORKER", dir.path())
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
            .env("RAYON_NUM_THREADS", "1")
            .output()
            .expect("mpirun (scripts/setup-mpi.sh installs it)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "2 ranks failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
        // both ranks checked every value; each saw only its half: their own sums add up
        let local: Vec<f64> =
            text.lines().filter_map(|l| l.split("METRICS-OK ").nth(1)).map(|v| v.trim().parse().unwrap()).collect();
        assert_eq!(local.len(), 2, "{text}");
        let want = reference()["values"]["sum"].as_f64().unwrap();
        assert!((local[0] + local[1] - want).abs() < 1e-9 && (local[0] - want).abs() > 1.0, "{local:?} vs {want}");
    }
}
