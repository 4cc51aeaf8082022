//! `trainer.log`: Lightning's defaults per hook, batch-size weighted epoch means, forked
//! `_step`/`_epoch` names, forbidden hooks, lazy read-back, and the CSV and TensorBoard files.

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use lightning::logging::tensorboard::{self, HParamsData, HParamsPluginData, Kind, What};
use lightning::prelude::*;
use prost::Message;
use serde::Serialize;

#[derive(Serialize, Clone)]
struct Hyper {
    lr: f64,
    name: String,
    widths: Vec<usize>,
}

/// `y = w x`; logs its loss per step (and per epoch when `fork`), a batch-size-sensitive
/// value in validation, and whatever `bad` asks for in a hook that may not log.
#[lightning_module]
struct Logs {
    vars: VarMap,
    w: Var,
    #[hparams]
    hyper: Hyper,
    fork: bool,
    bad: Option<&'static str>,
}

#[lightning_module]
impl Logs {
    fn training_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        let loss = batch.0.matmul(self.w.as_tensor())?.sub(&batch.1)?.sqr()?.mean_all()?;
        if self.fork {
            trainer.log_with("loss", &loss, Log::new().on_epoch(true).prog_bar(true))?;
        } else {
            trainer.log("loss", &loss)?;
        }
        Ok(loss)
    }
    fn validation_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<()> {
        // the batch's first label: the epoch value must be the mean weighted by batch size
        let first = batch.1.flatten_all()?.get(0)?;
        trainer.log("val_first", first)?;
        Ok(())
    }
    fn on_fit_start(&mut self, trainer: &mut TrainerState) -> lightning::Result<()> {
        if self.bad == Some("on_fit_start") {
            trainer.log("x", 1.0)?;
        }
        Ok(())
    }
    fn on_train_epoch_end(&mut self, trainer: &mut TrainerState) -> lightning::Result<()> {
        if self.bad == Some("on_step_in_epoch_end") {
            trainer.log_with("x", 1.0, Log::new().on_step(true))?;
        }
        trainer.log("epoch_marker", trainer.current_epoch() as f64)?;
        Ok(())
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(vec![("w".to_string(), self.w.clone())], 0.01)
    }
}

fn model(fork: bool, bad: Option<&'static str>) -> Logs {
    let w = Var::zeros((1, 1), DType::F32, &Device::Cpu).unwrap();
    Logs {
        vars: lightning::var_map([("w", &w)]),
        w,
        hyper: Hyper { lr: 0.01, name: "w x".into(), widths: vec![1, 2] },
        fork,
        bad,
    }
}

/// 20 training samples in batches of 2 (10 steps an epoch); 6 validation samples in batches
/// of 4 and 2 whose labels are 0..6.
fn data() -> (DataLoader, DataLoader) {
    let x = Tensor::arange(0f32, 20., &Device::Cpu).unwrap().reshape((20, 1)).unwrap();
    let y = (&x * 2.0).unwrap();
    let vx = Tensor::ones((6, 1), DType::F32, &Device::Cpu).unwrap();
    let vy = Tensor::arange(0f32, 6., &Device::Cpu).unwrap().reshape((6, 1)).unwrap();
    (DataLoader::new(x, y, 2).unwrap(), DataLoader::new(vx, vy, 4).unwrap())
}

fn trainer(root: &Path, every: usize) -> Trainer<()> {
    Trainer::builder()
        .max_epochs(2)
        .num_sanity_val_steps(0)
        .log_every_n_steps(every)
        .default_root_dir(root)
        .enable_checkpointing(false)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .build()
        .unwrap()
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines().map(|l| l.split(',').map(str::to_owned).collect::<Vec<_>>());
    let header = lines.next().unwrap();
    (header, lines.collect())
}

#[test]
fn epoch_value_is_the_mean_weighted_by_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    let (train, val) = data();
    let mut m = model(false, None);
    let out = trainer(dir.path(), 5).fit(&mut m, Data::loader(train).val(val)).unwrap();
    // batches [0,1,2,3] and [4,5]: first labels 0 and 4, weights 4 and 2 → 8/6 (unweighted: 2)
    assert!((out.metrics["val_first"] - 8.0 / 6.0).abs() < 1e-9, "{:?}", out.metrics);
    assert!(out.metrics.contains_key("loss"));
    assert_eq!(out.metrics["epoch_marker"], 1.0);
    assert!(!out.metrics.contains_key("loss_step"), "not forked: {:?}", out.metrics);
}

