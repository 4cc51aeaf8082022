//! LearningRateMonitor and EmaWeights.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use lightning::callbacks::LoggingInterval;
use lightning::prelude::*;
use lightning::{EmaWeights, LearningRateMonitor};

/// Loss `w` (gradient 1), so plain SGD moves `w` by `-lr` per step; validation logs `w`.
#[lightning_module]
struct Drift {
    vars: VarMap,
    w: Var,
}

#[lightning_module]
impl Drift {
    fn training_step(&mut self, trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        let w = self.w.as_tensor().sum_all()?;
        trainer.log_with("w", &w, Log::new().prog_bar(true))?;
        Ok(w)
    }
    fn validation_step(&mut self, trainer: &mut TrainerState) -> lightning::Result<()> {
        trainer.log("val_w", self.w.as_tensor().sum_all()?)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<(Sgd, StepLr)> {
        Ok((Sgd::new(vec![("w".to_string(), self.w.clone())], 0.1)?, StepLr::new(1, 0.5)))
    }
}

fn drift() -> Drift {
    let vars = VarMap::new();
    let w = Var::zeros(1, DType::F64, &Device::Cpu).unwrap();
    vars.data().lock().unwrap().insert("w".into(), w.clone());
    Drift { vars, w }
}

fn two_batches() -> DataLoader {
    let x = Tensor::zeros((4, 1), DType::F64, &Device::Cpu).unwrap();
    DataLoader::new(x.clone(), x, 2).unwrap()
}

#[test]
fn learning_rate_monitor_logs_each_step_and_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::builder()
        .max_epochs(2)
        .log_every_n_steps(1)
        .default_root_dir(dir.path())
        .enable_checkpointing(false)
        .enable_progress_bar(false)
        .callbacks((LearningRateMonitor::new(),))
        .build()
        .unwrap();
    let out = t.fit(&mut drift(), Data::loader(two_batches())).unwrap();
    assert_eq!(out.metrics["lr-Sgd"], 0.05);
    let csv = std::fs::read_to_string(dir.path().join("lightning_logs/version_0/metrics.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "lr-Sgd").unwrap();
    let lrs: Vec<&str> = lines.map(|l| l.split(',').nth(col).unwrap()).filter(|v| !v.is_empty()).collect();
    assert_eq!(lrs, ["0.1", "0.1", "0.05", "0.05"]);

    // per epoch: logged at epoch start, one value per epoch
    let mut t = Trainer::builder()
        .max_epochs(3)
        .default_root_dir(dir.path())
        .enable_checkpointing(false)
        .enable_progress_bar(false)
        .enable_logger(false)
        .callbacks((LearningRateMonitor::new().logging_interval(LoggingInterval::Epoch),))
        .build()
        .unwrap();
    let out = t.fit(&mut drift(), Data::loader(two_batches())).unwrap();
    assert_eq!(out.metrics["lr-Sgd"], 0.025);
}

#[test]
fn ema_weights_validate_with_the_average_and_stay_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::builder()
        .max_epochs(2)
        .num_sanity_val_steps(0)
        .default_root_dir(dir.path())
        .enable_checkpointing(false)
        .enable_progress_bar(false)
        .enable_logger(false)
        .callbacks((EmaWeights::new(0.5),))
        .build()
        .unwrap();
    let mut m = drift();
    // constant lr: StepLr halves per epoch, so w = -0.1, -0.2, -0.25, -0.3
    let out = t.fit(&mut m, Data::loader(two_batches()).val(two_batches())).unwrap();
    // EMA after the steps: -0.05, -0.125, -0.1875, -0.24375
    assert!((out.metrics["val_w"] - -0.24375).abs() < 1e-12, "{:?}", out.metrics);
    let w = m.w.as_tensor().to_vec1::<f64>().unwrap()[0];
    assert!((w - -0.24375).abs() < 1e-12, "the module keeps the average: {w}");
    assert_eq!(t.callbacks().0.updates, 4);
}

/// The average is saved in checkpoints: 2 epochs plus a resumed third give the same average
/// and update count as 3 epochs in one run.
#[test]
fn ema_average_survives_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let trainer = |epochs, sub: &str| {
        Trainer::builder()
            .max_epochs(epochs)
            .num_sanity_val_steps(0)
            .default_root_dir(dir.path().join(sub))
            .enable_progress_bar(false)
            .enable_logger(false)
            .callbacks((EmaWeights::new(0.5),))
            .build()
            .unwrap()
    };
    let mut whole = trainer(3, "whole");
    let mut m = drift();
    whole.fit(&mut m, Data::loader(two_batches()).val(two_batches())).unwrap();
    let expected = m.w.as_tensor().to_vec1::<f64>().unwrap()[0];

