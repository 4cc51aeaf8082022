//! Lightning's profilers (issue 18, item 3): every hook and loop region timed, the table at
//! the end of each stage in a file, and the Chrome trace.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder, VarMap};
use lightning::prelude::*;
use lightning::profiler::{AdvancedProfiler, SimpleProfiler};

#[lightning_module]
struct Line {
    vars: VarMap,
    layer: Linear,
}

#[lightning_module]
impl Line {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        self.layer.forward(&batch.0)?.sub(&batch.1)?.sqr()?.mean_all()
    }
    fn validation_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<()> {
        let loss = self.layer.forward(&batch.0)?.sub(&batch.1)?.sqr()?.mean_all()?;
        trainer.log("val_loss", &loss)
    }
    fn on_train_epoch_end(&mut self) {}
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&self.vars, 0.01)
    }
}

fn line() -> Line {
    let vars = VarMap::new();
    let layer = candle_nn::linear(2, 1, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu)).unwrap();
    Line { vars, layer }
}

fn loader(n: usize) -> DataLoader {
    let x = Tensor::ones((n, 2), DType::F32, &Device::Cpu).unwrap();
    let y = x.sum_keepdim(1).unwrap();
    DataLoader::new(x, y, 2).unwrap()
}

#[test]
fn the_simple_profiler_times_hooks_and_loops_and_writes_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let profiler = SimpleProfiler::new().dirpath(dir.path()).filename("perf").chrome_trace(true);
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .accelerator(Accelerator::Cpu)
        .max_epochs(2)
        .num_sanity_val_steps(0)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .profiler(profiler)
        .build()
        .unwrap();
    let mut model = line();
    trainer.fit(&mut model, Data::loader(loader(8)).val(loader(4))).unwrap();

    let report = std::fs::read_to_string(dir.path().join("fit-perf.txt")).unwrap();
    assert_eq!(trainer.profiler().last_report(), Some(report.as_str()));
    assert!(report.starts_with("FIT Profiler Report\n"), "{report}");
    assert!(report.contains("|  Action "), "{report}");
    assert!(report.contains("Mean duration (s)"), "{report}");
    let calls = |action: &str| -> usize {
        let named = |l: &&str| {
            l.strip_prefix("|  ").and_then(|r| r.strip_prefix(action)).is_some_and(|r| r.starts_with([' ', '\t']))
        };
        let row = report.lines().find(named).unwrap_or_else(|| {
            panic!("no row for {action}:\n{report}");
        });
        row.split('|').nth(3).unwrap().trim().parse().unwrap()
    };
    // 2 epochs × 4 batches; 2 validation runs × 2 batches; the epoch hooks the module wrote
    assert_eq!(calls("training_step"), 8);
    assert_eq!(calls("backward"), 8);
    assert_eq!(calls("optimizer_step"), 8);
    assert_eq!(calls("run_training_batch"), 8);
    assert_eq!(calls("[_TrainingEpochLoop].train_dataloader_next"), 2 * 5, "the last call finds the end");
    assert_eq!(calls("run_training_epoch"), 2);
    assert_eq!(calls("validation_step"), 4);
    assert_eq!(calls("[_EvaluationLoop].val_next"), 2 * 3);
    assert_eq!(calls("on_train_epoch_end"), 2, "the module's hook (the checkpoint callback's too)");
    assert_eq!(calls("configure_optimizers"), 1);
    // a hook nobody wrote is not timed
    assert!(!report.contains("on_train_batch_start"), "{report}");
    // the Total row counts every call
    let total_calls: usize =
        report.lines().find(|l| l.starts_with("|  Total")).unwrap().split('|').nth(3).unwrap().trim().parse().unwrap();
    let rows: usize = report
        .lines()
        .filter(|l| l.starts_with("|  ") && !l.starts_with("|  Total") && !l.starts_with("|  Action"))
        .map(|l| l.split('|').nth(3).unwrap().trim().parse::<usize>().unwrap())
        .sum();
    assert_eq!(total_calls, rows);

    // the Chrome trace: one complete event per region, nested inside the epochs
    let trace: lightning::serde_json::Value =
        lightning::serde_json::from_str(&std::fs::read_to_string(dir.path().join("fit-perf.trace.json")).unwrap())
            .unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    assert_eq!(events.iter().filter(|e| e["name"] == "training_step").count(), 8);
    assert!(events.iter().all(|e| e["ph"] == "X" && e["dur"].as_f64().unwrap() >= 0.0));
    let epoch = events.iter().find(|e| e["name"] == "run_training_epoch").unwrap();
    let step = events.iter().find(|e| e["name"] == "training_step").unwrap();
    let (es, ed, ss) = (epoch["ts"].as_f64().unwrap(), epoch["dur"].as_f64().unwrap(), step["ts"].as_f64().unwrap());
    assert!(es <= ss && ss <= es + ed, "the first step lies inside the first epoch");

    // each stage reports on its own
    trainer.validate(&mut model, Data::loader(loader(6))).unwrap();
    let report = std::fs::read_to_string(dir.path().join("validate-perf.txt")).unwrap();
    assert!(report.starts_with("VALIDATE Profiler Report"), "{report}");
    assert!(report.contains("|  validation_step"), "{report}");
    assert!(!report.contains("training_step"), "{report}");
}

#[test]
fn the_advanced_profiler_reports_distributions() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .accelerator(Accelerator::Cpu)
        .max_epochs(1)
        .enable_checkpointing(false)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .profiler(AdvancedProfiler::new().dirpath(dir.path()).filename("adv"))
        .build()
        .unwrap();
    trainer.fit(&mut line(), Data::loader(loader(8))).unwrap();
    let report = std::fs::read_to_string(dir.path().join("fit-adv.txt")).unwrap();
    for column in ["Num calls", "Mean (s)", "Std (s)", "Median (s)", "p90 (s)", "p99 (s)", "Max (s)"] {
        assert!(report.contains(column), "{column}: {report}");
    }
    // the stage's record was reported and cleared for the next stage
    assert_eq!(trainer.profiler().actions().count(), 0);
    assert!(report.lines().any(|l| l.starts_with("|  training_step") && l.contains("|  4 ")), "{report}");
    // no file name: nothing written, the table is printed (stdout) instead
    assert!(!dir.path().join("fit-profile.txt").exists());
}