#[test]
fn forked_names_and_csv_layout() {
    let dir = tempfile::tempdir().unwrap();
    for version in 0..2 {
        let (train, val) = data();
        let mut m = model(true, None);
        let out = trainer(dir.path(), 5).fit(&mut m, Data::loader(train).val(val)).unwrap();
        for k in ["loss", "loss_step", "loss_epoch", "val_first", "epoch_marker"] {
            assert!(out.metrics.contains_key(k), "{k} missing from {:?}", out.metrics);
        }
        // after the epoch, `loss` is the epoch value
        assert_eq!(out.metrics["loss"], out.metrics["loss_epoch"]);

        let vdir = dir.path().join("lightning_logs").join(format!("version_{version}"));
        let (header, rows) = read_csv(&vdir.join("metrics.csv"));
        assert_eq!(header, ["epoch", "epoch_marker", "loss_epoch", "loss_step", "step", "val_first"]);
        // per epoch: steps 4 and 9 (every 5 steps), then validation, then the training epoch row
        let col = |name: &str| header.iter().position(|h| h == name).unwrap();
        let steps: Vec<&str> = rows.iter().map(|r| r[col("step")].as_str()).collect();
        assert_eq!(steps, ["4", "9", "9", "9", "14", "19", "19", "19"]);
        let filled = |r: &Vec<String>| -> Vec<String> {
            header.iter().zip(r).filter(|(_, v)| !v.is_empty()).map(|(h, _)| h.clone()).collect()
        };
        assert_eq!(filled(&rows[0]), ["epoch", "loss_step", "step"]);
        assert_eq!(filled(&rows[2]), ["epoch", "step", "val_first"]);
        assert_eq!(filled(&rows[3]), ["epoch", "epoch_marker", "loss_epoch", "step"]);
        assert_eq!(rows[7][col("epoch")], "1");
        let val: f64 = rows[2][col("val_first")].parse().unwrap();
        assert!((val - 8.0 / 6.0).abs() < 1e-9);

        let yaml = std::fs::read_to_string(vdir.join("hparams.yaml")).unwrap();
        assert_eq!(yaml, "lr: 0.01\nname: \"w x\"\nwidths:\n- 1\n- 2\n");
    }
}

#[test]
fn logging_where_lightning_forbids_it_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (train, val) = data();
    let err =
        trainer(dir.path(), 5).fit(&mut model(false, Some("on_fit_start")), Data::loader(train).val(val)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("you can't log `x` inside `on_fit_start`"), "{msg}");

    let (train, val) = data();
    let err = trainer(dir.path(), 5)
        .fit(&mut model(false, Some("on_step_in_epoch_end")), Data::loader(train).val(val))
        .unwrap_err();
    assert!(err.to_string().contains("on_step=true"), "{err}");
}

/// Counts device-to-host reads: a tensor logged every step is read only when a logger writes.
#[test]
fn step_values_are_read_back_only_when_a_logger_writes() {
    let reads = |every: usize| {
        #[lightning::callback]
        impl Reads {
            fn on_fit_end(&mut self, trainer: &TrainerState) {
                self.0 = trainer.metrics().syncs();
            }
        }
        struct Reads(usize);
        let dir = tempfile::tempdir().unwrap();
        let (train, _) = data();
        let mut t = Trainer::builder()
            .max_epochs(2)
            .log_every_n_steps(every)
            .default_root_dir(dir.path())
            .enable_checkpointing(false)
            .enable_progress_bar(false)
            .enable_model_summary(false)
            .callbacks((Reads(0),))
            .build()
            .unwrap();
        t.fit(&mut model(false, None), Data::loader(train)).unwrap();
        t.callbacks().0 .0
    };
    // 20 steps logging `loss`: every 10 steps → 2 reads; every step → 20
    assert_eq!(reads(10), 2);
    assert_eq!(reads(1), 20);
}