    let mut first = trainer(2, "parts");
    let out = first.fit(&mut drift(), Data::loader(two_batches()).val(two_batches())).unwrap();
    let last = out.last_checkpoint.unwrap();
    let saved = lightning::Checkpoint::load(&last).unwrap();
    assert!(saved.tensors.contains_key("ema/w"), "{:?}", saved.tensors.keys().collect::<Vec<_>>());
    assert!(last.join("extra.safetensors").is_file());
    let mut rest = trainer(3, "parts");
    rest.resume_from(&last);
    let mut m = drift();
    rest.fit(&mut m, Data::loader(two_batches()).val(two_batches())).unwrap();
    assert_eq!(m.w.as_tensor().to_vec1::<f64>().unwrap()[0], expected);
    assert_eq!(rest.callbacks().0.updates, whole.callbacks().0.updates);
    assert_eq!(rest.callbacks().0.updates, 6);
}

#[test]
fn lambda_callback_runs_its_closures() {
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (a, b) = (seen.clone(), seen.clone());
    let cb = lightning::callbacks::LambdaCallback::new()
        .on_train_epoch_end(move |t| {
            a.lock().unwrap().push(format!("epoch {}", t.current_epoch()));
            Ok(())
        })
        .on_train_batch_end(move |t, i| {
            b.lock().unwrap().push(format!("batch {i}"));
            if t.global_step() == 3 {
                t.request_stop();
            }
            Ok(())
        });
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::builder()
        .max_epochs(5)
        .default_root_dir(dir.path())
        .enable_checkpointing(false)
        .enable_progress_bar(false)
        .enable_logger(false)
        .callbacks((cb,))
        .build()
        .unwrap();
    let out = t.fit(&mut drift(), Data::loader(two_batches())).unwrap();
    assert_eq!(out.global_step, 3);
    assert_eq!(*seen.lock().unwrap(), ["batch 0", "batch 1", "epoch 0", "batch 0", "epoch 1"]);
}

/// A module with every step, whose training step can be made to fail.
#[lightning_module]
struct Steps {
    vars: VarMap,
    w: Var,
    fail: bool,
}

#[lightning_module]
impl Steps {
    fn training_step(&mut self) -> lightning::Result<Tensor> {
        if self.fail {
            return Err(lightning::Error::msg("boom"));
        }
        Ok(self.w.as_tensor().sum_all()?)
    }
    fn validation_step(&mut self) -> lightning::Result<()> {
        Ok(())
    }
    fn test_step(&mut self) -> lightning::Result<()> {
        Ok(())
    }
    fn predict_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        Ok(batch.0.clone())
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(vec![("w".to_string(), self.w.clone())], 0.1)
    }
}

