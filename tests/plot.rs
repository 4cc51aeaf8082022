//! `metrics.svg` and `metrics.png`: drawn by the CSV logger at epoch ends, and by
//! `plot_metrics` from a CSV written by Python Lightning's `CSVLogger`
//! (tests/fixtures/lightning-csv); the best checkpoint of the monitoring `ModelCheckpoint`
//! marked with `save_top_k > 1` and with several checkpoint states.

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use lightning::prelude::*;

/// The SVG's `<text>` elements: titles, axis labels, tick labels, legend entries.
fn texts(svg: &str) -> Vec<&str> {
    svg.split("<text").skip(1).filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim())).collect()
}

/// A PNG's size and the share of its pixels that are not near white.
fn ink(png: &Path) -> (u32, u32, f64) {
    let bytes = std::fs::read(png).unwrap();
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let n = info.color_type.samples();
    assert!(n >= 3 && info.bit_depth == png::BitDepth::Eight, "{info:?}");
    let px = &buf[..info.buffer_size()];
    let drawn = px.chunks(n).filter(|p| p[..3].iter().any(|&c| c < 200)).count();
    (info.width, info.height, drawn as f64 / (px.len() / n) as f64)
}

fn panels_and_marker(svg: &str, best: Option<&str>) {
    let texts = texts(svg);
    for text in ["loss", "step", "value"].into_iter().chain(best) {
        assert!(texts.contains(&text), "no text `{text}` in {texts:?}");
    }
    assert!(svg.matches("<polyline").count() >= 3, "too few curves");
}

#[test]
fn python_lightnings_csv_is_drawn_with_every_panel() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lightning-csv/metrics.csv");
    std::fs::copy(fixture, dir.path().join("metrics.csv")).unwrap();
    std::fs::create_dir_all(dir.path().join("checkpoints/epoch=2-step=24.ckpt")).unwrap();
    let plot = lightning::logging::plot_metrics(dir.path()).unwrap();
    assert_eq!(plot.png, dir.path().join("metrics.png"));
    let svg = std::fs::read_to_string(plot.svg).unwrap();
    // a checkpoint of Python Lightning's cannot be read: the one epoch among the names is marked
    panels_and_marker(&svg, Some("best checkpoint (epoch 2)"));
    // the PNG: three panels (loss, accuracy-like, learning rate) of 900 x 320 pixels, with curves and text on them (about:blank: 0%)
    let (w, h, share) = ink(&plot.png);
    assert_eq!((w, h), (900, 3 * 320));
    assert!(share > 0.01, "{:.2}% of the pixels drawn", 100.0 * share);
    let texts = texts(&svg);
    for text in [
        "accuracy-like metrics",
        "learning rate (log scale)",
        "learning rate",
        "train_loss_step (faint: per step; bold: epoch mean)",
        "train_loss_epoch",
        "val_acc",
        "lr-SGD",
    ] {
        assert!(texts.contains(&text), "no text `{text}` in {texts:?}");
    }
    // tick labels without float noise (the log axis lands on 0.30000000000000004)
    let noisy: Vec<_> = texts.iter().filter(|t| t.parse::<f64>().is_ok() && t.len() > 8).collect();
    assert!(noisy.is_empty(), "{noisy:?}");
}

#[test]
fn a_csv_without_steps_or_values_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("metrics.csv"), "epoch,loss\n0,1.0\n").unwrap();
    let err = lightning::logging::plot_metrics(dir.path()).unwrap_err().to_string();
    assert!(err.contains("no `step` column"), "{err}");
    std::fs::write(dir.path().join("metrics.csv"), "epoch,step,loss\n0,1,nan\n").unwrap();
    let err = lightning::logging::plot_metrics(dir.path()).unwrap_err().to_string();
    assert!(err.contains("no metric values"), "{err}");
    assert!(lightning::logging::plot_metrics(dir.path().join("missing")).is_err());
}

/// `y = w x`, its loss logged per step and per epoch.
#[lightning_module]
struct Line {
    vars: VarMap,
    w: Var,
}

#[lightning_module]
impl Line {
    fn training_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        let loss = batch.0.matmul(self.w.as_tensor())?.sub(&batch.1)?.sqr()?.mean_all()?;
        trainer.log_with("train_loss", &loss, Log::new().on_epoch(true))?;
        Ok(loss)
    }
    fn validation_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<()> {
        let loss = batch.0.matmul(self.w.as_tensor())?.sub(&batch.1)?.sqr()?.mean_all()?;
        trainer.log("val_loss", loss)?;
        Ok(())
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(vec![("w".to_string(), self.w.clone())], 0.05)
    }
}

#[test]
fn the_csv_logger_draws_metrics_svg_at_every_epoch_end() {
    let dir = tempfile::tempdir().unwrap();
    let x =
        Tensor::arange(0f32, 32.0, &Device::Cpu).unwrap().reshape((32, 1)).unwrap().affine(1.0 / 32.0, 0.0).unwrap();
    let y = x.affine(3.0, 0.0).unwrap();
    let loader = || DataLoader::new(x.clone(), y.clone(), 4).unwrap();
    let w = Var::zeros((1, 1), DType::F32, &Device::Cpu).unwrap();
    let mut m = Line { vars: lightning::var_map([("w", &w)]), w };
    let mut t = Trainer::builder()
        .max_epochs(3)
        .log_every_n_steps(2)
        .default_root_dir(dir.path())
        .checkpoint(ModelCheckpoint::new().monitor("val_loss"))
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .build()
        .unwrap();
    t.fit(&mut m, Data::loader(loader()).val(loader())).unwrap();
    let svg = std::fs::read_to_string(dir.path().join("lightning_logs/version_0/metrics.svg")).unwrap();
    // the loss falls every epoch, so the best checkpoint is the last epoch's
    panels_and_marker(&svg, Some("best checkpoint by val_loss (epoch 2)"));
    let (w, h, share) = ink(&dir.path().join("lightning_logs/version_0/metrics.png"));
    assert_eq!((w, h), (900, 320));
    assert!(share > 0.01, "{:.2}% of the pixels drawn", 100.0 * share);
    let texts = texts(&svg);
    assert!(texts.contains(&"train_loss_step (faint: per step; bold: epoch mean)"), "{texts:?}");
    assert!(texts.contains(&"val_loss"), "{texts:?}");
}

