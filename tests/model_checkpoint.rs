//! ModelCheckpoint: top-k by a monitor with files removed as they fall out, filename
//! templates, `last.ckpt`, step-based saving, weights-only checkpoints, and
//! `Trainer::save_checkpoint`.

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use lightning::callbacks::Mode;
use lightning::prelude::*;

/// Logs `scores[epoch]` as `score` in validation.
#[lightning_module]
struct Scored {
    vars: VarMap,
    w: Var,
    scores: Vec<f64>,
}

#[lightning_module]
impl Scored {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        batch.0.matmul(self.w.as_tensor())?.sum_all()
    }
    fn validation_step(&mut self, trainer: &mut TrainerState) -> lightning::Result<()> {
        trainer.log("score", self.scores[trainer.current_epoch()])
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(vec![("w".to_string(), self.w.clone())], 0.01)
    }
}

fn model(scores: &[f64]) -> Scored {
    let w = Var::zeros((1, 1), DType::F32, &Device::Cpu).unwrap();
    Scored { vars: lightning::var_map([("w", &w)]), w, scores: scores.to_vec() }
}

fn data() -> DataLoader {
    // 4 batches an epoch
    DataLoader::new(
        Tensor::ones((8, 1), DType::F32, &Device::Cpu).unwrap(),
        Tensor::zeros(8, DType::F32, &Device::Cpu).unwrap(),
        2,
    )
    .unwrap()
}

fn fit(
    dir: &Path,
    epochs: usize,
    scores: &[f64],
    ck: ModelCheckpoint,
) -> (Trainer<()>, lightning::Result<lightning::FitOutcome>) {
    let mut t = Trainer::builder()
        .max_epochs(epochs)
        .num_sanity_val_steps(0)
        .default_root_dir(dir)
        .checkpoint(ck)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .enable_logger(false)
        .build()
        .unwrap();
    let out = t.fit(&mut model(scores), Data::loader(data()).val(data()));
    (t, out)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn top_k_keeps_the_best_and_deletes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let ck = ModelCheckpoint::new()
        .dirpath(dir.path().join("ck"))
        .monitor("score")
        .mode(Mode::Min)
        .save_top_k(2)
        .save_last(true)
        .filename("{epoch}-{score:.2f}");
    let (t, out) = fit(dir.path(), 5, &[0.5, 0.3, 0.4, 0.1, 0.2], ck);
    out.unwrap();
    assert_eq!(listing(&dir.path().join("ck")), ["epoch=3-score=0.10.ckpt", "epoch=4-score=0.20.ckpt", "last.ckpt"]);
    let c = t.checkpoint_callback().unwrap();
    assert!(c.best_model_path().unwrap().ends_with("epoch=3-score=0.10.ckpt"));
    assert_eq!(c.best_model_score(), Some(0.1));
    let last = Checkpoint::load(&dir.path().join("ck/last.ckpt")).unwrap();
    assert_eq!(last.epoch, 4);
    // the callback's state travels in the checkpoint
    assert_eq!(last.callbacks["ModelCheckpoint"]["best_model_score"], 0.1);

    // mode max keeps the other end
    let dir = tempfile::tempdir().unwrap();
    let ck = ModelCheckpoint::new().dirpath(dir.path()).monitor("score").mode(Mode::Max).save_top_k(1);
    let (t, out) = fit(dir.path(), 5, &[0.5, 0.3, 0.9, 0.1, f64::NAN], ck);
    out.unwrap();
    assert_eq!(listing(dir.path()), ["epoch=2-step=12.ckpt"]);
    assert_eq!(t.checkpoint_callback().unwrap().best_model_score(), Some(0.9));
}

#[test]
fn an_unlogged_monitor_is_an_error_naming_what_was_logged() {
    let dir = tempfile::tempdir().unwrap();
    let (_, out) = fit(dir.path(), 1, &[0.5], ModelCheckpoint::new().monitor("val_loss"));
    let e = out.unwrap_err().to_string();
    assert!(e.contains("`val_loss`, which was not logged") && e.contains("score"), "{e}");
}

#[test]
fn every_n_train_steps_and_keep_all() {
    let dir = tempfile::tempdir().unwrap();
    let ck = ModelCheckpoint::new().dirpath(dir.path()).every_n_train_steps(3).save_top_k(-1);
    let (_, out) = fit(dir.path(), 2, &[0.0, 0.0], ck);
    out.unwrap();
    assert_eq!(listing(dir.path()), ["epoch=0-step=3.ckpt", "epoch=1-step=6.ckpt"]);
    // a mid-epoch checkpoint resumes at the next batch
    let ck = Checkpoint::load(&dir.path().join("epoch=0-step=3.ckpt")).unwrap();
    assert_eq!((ck.batches_done, ck.epoch_complete), (3, false));
}

#[test]
fn weights_only_checkpoints_load_for_inference_but_do_not_resume() {
    let dir = tempfile::tempdir().unwrap();
    let ck = ModelCheckpoint::new().dirpath(dir.path()).save_weights_only(true);
    let (t, out) = fit(dir.path(), 1, &[0.0], ck);
    let path = out.unwrap().last_checkpoint.unwrap();
    assert_eq!(listing(&path), ["model.safetensors", "trainer_state.json"]);
    let mut m = model(&[0.0]);
    lightning::load_from_checkpoint(&mut m, &path).unwrap();

    let mut t2 =
        Trainer::builder().max_epochs(2).default_root_dir(dir.path()).enable_progress_bar(false).build().unwrap();
    t2.resume_from(&path);
    let e = t2.fit(&mut model(&[0.0, 0.0]), Data::loader(data())).unwrap_err().to_string();
    assert!(e.contains("weights-only") && e.contains("load_from_checkpoint"), "{e}");

    // Trainer::save_checkpoint after fit: weights and counters
    let saved = dir.path().join("manual.ckpt");
    t.save_checkpoint(&m, &saved).unwrap();
    let back = Checkpoint::load(&saved).unwrap();
    assert_eq!((back.global_step, back.weights_only), (4, true));
    lightning::load_from_checkpoint(&mut model(&[0.0]), &saved).unwrap();
}

/// Without a `dirpath`, checkpoints go beside the first logger's files
/// (`lightning_logs/version_N/checkpoints`), a new version per run, as in Lightning; without
/// loggers, to `<default_root_dir>/checkpoints`.
#[test]
fn default_directory_follows_the_logger() {
    let dir = tempfile::tempdir().unwrap();
    let run = |logger: bool| {
        let mut t = Trainer::builder()
            .max_epochs(1)
            .num_sanity_val_steps(0)
            .default_root_dir(dir.path())
            .enable_progress_bar(false)
            .enable_model_summary(false)
            .enable_logger(logger)
            .build()
            .unwrap();
        let out = t.fit(&mut model(&[1.0]), Data::loader(data()).val(data())).unwrap();
        out.last_checkpoint.unwrap()
    };
    for v in 0..2 {
        let ckpt = run(true);
        let version = dir.path().join(format!("lightning_logs/version_{v}"));
        assert_eq!(ckpt, version.join("checkpoints/epoch=0-step=4.ckpt"));
        assert!(version.join("metrics.csv").is_file(), "the logs are in the same version directory");
    }
    assert_eq!(run(false), dir.path().join("checkpoints/epoch=0-step=4.ckpt"));
}