/// Every one of Lightning's 37 `LambdaCallback` hooks runs its closure: a fit with
/// validation, a resume, test, predict, and a failing fit.
#[test]
fn lambda_callback_has_every_lightning_hook() {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<BTreeSet<&'static str>>> = Arc::default();
    macro_rules! recording {
        ($($hook:ident($($arg:pat),*)),* $(,)?) => {{
            let mut cb = lightning::callbacks::LambdaCallback::new();
            $(
                let s = seen.clone();
                cb = cb.$hook(move |_t $(, $arg)*| {
                    s.lock().unwrap().insert(stringify!($hook));
                    Ok(())
                });
            )*
            cb
        }};
    }
    let make = || {
        recording!(
            setup(_),
            teardown(_),
            on_fit_start(),
            on_fit_end(),
            on_sanity_check_start(),
            on_sanity_check_end(),
            on_train_start(),
            on_train_end(),
            on_validation_start(),
            on_validation_end(),
            on_test_start(),
            on_test_end(),
            on_predict_start(),
            on_predict_end(),
            on_train_epoch_start(),
            on_train_epoch_end(),
            on_validation_epoch_start(),
            on_validation_epoch_end(),
            on_test_epoch_start(),
            on_test_epoch_end(),
            on_predict_epoch_start(),
            on_predict_epoch_end(),
            on_train_batch_start(_),
            on_train_batch_end(_),
            on_validation_batch_start(_),
            on_validation_batch_end(_),
            on_test_batch_start(_),
            on_test_batch_end(_),
            on_predict_batch_start(_),
            on_predict_batch_end(_),
            on_before_backward(_),
            on_after_backward(),
            on_before_optimizer_step(),
            on_before_zero_grad(),
            on_save_checkpoint(_),
            on_load_checkpoint(_),
            on_exception(_),
        )
    };
    assert_eq!(make().hooks().len(), 37);
    let steps = |fail| {
        let vars = VarMap::new();
        let w = Var::zeros(1, DType::F64, &Device::Cpu).unwrap();
        vars.data().lock().unwrap().insert("w".into(), w.clone());
        Steps { vars, w, fail }
    };
    let dir = tempfile::tempdir().unwrap();
    let trainer = |epochs| {
        Trainer::builder()
            .max_epochs(epochs)
            .default_root_dir(dir.path())
            .enable_progress_bar(false)
            .enable_logger(false)
            .callbacks((make(),))
            .build()
            .unwrap()
    };
    let mut t = trainer(1);
    let out = t.fit(&mut steps(false), Data::loader(two_batches()).val(two_batches())).unwrap();
    let mut t = trainer(2);
    t.resume_from(out.last_checkpoint.unwrap());
    let mut m = steps(false);
    t.fit(&mut m, Data::loader(two_batches()).val(two_batches())).unwrap();
    t.test(&mut m, Data::loader(two_batches())).unwrap();
    t.predict(&mut m, Data::loader(two_batches())).unwrap();
    let mut t = trainer(1);
    assert!(t.fit(&mut steps(true), Data::loader(two_batches())).is_err());
    let seen = seen.lock().unwrap();
    let missing: Vec<_> = make().hooks().into_iter().filter(|h| !seen.contains(h)).collect();
    assert!(missing.is_empty(), "closures never called: {missing:?}");
}

/// The model summary: one row per VarMap prefix, typed by the struct field of that name or
/// by the weight's shape, with totals.
#[lightning_module]
struct Layers {
    vars: VarMap,
    fc1: candle_nn::Linear,
    conv: candle_nn::Conv2d,
}

#[test]
fn model_summary_rows_and_totals() {
    let vars = VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
    let fc1 = candle_nn::linear(784, 128, vb.pp("fc1")).unwrap();
    let conv = candle_nn::conv2d(1, 32, 3, Default::default(), vb.pp("c1")).unwrap();
    let _extra = candle_nn::linear(128, 10, vb.pp("head")).unwrap();
    let table = lightning::summarize(&Layers { vars, fc1, conv });
    let cells = |line: &str| line.split('|').map(|c| c.trim().to_owned()).collect::<Vec<_>>();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(cells(lines[0]), ["", "Name", "Type", "Params", "Trainable"]);
    // field order first (fc1), then the other prefixes by name
    assert_eq!(cells(lines[2]), ["0", "fc1", "candle_nn::Linear", "100.5 K", "yes"]);
    assert_eq!(cells(lines[3]), ["1", "c1", "Conv2d(1→32, 3×3)", "320", "yes"]);
    assert_eq!(cells(lines[4]), ["2", "head", "Linear(128→10)", "1.3 K", "yes"]);
    assert!(table.contains("102.1 K   Total params"), "{table}");
    assert!(table.contains("0.408     Total estimated model params size (MB)"), "{table}");
}

