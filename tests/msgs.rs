//! Messages that say what to do (issue 15, items 8 and 9): what `main` prints for an error,
//! which loader has a zero batch size, and the small things a Lightning user reaches for.

use std::process::{Command, Termination};

use candle_core::{Device, Tensor};
use lightning::prelude::*;

/// The error a hook returns when a trainer flag is wrong, as `fit` would wrap it.
fn nested_error() -> lightning::Error {
    lightning::Error::in_hook(
        "on_train_epoch_end",
        lightning::Error::Config { flag: "max_epochs", reason: "must be at least 1".into() },
    )
}

/// `fn main() -> lightning::Result<()>` prints its error through `Termination`, as here; a
/// child process runs it so the test reads what a user's terminal shows.
#[test]
fn an_error_returned_from_main_prints_the_message_chain() {
    if std::env::var_os("MSGS_MAIN_CHILD").is_some() {
        let result: lightning::Result<()> = Err(nested_error());
        let _ = result.report();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["an_error_returned_from_main_prints_the_message_chain", "--exact", "--nocapture", "--test-threads=1"])
        .env("MSGS_MAIN_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "Error: hook `on_train_epoch_end` failed: invalid trainer setting `max_epochs`: must be at least 1\n"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("Hook {") && !stderr.contains("source:"), "Debug structure printed: {stderr}");
}

#[test]
fn debug_adds_causes_the_message_does_not_carry() {
    let io = std::io::Error::other("disk full");
    let e = lightning::Error::User(Box::new(Wrapped(io)));
    assert_eq!(format!("{e:?}"), "could not save\n\nCaused by:\n    0: disk full");
}

#[derive(Debug)]
struct Wrapped(std::io::Error);
impl std::fmt::Display for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("could not save")
    }
}
impl std::error::Error for Wrapped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn a_zero_batch_size_names_the_loader() {
    struct Chars;
    impl Dataset for Chars {
        type Item = (Tensor, u32);
        fn len(&self) -> usize {
            4
        }
        fn get(&self, i: usize) -> lightning::Result<(Tensor, u32)> {
            Ok((Tensor::new(&[i as f32], &Device::Cpu)?, i as u32))
        }
    }
    let e = MapLoader::new(Chars, 0).err().unwrap().to_string();
    assert!(e.contains("MapLoader::new") && e.contains("Chars") && e.contains("batch_size is 0"), "{e}");
    let x = Tensor::zeros((4, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
    let e = DataLoader::new(x.clone(), x, 0).err().unwrap().to_string();
    assert!(e.contains("DataLoader::new: batch_size is 0"), "{e}");
}

/// The names issue 15 reached for are in the prelude. `Mode` is one type for the monitoring
/// callbacks and `ReduceLrOnPlateau`, so globbing `lightning::optim::*` beside the prelude
/// leaves it unambiguous.
#[test]
fn the_prelude_has_what_a_lightning_script_names() {
    #[allow(unused_imports)]
    use lightning::optim::*;
    let stop = EarlyStopping::new("val_acc").mode(Mode::Max);
    assert!(format!("{stop:?}").contains("Max"), "{stop:?}");
    let _ = ReduceLrOnPlateau::new(0.5, 2).mode(Mode::Max);
    let _: Option<NoScheduler> = None;
    assert_ne!(Anneal::Cos, Anneal::Linear);
}

#[lightning_module]
struct Drift {
    vars: candle_nn::VarMap,
    w: candle_core::Var,
}

#[lightning_module]
impl Drift {
    fn training_step(&mut self, trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        let w = self.w.as_tensor().sum_all()?;
        let twice = (&w * 2.0)?;
        trainer.log_dict_with([("train_loss", &w), ("twice", &twice)], Log::new().on_epoch(true).prog_bar(true))?;
        Ok(w)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(vec![("w".to_string(), self.w.clone())], 0.1)
    }
    fn test_step(&mut self, trainer: &mut TrainerState) -> lightning::Result<()> {
        trainer.log("test_loss", &self.w.as_tensor().sum_all()?)?;
        Ok(())
    }
}

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

/// `log_dict_with` logs every pair with the options; the progress bar names a value logged
/// per step and per epoch `name_step` / `name_epoch`, as Lightning's bar does.
#[test]
fn log_dict_and_the_progress_bar_names() {
    let w = candle_core::Var::new(1f32, &Device::Cpu).unwrap();
    let mut model = Drift { vars: lightning::var_map([("w", &w)]), w };
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
    let x = Tensor::zeros((2, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
    let fit = t.fit(&mut model, Data::loader(DataLoader::new(x.clone(), x, 1).unwrap())).unwrap();
    for name in ["train_loss_step", "train_loss_epoch", "twice_step", "twice_epoch"] {
        assert!(fit.metrics.contains_key(name), "{name}: {:?}", fit.metrics);
    }
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains(" train_loss_step=") && lines[0].contains(" twice_step="), "{text}");
    assert!(!lines[0].contains(" train_loss="), "{text}");
    assert!(lines[1].contains(" train_loss_epoch=") && lines[1].contains(" twice_epoch="), "{text}");
}

/// A monitored key that was never logged: the error names the closest logged one.
#[test]
fn a_monitor_that_was_never_logged_says_did_you_mean() {
    let w = candle_core::Var::new(1f32, &Device::Cpu).unwrap();
    let mut model = Drift { vars: lightning::var_map([("w", &w)]), w };
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::builder()
        .max_epochs(1)
        .default_root_dir(dir.path())
        .enable_checkpointing(false)
        .enable_progress_bar(false)
        .callbacks((EarlyStopping::new("train_los"),))
        .build()
        .unwrap();
    let x = Tensor::zeros((2, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
    let e = t.fit(&mut model, Data::loader(DataLoader::new(x.clone(), x, 1).unwrap())).unwrap_err();
    assert!(e.to_string().contains("which was not logged: did you mean `train_loss`?"), "{e}");
}

/// A validation loader given to a module without `validation_step` is skipped with
/// Lightning's warning, and a monitor of a validation metric names the missing step.
#[test]
fn a_val_loader_without_validation_step_warns_and_the_monitor_names_the_step() {
    if std::env::var_os("MSGS_VAL_CHILD").is_some() {
        let w = candle_core::Var::new(1f32, &Device::Cpu).unwrap();
        let mut model = Drift { vars: lightning::var_map([("w", &w)]), w };
        let dir = tempfile::tempdir().unwrap();
        let mut t = Trainer::builder()
            .max_epochs(1)
            .default_root_dir(dir.path())
            .enable_checkpointing(false)
            .enable_progress_bar(false)
            .callbacks((EarlyStopping::new("val_loss"),))
            .build()
            .unwrap();
        let x = Tensor::zeros((2, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
        let loader = || DataLoader::new(x.clone(), x.clone(), 1).unwrap();
        let _ = t.fit(&mut model, Data::loader(loader()).val(loader())).map(|_| ()).report();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let name = "a_val_loader_without_validation_step_warns_and_the_monitor_names_the_step";
    let out = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("MSGS_VAL_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "warning: a validation loader was given, but `Drift` has no `validation_step`: skipping the validation loop"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("the module has no `validation_step`, so nothing validation logs exists"), "{stderr}");
    // Lightning's warning for an epoch shorter than the logging interval (found by a user
    // trial: per-step values never reached metrics.csv, without a word)
    assert!(
        stderr.contains(
            "warning: the number of training batches (2) is smaller than the logging interval `log_every_n_steps=50`"
        ),
        "{stderr}"
    );
}

#[lightning_module]
struct Pick {
    vars: candle_nn::VarMap,
    w: candle_core::Var,
    adam: bool,
}

#[lightning_module]
impl Pick {
    fn training_step(&mut self) -> lightning::Result<Tensor> {
        Ok(self.w.as_tensor().sum_all()?)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Either<Sgd, AdamW>> {
        let params = vec![("w".to_string(), self.w.clone())];
        Ok(if self.adam { Either::Right(AdamW::with_lr(params, 0.1)?) } else { Either::Left(Sgd::new(params, 0.1)?) })
    }
}

/// A loader and an optimizer chosen at run time: `Either` is both a `Loader` and an `Optimizer`.
#[test]
fn either_chooses_a_loader_and_an_optimizer_at_run_time() {
    for (adam, batch_size) in [(false, 1), (false, 2), (true, 1)] {
        let w = candle_core::Var::new(1f32, &Device::Cpu).unwrap();
        let vars = candle_nn::VarMap::new();
        vars.data().lock().unwrap().insert("w".into(), w.clone());
        let mut model = Pick { vars, w, adam };
        let x = Tensor::zeros((2, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
        let loader = if batch_size == 1 {
            Either::Left(DataLoader::new(x.clone(), x, 1).unwrap())
        } else {
            Either::Right(DataLoader::new(x.clone(), x, 2).unwrap().shuffle(3))
        };
        let mut t = Trainer::builder()
            .max_epochs(1)
            .enable_checkpointing(false)
            .enable_progress_bar(false)
            .enable_logger(false)
            .enable_model_summary(false)
            .build()
            .unwrap();
        let out = t.fit(&mut model, Data::loader(loader)).unwrap();
        let steps = 2 / batch_size;
        assert_eq!(out.global_step, steps);
        let got = model.w.as_tensor().to_scalar::<f32>().unwrap();
        // SGD: 1 - 0.1 per step (gradient 1); AdamW: 1 - 0.1 per step (a unit step) less decay
        let want = 1.0 - 0.1 * steps as f32;
        if adam {
            assert!(got < want + 1e-3 && got < 1.0, "AdamW ran: {got}");
        } else {
            assert!((got - want).abs() < 1e-6, "SGD ran: {got} vs {want}");
        }
    }
}

/// The rates a scheduler gives over `n` steps from a base rate of 1.
fn rates(mut s: impl LrScheduler, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let lr = s.learning_rate(1.0);
            s.step(None);
            lr
        })
        .collect()
}

fn close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    assert!(got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12), "{got:?} vs {want:?}");
}

/// torch's optional scheduler arguments are builder methods, and a constructor of the
/// required ones alone takes torch's defaults (torch's closed forms, from a rate of 1).
#[test]
fn schedulers_take_torchs_optional_arguments_as_builders() {
    // StepLR(opt, 2): gamma 0.1; then gamma=0.5
    close(&rates(StepLr::every(2), 5), &[1.0, 1.0, 0.1, 0.1, 0.01]);
    close(&rates(StepLr::every(2).gamma(0.5), 5), &[1.0, 1.0, 0.5, 0.5, 0.25]);
    // MultiStepLR(opt, [1, 3]): gamma 0.1
    close(&rates(MultiStepLr::at([1, 3]), 4), &[1.0, 0.1, 0.1, 0.01]);
    close(&rates(MultiStepLr::at([1]).gamma(0.5), 2), &[1.0, 0.5]);
    // CosineAnnealingLR(opt, 4): eta_min 0; then eta_min=0.2
    close(&rates(CosineAnnealingLr::over(4), 5), &[1.0, 0.8535533905932737, 0.5, 0.14644660940672627, 0.0]);
    close(&rates(CosineAnnealingLr::over(2).eta_min(0.2), 3), &[1.0, 0.6, 0.2]);
    // CosineAnnealingWarmRestarts(opt, 2): T_mult 1 restarts every 2; T_mult=2 doubles the second cycle
    close(&rates(CosineAnnealingWarmRestarts::every(2), 4), &[1.0, 0.5, 1.0, 0.5]);
    let doubled = rates(CosineAnnealingWarmRestarts::every(2).t_mult(2).eta_min(0.2), 5);
    close(&doubled, &[1.0, 0.6, 1.0, 0.2 + 0.8 * 0.8535533905932737, 0.6]);
    // LinearLR(opt): 1/3 → 1 over 5 steps
    let third = 1.0 / 3.0;
    let linear: Vec<f64> = (0..7).map(|t| third + (1.0 - third) * (t.min(5) as f64) / 5.0).collect();
    close(&rates(LinearLr::default(), 7), &linear);
    close(&rates(LinearLr::default().start_factor(0.5).end_factor(0.0).total_iters(2), 3), &[0.5, 0.25, 0.0]);
    // ReduceLROnPlateau(opt): factor 0.1 after more than 10 bad steps; factor=0.5, patience=0
    let mut plateau = ReduceLrOnPlateau::default();
    for _ in 0..11 {
        plateau.step(Some(1.0));
    }
    assert_eq!(plateau.learning_rate(1.0), 1.0);
    plateau.step(Some(1.0));
    assert!((plateau.learning_rate(1.0) - 0.1).abs() < 1e-12);
    let mut quick = ReduceLrOnPlateau::default().factor(0.5).patience(0);
    quick.step(Some(1.0));
    quick.step(Some(1.0));
    assert_eq!(quick.learning_rate(1.0), 0.5);
}

/// As Lightning: a `ckpt_path` says "Restoring states from the checkpoint path at …" (and
/// "Loaded model weights …" outside `fit`) on stderr, and `test` prints its results table
/// on stdout. A child process runs it so the test reads what a terminal shows.
#[test]
fn test_with_a_ckpt_path_prints_the_restore_and_the_results_table() {
    if let Some(dir) = std::env::var_os("MSGS_TABLE_CHILD") {
        let w = candle_core::Var::new(1f32, &Device::Cpu).unwrap();
        let vars = candle_nn::VarMap::new();
        vars.data().lock().unwrap().insert("w".into(), w.clone());
        let mut model = Drift { vars, w };
        let mut t = Trainer::builder()
            .max_epochs(1)
            .default_root_dir(dir.clone())
            .enable_progress_bar(false)
            .enable_model_summary(false)
            .build()
            .unwrap();
        let x = Tensor::zeros((2, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
        t.fit(&mut model, Data::loader(DataLoader::new(x.clone(), x.clone(), 1).unwrap())).unwrap();
        let m = t
            .ckpt_path("last")
            .test(&mut model, Data::loader(DataLoader::new(x.clone(), x.clone(), 1).unwrap()))
            .unwrap();
        println!("returned test_loss={}", m["test_loss"]);
        // a resume for one more epoch says what it restored, before and after
        let last = std::path::Path::new(&dir).join("lightning_logs/version_0/checkpoints/epoch=0-step=2.ckpt");
        let mut t2 = Trainer::builder()
            .max_epochs(2)
            .default_root_dir(&dir)
            .enable_progress_bar(false)
            .enable_model_summary(false)
            .build()
            .unwrap();
        t2.ckpt_path(last).fit(&mut model, Data::loader(DataLoader::new(x.clone(), x, 1).unwrap())).unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["test_with_a_ckpt_path_prints_the_restore_and_the_results_table", "--exact", "--nocapture"])
        .env("MSGS_TABLE_CHILD", dir.path())
        .env("COLUMNS", "80")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let ckpt = dir.path().join("lightning_logs/version_0/checkpoints/epoch=0-step=2.ckpt");
    for line in [
        format!("Restoring states from the checkpoint path at {}", ckpt.display()),
        format!("Loaded model weights from the checkpoint at {}", ckpt.display()),
        format!("Restored all states from the checkpoint at {}", ckpt.display()),
    ] {
        assert!(stderr.lines().any(|l| l == line), "{line:?} not in:\n{stderr}");
    }
    let value = stdout.lines().find_map(|l| l.strip_prefix("returned test_loss=")).unwrap();
    // each column 25 wide (the longest name or 25, at most half the width), centred
    let row = format!("{:^25}{value:^25}", "test_loss");
    let bar = "─".repeat(80);
    let table = format!("{bar}\n       Test metric             DataLoader 0\n{bar}\n{}\n{bar}\n", row.trim_end());
    assert!(stdout.contains(&table), "{table} not in:\n{stdout}");
}