/// `y = w x`; validation logs `score`, whose best (highest) is epoch 1's.
#[lightning_module]
struct Peaked {
    vars: VarMap,
    w: Var,
}

#[lightning_module]
impl Peaked {
    fn training_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        let loss = batch.0.matmul(self.w.as_tensor())?.sub(&batch.1)?.sqr()?.mean_all()?;
        trainer.log("train_loss", &loss)?;
        Ok(loss)
    }
    fn validation_step(&mut self, trainer: &mut TrainerState) -> lightning::Result<()> {
        let score = -(trainer.current_epoch() as f64 - 1.0).powi(2);
        trainer.log("score", score)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(vec![("w".to_string(), self.w.clone())], 0.05)
    }
}

#[test]
fn with_save_top_k_2_the_best_is_marked_not_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let x = Tensor::ones((8, 1), DType::F32, &Device::Cpu).unwrap();
    let loader = || DataLoader::new(x.clone(), x.clone(), 4).unwrap();
    let w = Var::zeros((1, 1), DType::F32, &Device::Cpu).unwrap();
    let mut m = Peaked { vars: lightning::var_map([("w", &w)]), w };
    // scores by epoch: -1, 0, -1, -4: top 2 keeps epochs 0 and 1; last.ckpt is epoch 3's
    let ck = ModelCheckpoint::new().monitor("score").mode(Mode::Max).save_top_k(2).save_last(true);
    let mut t = Trainer::builder()
        .max_epochs(4)
        .log_every_n_steps(1)
        .num_sanity_val_steps(0)
        .default_root_dir(dir.path())
        .checkpoint(ck)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .build()
        .unwrap();
    t.fit(&mut m, Data::loader(loader()).val(loader())).unwrap();
    let run = dir.path().join("lightning_logs/version_0");
    let kept: Vec<_> = std::fs::read_dir(run.join("checkpoints")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(kept.len(), 3, "{kept:?}");
    let svg = std::fs::read_to_string(run.join("metrics.svg")).unwrap();
    let texts = texts(&svg);
    let marks: Vec<_> = texts.iter().filter(|t| t.contains("checkpoint")).collect();
    // one legend entry per panel (loss, other metrics), for the one monitoring callback
    assert_eq!(marks, [&"best checkpoint by score (epoch 1)"; 2], "{texts:?}");
}

/// A checkpoint directory as `ModelCheckpoint` leaves it: `trainer_state.json` with the
/// callbacks' states.
fn checkpoint(path: &Path, epoch: usize, step: usize, callbacks: lightning::serde_json::Value) {
    std::fs::create_dir_all(path).unwrap();
    let state =
        lightning::serde_json::json!({ "format": 3, "epoch": epoch, "global_step": step, "callbacks": callbacks });
    std::fs::write(path.join("trainer_state.json"), state.to_string()).unwrap();
}

#[test]
fn every_monitoring_checkpoint_state_is_marked_at_its_best() {
    // two checkpoint callbacks with monitors (Lightning keys them by monitor), one without;
    // the val_acc one saves elsewhere: its best is found through its `dirpath`
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let rows: String =
        (0..4).map(|e| format!("{e},{},{},{}\n", 4 * e + 3, 1.0 / (e as f64 + 1.0), e as f64 / 4.0)).collect();
    std::fs::write(dir.path().join("metrics.csv"), format!("epoch,step,val_loss,val_acc\n{rows}")).unwrap();
    let ckpts = dir.path().join("checkpoints");
    let state = |monitor: Option<&str>, dirpath: &Path, best: &str| lightning::serde_json::json!({ "monitor": monitor, "dirpath": dirpath, "best_model_path": best, "best_k_models": {} });
    let states = lightning::serde_json::json!({
        "ModelCheckpoint{'monitor': 'val_loss'}": state(Some("val_loss"), &ckpts, "epoch=1-step=8.ckpt"),
        "ModelCheckpoint{'monitor': 'val_acc'}": state(Some("val_acc"), elsewhere.path(), "epoch=2-step=12.ckpt"),
        "ModelCheckpoint{'monitor': None}": state(None, &ckpts, "last.ckpt"),
    });
    checkpoint(&ckpts.join("epoch=1-step=8.ckpt"), 1, 8, lightning::serde_json::json!({}));
    checkpoint(&ckpts.join("last.ckpt"), 3, 16, states);
    checkpoint(&elsewhere.path().join("epoch=2-step=12.ckpt"), 2, 12, lightning::serde_json::json!({}));
    let svg = std::fs::read_to_string(lightning::logging::plot_metrics(dir.path()).unwrap().svg).unwrap();
    let texts = texts(&svg);
    let mut marks: Vec<_> = texts.iter().filter(|t| t.contains("checkpoint")).collect();
    marks.sort();
    marks.dedup();
    assert_eq!(marks, [&"best checkpoint by val_acc (epoch 2)", &"best checkpoint by val_loss (epoch 1)"], "{texts:?}");
}