#[test]
fn model_summary_counts_what_no_optimizer_holds_as_non_trainable() {
    let vars = VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
    let fc1 = candle_nn::linear(784, 128, vb.pp("fc1")).unwrap();
    let conv = candle_nn::conv2d(1, 32, 3, Default::default(), vb.pp("c1")).unwrap();
    // fc1 frozen, the conv's bias too: the optimizer holds the conv's weight alone
    let opt = Sgd::new(vec![("c1.weight".to_string(), vars.data().lock().unwrap()["c1.weight"].clone())], 0.1).unwrap();
    let held: Vec<_> = opt.named_parameters().into_iter().map(|(_, v)| v.id()).collect();
    let table = lightning::summarize_trainable(&Layers { vars, fc1, conv }, |v| held.contains(&v.id()));
    let cells = |line: &str| line.split('|').map(|c| c.trim().to_owned()).collect::<Vec<_>>();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(cells(lines[2]), ["0", "fc1", "candle_nn::Linear", "100.5 K", "no"]);
    assert_eq!(cells(lines[3]), ["1", "c1", "Conv2d(1→32, 3×3)", "320", "partly"]);
    assert!(table.contains("288       Trainable params"), "{table}");
    assert!(table.contains("100.5 K   Non-trainable params"), "{table}");
    assert!(table.contains("100.8 K   Total params"), "{table}");
}

/// A writer the test can read back.
#[derive(Clone, Default)]
struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn progress_bar_prints_plain_lines_off_a_terminal() {
    let out = Shared::default();
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::builder()
        .max_epochs(2)
        .default_root_dir(dir.path())
        .enable_checkpointing(false)
        .enable_progress_bar(false)
        .callbacks((lightning::ProgressBar::plain_to(out.clone()),))
        .build()
        .unwrap();
    t.fit(&mut drift(), Data::loader(two_batches()).val(two_batches())).unwrap();
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // short epochs print one line each, at their end; validation and the sanity check are quiet
    assert_eq!(lines.len(), 2, "{text}");
    for (line, (epoch, w)) in lines.iter().zip([(0, "-0.1000"), (1, "-0.2500")]) {
        assert!(line.starts_with(&format!("Epoch {epoch}: 100% 2/2 [00:00:00<00:00:00, ")), "{line}");
        assert!(line.contains("it/s]") && line.ends_with(&format!(" w={w}, v_num=0")), "{line}");
    }
}

/// With a line allowed at every tenth, each epoch prints its middle and its end once: the last
/// batch leaves the 100% line to the epoch's end, which has the epoch's metrics.
#[test]
fn progress_bar_prints_each_100_percent_line_once() {
    let out = Shared::default();
    let bar = lightning::ProgressBar::plain_to(out.clone()).plain_every(std::time::Duration::ZERO);
    let mut t = Trainer::builder()
        .max_epochs(2)
        .enable_checkpointing(false)
        .enable_progress_bar(false)
        .enable_logger(false)
        .callbacks((bar,))
        .build()
        .unwrap();
    t.fit(&mut drift(), Data::loader(two_batches())).unwrap();
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let starts: Vec<String> = text.lines().map(|l| l.split(" [").next().unwrap_or("").to_owned()).collect();
    assert_eq!(starts, ["Epoch 0:  50% 1/2", "Epoch 0: 100% 2/2", "Epoch 1:  50% 1/2", "Epoch 1: 100% 2/2"], "{text}");
}

fn timed_trainer(epochs: usize, timer: lightning::callbacks::Timer) -> Trainer<(lightning::callbacks::Timer,)> {
    Trainer::builder()
        .max_epochs(epochs)
        .num_sanity_val_steps(0)
        .enable_checkpointing(false)
        .enable_progress_bar(false)
        .enable_logger(false)
        .callbacks((timer,))
        .build()
        .unwrap()
}

