//! `ThroughputMonitor` and `DeviceStatsMonitor`: their keys reach `metrics.csv` through the
//! trainer, with plausible values.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder, VarMap};
use lightning::prelude::*;

#[lightning_module]
struct Regression {
    vars: VarMap,
    layer: Linear,
    /// Each validation batch sleeps this long.
    val_sleep: Duration,
}

#[lightning_module]
impl Regression {
    fn training_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        let loss = self.layer.forward(&batch.0)?.sub(&batch.1)?.sqr()?.mean_all()?;
        trainer.log("train_loss", &loss)?;
        Ok(loss)
    }
    fn validation_step(&mut self) -> lightning::Result<()> {
        std::thread::sleep(self.val_sleep);
        Ok(())
    }
    fn configure_optimizers(&mut self) -> lightning::Result<AdamW> {
        AdamW::with_lr(&self.vars, 1e-2)
    }
}

fn model(val_sleep: Duration) -> Regression {
    let vars = VarMap::new();
    let layer = candle_nn::linear(4, 1, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu)).unwrap();
    Regression { vars, layer, val_sleep }
}

/// 64 rows in batches of 8: 8 batches an epoch.
fn data() -> DataLoader {
    let x = Tensor::randn(0f32, 1., (64, 4), &Device::Cpu).unwrap();
    let y = x.sum_keepdim(1).unwrap();
    DataLoader::new(x, y, 8).unwrap()
}

