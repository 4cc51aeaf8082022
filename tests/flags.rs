//! Trainer flags from the batteries issue: `detect_anomaly`, `fast_dev_run`,
//! `overfit_batches`, `max_time`.

use std::time::Duration;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use lightning::prelude::*;
use lightning::{Error, TrainerBuilder};

/// Records each training batch's first input; its loss turns NaN at step `nan_at`.
#[lightning_module]
struct Probe {
    vars: VarMap,
    w: Var,
    nan_at: Option<usize>,
    seen: Vec<f32>,
}

#[lightning_module]
impl Probe {
    fn training_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        self.seen.push(batch.0.flatten_all()?.get(0)?.to_scalar::<f32>()?);
        let loss = batch.0.matmul(self.w.as_tensor())?.sub(&batch.1)?.sqr()?.mean_all()?;
        Ok(if self.nan_at == Some(trainer.global_step()) { (loss * f64::NAN)? } else { loss })
    }
    fn validation_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<()> {
        trainer.log("val", batch.0.sum_all()?)
    }
    fn test_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<()> {
        trainer.log("test_n", batch.0.dim(0)? as f64)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(vec![("w".to_string(), self.w.clone())], 0.001)
    }
}

fn probe(nan_at: Option<usize>) -> Probe {
    let w = Var::zeros((1, 1), DType::F32, &Device::Cpu).unwrap();
    Probe { vars: lightning::var_map([("w", &w)]), w, nan_at, seen: Vec::new() }
}

/// 10 batches of 2, inputs 0..20, shuffled per epoch.
fn data() -> DataLoader {
    let x = Tensor::arange(0f32, 20., &Device::Cpu).unwrap().reshape((20, 1)).unwrap();
    DataLoader::new(x.clone(), x, 2).unwrap().shuffle(7)
}

fn builder(dir: &tempfile::TempDir) -> TrainerBuilder<()> {
    Trainer::builder().default_root_dir(dir.path()).enable_progress_bar(false).enable_model_summary(false)
}

#[test]
fn detect_anomaly_names_the_epoch_and_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = builder(&dir).max_epochs(2).detect_anomaly(true).build().unwrap();
    let e = t.fit(&mut probe(Some(13)), Data::loader(data())).unwrap_err();
    assert!(matches!(e, Error::NonFiniteLoss { epoch: 1, step: 13, batch_idx: 3, .. }), "{e:?}");
    assert!(e.to_string().contains("epoch 1, step 13"), "{e}");
    // without the flag the NaN trains on
    let mut t = builder(&dir).max_epochs(2).build().unwrap();
    assert_eq!(t.fit(&mut probe(Some(13)), Data::loader(data())).unwrap().global_step, 20);
}

#[test]
fn fast_dev_run_is_a_smoke_test_without_logs_or_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = builder(&dir).max_epochs(5).fast_dev_run(2).build().unwrap();
    let mut m = probe(None);
    let out = t.fit(&mut m, Data::loader(data()).val(data())).unwrap();
    assert_eq!((out.global_step, out.current_epoch, m.seen.len()), (2, 1, 2));
    assert!(out.metrics.contains_key("val"));
    let test = t.test(&mut m, Data::loader(data())).unwrap();
    assert_eq!(test["test_n"], 2.0);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no logs, no checkpoints");
}

#[test]
fn overfit_batches_repeats_the_same_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = builder(&dir).max_epochs(3).overfit_batches(3).enable_checkpointing(false).build().unwrap();
    let mut m = probe(None);
    t.fit(&mut m, Data::loader(data())).unwrap();
    assert_eq!(m.seen.len(), 9);
    assert_eq!(m.seen[0..3], m.seen[3..6]);
    assert_eq!(m.seen[0..3], m.seen[6..9]);
    // a shuffled loader really does change order between epochs otherwise
    let mut t = builder(&dir).max_epochs(2).limit_train_batches(3).enable_checkpointing(false).build().unwrap();
    let mut m = probe(None);
    t.fit(&mut m, Data::loader(data())).unwrap();
    assert_ne!(m.seen[0..3], m.seen[3..6]);
}

#[test]
fn max_time_stops_training_normally() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = builder(&dir).max_epochs(100).max_time(Duration::ZERO).build().unwrap();
    let out = t.fit(&mut probe(None), Data::loader(data())).unwrap();
    assert_eq!(out.global_step, 1);
    assert!(out.last_checkpoint.is_some(), "the end-of-fit checkpoint is written");
}