/// A spent budget stops training after the batch (or the epoch) that spent it; the stages'
/// times are recorded; the elapsed time survives `state_dict`.
#[test]
fn timer_stops_training_and_times_the_stages() {
    use lightning::callbacks::{TimedStage, Timer};
    use std::time::Duration;
    let spent = || Timer::new(Duration::ZERO).verbose(false);
    let out = timed_trainer(5, spent()).fit(&mut drift(), Data::loader(two_batches())).unwrap();
    assert_eq!(out.global_step, 1, "step interval: stops after the first batch");
    let out = timed_trainer(5, spent().interval(lightning::Interval::Epoch))
        .fit(&mut drift(), Data::loader(two_batches()))
        .unwrap();
    assert_eq!(out.global_step, 2, "epoch interval: stops after the first epoch");

    let mut t = timed_trainer(2, Timer::default());
    let out = t.fit(&mut drift(), Data::loader(two_batches()).val(two_batches())).unwrap();
    assert_eq!(out.global_step, 4, "no budget, no stop");
    let timer = &t.callbacks().0;
    assert!(timer.time_elapsed(TimedStage::Train) > Duration::ZERO);
    assert!(timer.time_elapsed(TimedStage::Validate) > Duration::ZERO);
    assert!(timer.end_time(TimedStage::Train).unwrap() >= timer.start_time(TimedStage::Train).unwrap());
    assert_eq!(timer.time_elapsed(TimedStage::Test), Duration::ZERO);
    assert!(timer.time_remaining(TimedStage::Train).is_none());

    // a resumed run counts the time already spent: a checkpoint that says 100 s were spent,
    // resumed with a 50 s budget, trains one batch
    let dir = tempfile::tempdir().unwrap();
    let with_ckpt = |timer: Timer, epochs: usize| {
        Trainer::builder()
            .max_epochs(epochs)
            .num_sanity_val_steps(0)
            .default_root_dir(dir.path())
            .enable_progress_bar(false)
            .enable_logger(false)
            .callbacks((timer,))
            .build()
            .unwrap()
    };
    let out = with_ckpt(Timer::default(), 1).fit(&mut drift(), Data::loader(two_batches())).unwrap();
    let path = out.last_checkpoint.unwrap();
    let mut ckpt = lightning::Checkpoint::load(&path).unwrap();
    let state = ckpt.callbacks.get_mut("Timer").expect("the timer's state is saved");
    assert!(state["time_elapsed"]["train"].as_f64().unwrap() > 0.0, "{state}");
    state["time_elapsed"]["train"] = 100.0.into();
    ckpt.save(&path).unwrap();
    let mut t = with_ckpt(Timer::new(Duration::from_secs(50)).verbose(false), 5);
    t.resume_from(&path);
    let out = t.fit(&mut drift(), Data::loader(two_batches())).unwrap();
    assert_eq!(out.global_step, 3, "one batch after the resume at step 2");
    assert!(t.callbacks().0.time_elapsed(TimedStage::Train) >= Duration::from_secs(100));

    assert_eq!(Timer::parse("00:00:01:30").unwrap().duration(), Some(Duration::from_secs(90)));
    assert_eq!(Timer::parse("01:00:00:00").unwrap().duration(), Some(Duration::from_secs(86_400)));
    for bad in ["1:2:3", "00:00:xx:00", ""] {
        let e = Timer::parse(bad).unwrap_err().to_string();
        assert!(e.contains("DD:HH:MM:SS"), "{e}");
    }
}

/// On a terminal, each training epoch keeps a bar with the epoch, the step out of the total,
/// it/s, the elapsed time and ETA, and the `prog_bar` metrics; validation's bar is cleared.
#[test]
fn progress_bar_draws_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let term = indicatif::InMemoryTerm::new(10, 160);
    let mut t = Trainer::builder()
        .max_epochs(2)
        .default_root_dir(dir.path())
        .enable_checkpointing(false)
        .enable_progress_bar(false)
        .callbacks((lightning::ProgressBar::to_term(term.clone()),))
        .build()
        .unwrap();
    t.fit(&mut drift(), Data::loader(two_batches()).val(two_batches())).unwrap();
    let screen = term.contents();
    let lines: Vec<&str> = screen.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 2, "one kept bar per epoch:\n{screen}");
    for (line, (epoch, w)) in lines.iter().zip([(0, "-0.1000"), (1, "-0.2500")]) {
        assert!(line.starts_with(&format!("Epoch {epoch}: 100% ")), "{line}");
        assert!(line.contains(" 2/2 [00:00:00<00:00:00, "), "{line}");
        assert!(line.contains("it/s]") || line.contains("/s]"), "{line}");
        assert!(line.ends_with(&format!("w={w}, v_num=0")), "{line}");
    }
}