/// `metrics.csv` as column → the non-empty values, in row order.
fn columns(run: &Path) -> BTreeMap<String, Vec<f64>> {
    let csv = std::fs::read_to_string(run.join("lightning_logs/version_0/metrics.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    let mut out: BTreeMap<String, Vec<f64>> = header.iter().map(|h| (h.clone(), Vec::new())).collect();
    for line in lines {
        for (h, v) in header.iter().zip(line.split(',')) {
            if !v.is_empty() {
                out.get_mut(h).unwrap().push(v.parse().unwrap());
            }
        }
    }
    out
}

fn builder(dir: &Path) -> lightning::TrainerBuilder<()> {
    Trainer::builder()
        .max_epochs(2)
        .log_every_n_steps(1)
        .default_root_dir(dir)
        .enable_checkpointing(false)
        .enable_progress_bar(false)
}

#[test]
fn throughput_monitor_logs_lightning_s_keys_with_consistent_rates() {
    let dir = tempfile::tempdir().unwrap();
    let monitor = ThroughputMonitor::new(|b: &(Tensor, Tensor)| b.0.dims()[0]).window_size(3).flops_per_sample(1000.0);
    let mut t = builder(dir.path()).callbacks((monitor,)).build().unwrap();
    t.fit(&mut model(Duration::ZERO), Data::loader(data())).unwrap();
    let c = columns(dir.path());
    // one row per step: 16 steps; the rates from the window's third batch on
    assert_eq!(c["train/batches"], (1..=16).map(f64::from).collect::<Vec<_>>());
    assert_eq!(c["train/samples"], (1..=16).map(|b| f64::from(b * 8)).collect::<Vec<_>>());
    let (samples, batches) = (&c["train/device/samples_per_sec"], &c["train/device/batches_per_sec"]);
    let flops = &c["train/device/flops_per_sec"];
    assert_eq!((samples.len(), batches.len(), flops.len()), (14, 14, 14));
    for ((s, b), f) in samples.iter().zip(batches).zip(flops) {
        assert!(*b > 0.0 && b.is_finite(), "batches/s {b}");
        // 8 samples a batch, 1000 FLOPs a sample
        assert!((s / b - 8.0).abs() < 1e-6, "samples/s {s} is 8 × batches/s {b}");
        assert!((f / s - 1000.0).abs() < 1e-3, "FLOP/s {f} is 1000 × samples/s {s}");
    }
    assert!(c["train/time"].windows(2).all(|w| w[1] > w[0]), "{:?}", c["train/time"]);
    // one device: Lightning logs no global keys, and no MFU without the peak
    for absent in ["train/samples_per_sec", "train/flops_per_sec", "train/device/mfu"] {
        assert!(!c.contains_key(absent), "{absent}");
    }
}

/// Validation inside `fit` is not training time: with 0.4 s of validation after epoch 0,
/// `train/time` stays below it.
#[test]
fn throughput_monitor_leaves_validation_out_of_the_training_time() {
    let dir = tempfile::tempdir().unwrap();
    let monitor = ThroughputMonitor::new(|b: &(Tensor, Tensor)| b.0.dims()[0]).window_size(2);
    let mut t = builder(dir.path()).num_sanity_val_steps(0).limit_val_batches(1).callbacks((monitor,)).build().unwrap();
    let start = std::time::Instant::now();
    t.fit(&mut model(Duration::from_millis(400)), Data::loader(data()).val(data())).unwrap();
    let wall = start.elapsed().as_secs_f64();
    let time = *columns(dir.path())["train/time"].last().unwrap();
    assert!(wall > 0.8, "two validations of 0.4 s: {wall}");
    assert!(time < 0.4, "train/time {time} must not count the 0.4 s validation after epoch 0 (fit took {wall})");
}

#[test]
fn throughput_monitor_refuses_a_window_below_two() {
    let dir = tempfile::tempdir().unwrap();
    let monitor = ThroughputMonitor::new(|b: &(Tensor, Tensor)| b.0.dims()[0]).window_size(1);
    let mut t = builder(dir.path()).callbacks((monitor,)).build().unwrap();
    let e = t.fit(&mut model(Duration::ZERO), Data::loader(data())).unwrap_err().to_string();
    assert!(e.contains("window_size") && e.contains("at least 2"), "{e}");
}

#[test]
fn device_stats_monitor_logs_rss_and_cpu_time_around_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = builder(dir.path()).log_every_n_steps(2).callbacks((DeviceStatsMonitor::new(),)).build().unwrap();
    t.fit(&mut model(Duration::ZERO), Data::loader(data())).unwrap();
    let c = columns(dir.path());
    for hook in ["on_train_batch_start", "on_train_batch_end"] {
        let col = |stat: &str| c[&format!("DeviceStatsMonitor.{hook}/{stat}")].clone();
        // every second step of 16
        let rss = col("process_rss_mb");
        assert_eq!(rss.len(), 8, "{hook}: {rss:?}");
        assert!(rss.iter().all(|mb| *mb > 1.0 && *mb < 1e6), "{hook}: RSS {rss:?} MB");
        let cpu = col("process_cpu_time_s");
        assert!(cpu.windows(2).all(|w| w[1] >= w[0]) && cpu[7] > cpu[0], "{hook}: CPU time {cpu:?}");
        assert!(col("cpu_vm_percent").iter().all(|p| *p > 0.0 && *p <= 100.0));
        assert!(col("cpu_swap_percent").iter().all(|p| (0.0..=100.0).contains(p)));
    }
}

#[test]
fn device_stats_monitor_needs_a_logger_and_cpu_stats_false_logs_nothing_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = builder(dir.path()).enable_logger(false).callbacks((DeviceStatsMonitor::new(),)).build().unwrap();
    let e = t.fit(&mut model(Duration::ZERO), Data::loader(data())).unwrap_err().to_string();
    assert!(e.contains("DeviceStatsMonitor") && e.contains("logger"), "{e}");

    let mut t = builder(dir.path()).callbacks((DeviceStatsMonitor::new().cpu_stats(false),)).build().unwrap();
    t.fit(&mut model(Duration::ZERO), Data::loader(data())).unwrap();
    let c = columns(dir.path());
    assert_eq!(c["train_loss"].len(), 16);
    assert!(!c.keys().any(|k| k.starts_with("DeviceStatsMonitor")), "{:?}", c.keys());
}