#[test]
fn tensorboard_files_read_back_with_valid_crcs() {
    let dir = tempfile::tempdir().unwrap();
    let (train, val) = data();
    let mut m = model(true, None);
    let mut t = Trainer::builder()
        .max_epochs(2)
        .num_sanity_val_steps(0)
        .log_every_n_steps(5)
        .default_root_dir(dir.path())
        .logger(TensorBoardLogger::new(dir.path()))
        .logger(CsvLogger::new(dir.path().join("csv")))
        .enable_checkpointing(false)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .build()
        .unwrap();
    t.fit(&mut m, Data::loader(train).val(val)).unwrap();
    let vdir = dir.path().join("lightning_logs/version_0");
    let file = std::fs::read_dir(&vdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("events.out.tfevents."))
        .expect("an event file");
    let events = tensorboard::read_events(&file).unwrap();
    assert_eq!(events[0].what, Some(What::FileVersion("brain.Event:2".into())));

    // every scalar equals the CSV logger's value at the same step
    let (header, rows) = read_csv(&dir.path().join("csv/lightning_logs/version_0/metrics.csv"));
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let mut scalars = 0;
    let mut plugin = Vec::new();
    for e in &events[1..] {
        let Some(What::Summary(s)) = &e.what else { panic!("not a summary: {e:?}") };
        for v in &s.value {
            if let Some(md) = &v.metadata {
                let pd = md.plugin_data.as_ref().unwrap();
                assert_eq!(pd.plugin_name, "hparams");
                plugin.push(HParamsPluginData::decode(pd.content.as_slice()).unwrap());
                continue;
            }
            let x = v.simple_value.unwrap();
            if v.tag == "hp_metric" {
                assert_eq!(x, -1.0);
                continue;
            }
            let row = rows
                .iter()
                .find(|r| r[col("step")] == e.step.to_string() && !r[col(&v.tag)].is_empty())
                .unwrap_or_else(|| panic!("no CSV row for {} at step {}", v.tag, e.step));
            let expected: f64 = row[col(&v.tag)].parse().unwrap();
            assert_eq!(x, expected as f32, "{} at step {}", v.tag, e.step);
            scalars += 1;
        }
    }
    // 4 step rows ×(loss_step, epoch) + 2 val rows ×2 + 2 train-epoch rows ×3
    assert_eq!(scalars, 4 * 2 + 2 * 2 + 2 * 3);
    let Some(HParamsData::SessionStartInfo(ssi)) = &plugin[1].data else { panic!("{:?}", plugin[1]) };
    assert_eq!(ssi.hparams["lr"].kind, Some(Kind::Number(0.01)));
    assert_eq!(ssi.hparams["name"].kind, Some(Kind::String("w x".into())));
    assert!(matches!(plugin[0].data, Some(HParamsData::Experiment(_))));
    assert!(matches!(plugin.last().unwrap().data, Some(HParamsData::SessionEndInfo(ref s)) if s.status == 1));

    // a flipped byte is caught by the CRC
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n - 6] ^= 0x40;
    let bad = dir.path().join("bad.tfevents");
    std::fs::write(&bad, bytes).unwrap();
    let err = tensorboard::read_events(&bad).unwrap_err().to_string();
    assert!(err.contains("CRC mismatch"), "{err}");
}

/// Logs from an `optimizer_step` override after its closure ran `training_step` and the
/// backward hooks: the hook running then is `optimizer_step` again, not the last nested one.
#[lightning_module]
struct Nested {
    vars: VarMap,
    w: Var,
    mean: lightning::metrics::MeanMetric,
}

#[lightning_module]
impl Nested {
    fn training_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        let loss = batch.0.matmul(self.w.as_tensor())?.sub(&batch.1)?.sqr()?.mean_all()?;
        trainer.log("loss", &loss)?;
        self.mean.update(&loss)?;
        Ok(loss)
    }
    fn on_after_backward(&mut self, trainer: &mut TrainerState) -> lightning::Result<()> {
        trainer.log("after_backward", 1.0)
    }
    fn optimizer_step(
        &mut self,
        optimizer: &mut Sgd,
        optimizer_closure: &mut impl OptimizerClosure<Self>,
    ) -> lightning::Result<()> {
        optimizer_closure.step(self, optimizer)?;
        let mut mean = self.mean.clone();
        optimizer_closure.trainer().log_metric("mean_loss", &mut mean).map(|_| ())
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(vec![("w".to_string(), self.w.clone())], 0.01)
    }
}

#[test]
fn a_hook_that_returns_puts_the_outer_hooks_name_back() {
    let dir = tempfile::tempdir().unwrap();
    let w = Var::zeros((1, 1), DType::F32, &Device::Cpu).unwrap();
    let mut m = Nested { vars: lightning::var_map([("w", &w)]), w, mean: Default::default() };
    let (train, _) = data();
    let err = trainer(dir.path(), 5).fit(&mut m, Data::loader(train)).unwrap_err();
    assert!(err.to_string().contains("`log_metric(\"mean_loss\", ..)` in `optimizer_step`"), "{err}");
}
