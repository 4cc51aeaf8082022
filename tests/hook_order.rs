//! The hook sequences of Lightning's own hook-order test (reference §2.3, §2.4, §2.5, §2.7),
//! reproduced whole by a recording module and a recording callback.
//!
//! Every expected list is Lightning's, minus the `[m]` rows (plain torch methods that have
//! no equivalent here), plus `on_batch_begin` (ours: callbacks then module, right after
//! the module's `on_train_batch_start`).

mod common;

use common::{take, Hooked, Log, Recorder};
use lightning::prelude::*;

fn m(h: &str) -> String {
    format!("[M] {h}")
}
fn c(h: &str) -> String {
    format!("[C] {h}")
}

/// Shorthand: "C x" / "M x" lines to records.
fn seq(lines: &[&str]) -> Vec<String> {
    lines
        .iter()
        .map(|l| match l.split_once(' ') {
            Some(("C", h)) => c(h),
            Some(("M", h)) => m(h),
            _ => panic!("bad line {l}"),
        })
        .collect()
}

fn setup() -> Vec<String> {
    seq(&["M configure_callbacks", "M prepare_data", "C setup", "M setup", "M configure_model"])
}

fn transfer() -> Vec<String> {
    seq(&["M on_before_batch_transfer", "M transfer_batch_to_device", "M on_after_batch_transfer"])
}

fn eval_batch(kind: &str, step: &str) -> Vec<String> {
    let mut v = transfer();
    v.extend(seq(&[&format!("C on_{kind}_batch_start"), &format!("M on_{kind}_batch_start"), &format!("M {step}")]));
    v.extend(seq(&[&format!("C on_{kind}_batch_end"), &format!("M on_{kind}_batch_end")]));
    v
}

/// One validation or test run of `n` batches (§2.3 rows 12–31, §2.4).
fn eval_run(kind: &str, step: &str, n: usize) -> Vec<String> {
    let mut v =
        seq(&[&format!("M on_{kind}_model_eval"), &format!("C on_{kind}_start"), &format!("M on_{kind}_start")]);
    v.extend(seq(&[&format!("C on_{kind}_epoch_start"), &format!("M on_{kind}_epoch_start")]));
    for _ in 0..n {
        v.extend(eval_batch(kind, step));
    }
    v.extend(seq(&[&format!("C on_{kind}_epoch_end"), &format!("M on_{kind}_epoch_end")]));
    v.extend(seq(&[&format!("C on_{kind}_end"), &format!("M on_{kind}_end"), &format!("M on_{kind}_model_train")]));
    v
}

fn batch_start() -> Vec<String> {
    let mut v = transfer();
    v.extend(seq(&["C on_train_batch_start", "M on_train_batch_start", "C on_batch_begin", "M on_batch_begin"]));
    v
}

fn zero_grad() -> Vec<String> {
    seq(&["C on_before_zero_grad", "M on_before_zero_grad", "M optimizer_zero_grad"])
}

fn backward() -> Vec<String> {
    seq(&["C on_before_backward", "M on_before_backward", "M backward", "C on_after_backward", "M on_after_backward"])
}

fn before_step() -> Vec<String> {
    seq(&["C on_before_optimizer_step", "M on_before_optimizer_step", "M configure_gradient_clipping"])
}

/// One automatic-optimization batch with k = 1 (§2.3 rows 38–59).
fn train_batch(epoch_scheduler: bool) -> Vec<String> {
    let mut v = batch_start();
    v.push(m("optimizer_step"));
    v.push(m("training_step"));
    v.extend(zero_grad());
    v.extend(backward());
    v.extend(before_step());
    if epoch_scheduler {
        v.push(m("lr_scheduler_step"));
    }
    v.extend(seq(&["C on_train_batch_end", "M on_train_batch_end"]));
    v
}

fn save() -> Vec<String> {
    seq(&["C state_dict", "C on_save_checkpoint", "M on_save_checkpoint"])
}

fn end_of_fit() -> Vec<String> {
    seq(&["C on_train_end", "M on_train_end", "C on_fit_end", "M on_fit_end", "C teardown", "M teardown"])
}

fn fit_start() -> Vec<String> {
    let mut v = setup();
    v.extend(seq(&["M configure_optimizers", "C on_fit_start", "M on_fit_start"]));
    v
}

fn builder(dir: &tempfile::TempDir) -> lightning::TrainerBuilder {
    Trainer::builder().default_root_dir(dir.path()).accelerator(Accelerator::Cpu)
}

fn run_fit(trainer: &mut Trainer<(Hooked,)>, model: &mut Recorder) -> lightning::Result<lightning::FitOutcome> {
    trainer.fit(model, Data::module())
}

fn new_run(log: &Log, b: lightning::TrainerBuilder) -> (Trainer<(Hooked,)>, Recorder) {
    (b.callbacks((Hooked::new(log),)).build().unwrap(), Recorder::new(log))
}

#[test]
fn fit_matches_lightning_entry_order() {
    // §2.3: max_epochs=1, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=1
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let b = builder(&dir).max_epochs(1).limit_train_batches(2).limit_val_batches(1).num_sanity_val_steps(1);
    let (mut trainer, mut model) = new_run(&log, b);
    let out = run_fit(&mut trainer, &mut model).unwrap();

    let mut want = fit_start();
    want.push(c("on_sanity_check_start"));
    want.push(m("val_dataloader"));
    want.extend(eval_run("validation", "validation_step", 1));
    want.push(c("on_sanity_check_end"));
    want.push(m("train_dataloader"));
    want.extend(seq(&["C on_train_start", "M on_train_start", "C on_train_epoch_start", "M on_train_epoch_start"]));
    want.extend(train_batch(false));
    want.extend(train_batch(true));
    want.push(m("on_validation_model_zero_grad"));
    want.extend(eval_run("validation", "validation_step", 1));
    want.extend(seq(&["C on_train_epoch_end", "M on_train_epoch_end"]));
    want.extend(save());
    want.extend(end_of_fit());
    assert_eq!(take(&log), want);
    assert_eq!(want.len(), 115 - 10 + 4, "Lightning's 115 records, less 10 [m] rows, plus 2×2 on_batch_begin");
    assert_eq!(out.global_step, 2);
    assert_eq!(out.current_epoch, 1);
    let ckpt = out.last_checkpoint.expect("the default ModelCheckpoint saved");
    // beside the default CSV logger's files, as Lightning's ModelCheckpoint
    assert_eq!(ckpt, dir.path().join("lightning_logs/version_0/checkpoints/epoch=0-step=2.ckpt"));
    assert!(ckpt.is_dir());
    assert!(out.metrics.contains_key("val_loss"), "{:?}", out.metrics);
}

#[test]
fn validate_test_and_predict_with_two_batches() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, step, loader) in
        [("validation", "validation_step", "val_dataloader"), ("test", "test_step", "test_dataloader")]
    {
        let log = Log::default();
        let (mut trainer, mut model) = new_run(&log, builder(&dir).limit_val_batches(2).limit_test_batches(2));
        let metrics = if kind == "validation" {
            trainer.validate(&mut model, Data::module())
        } else {
            trainer.test(&mut model, Data::module())
        }
        .unwrap();
        let mut want = setup();
        want.push(m(loader));
        want.extend(eval_run(kind, step, 2));
        want.extend(seq(&["C teardown", "M teardown"]));
        assert_eq!(take(&log), want, "{kind}");
        assert_eq!(want.len(), 38 - 4, "{kind}: Lightning's 38 records less 4 [m] rows");
        let key = if kind == "validation" { "val_loss" } else { "test_loss" };
        assert!(metrics.contains_key(key), "{metrics:?}");
    }

    let log = Log::default();
    let (mut trainer, mut model) = new_run(&log, builder(&dir).limit_predict_batches(2));
    let preds = trainer.predict(&mut model, Data::module()).unwrap();
    assert_eq!(preds.len(), 2);
    let mut want = setup();
    want.extend(seq(&["M predict_dataloader", "M on_predict_model_eval", "C on_predict_start", "M on_predict_start"]));
    want.extend(seq(&["C on_predict_epoch_start", "M on_predict_epoch_start"]));
    for _ in 0..2 {
        want.extend(transfer());
        want.extend(seq(&["C on_predict_batch_start", "M on_predict_batch_start", "M predict_step"]));
        want.extend(seq(&["C on_predict_batch_end", "M on_predict_batch_end"]));
    }
    want.extend(seq(&["C on_predict_epoch_end", "M on_predict_epoch_end", "C on_predict_end", "M on_predict_end"]));
    want.extend(seq(&["C teardown", "M teardown"]));
    assert_eq!(take(&log), want);
    assert_eq!(want.len(), 37 - 4, "Lightning's 37 records less 4 [m] rows");
}

#[test]
fn zero_limit_runs_only_setup_and_teardown() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let (mut trainer, mut model) = new_run(&log, builder(&dir).limit_val_batches(0).limit_test_batches(0));
    trainer.validate(&mut model, Data::module()).unwrap();
    let mut want = setup();
    want.extend(seq(&["C teardown", "M teardown"]));
    assert_eq!(take(&log), want);
    trainer.test(&mut model, Data::module()).unwrap();
    assert_eq!(take(&log), want);
}

#[test]
fn accumulation_of_two_over_four_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let b = builder(&dir).max_epochs(1).limit_val_batches(0).accumulate_grad_batches(2);
    let (mut trainer, mut model) = new_run(&log, b);
    let out = run_fit(&mut trainer, &mut model).unwrap();

    let mut want = fit_start();
    want.push(m("train_dataloader"));
    want.extend(seq(&["C on_train_start", "M on_train_start", "C on_train_epoch_start", "M on_train_epoch_start"]));
    for window in 0..2 {
        // first batch of the window: closure only, zero-grad, no optimizer step
        want.extend(batch_start());
        want.push(m("training_step"));
        want.extend(zero_grad());
        want.extend(backward());
        want.extend(seq(&["C on_train_batch_end", "M on_train_batch_end"]));
        // second: optimizer_step around the closure, no zero-grad
        want.extend(batch_start());
        want.extend(seq(&["M optimizer_step", "M training_step"]));
        want.extend(backward());
        want.extend(before_step());
        if window == 1 {
            want.push(m("lr_scheduler_step"));
        }
        want.extend(seq(&["C on_train_batch_end", "M on_train_batch_end"]));
    }
    want.extend(seq(&["C on_train_epoch_end", "M on_train_epoch_end"]));
    want.extend(save());
    want.extend(end_of_fit());
    assert_eq!(take(&log), want);
    assert_eq!(out.global_step, 2);
}

#[test]
fn module_skip_signal_at_batch_one_of_three_ends_the_epoch_without_validation() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let b = builder(&dir).max_epochs(1).limit_train_batches(3).limit_val_batches(1).num_sanity_val_steps(0);
    let (mut trainer, mut model) = new_run(&log, b);
    model.skip_at = Some(1);
    let out = run_fit(&mut trainer, &mut model).unwrap();

    let mut want = fit_start();
    want.extend(seq(&["M train_dataloader", "M val_dataloader"]));
    want.extend(seq(&["C on_train_start", "M on_train_start", "C on_train_epoch_start", "M on_train_epoch_start"]));
    want.extend(train_batch(false));
    want.extend(transfer());
    want.extend(seq(&["C on_train_batch_start", "M on_train_batch_start"]));
    want.push(m("lr_scheduler_step")); // epoch schedulers still step (Lightning PR #21307)
    want.extend(seq(&["C on_train_epoch_end", "M on_train_epoch_end"]));
    want.extend(save());
    want.extend(end_of_fit());
    assert_eq!(take(&log), want);
    assert_eq!(out.global_step, 1);
}

#[test]
fn error_in_training_step_runs_only_on_exception() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let b = builder(&dir).max_epochs(1).limit_train_batches(3).limit_val_batches(0);
    let (mut trainer, mut model) = new_run(&log, b);
    model.fail_at = Some(1);
    let err = run_fit(&mut trainer, &mut model).unwrap_err();
    assert!(matches!(err, lightning::Error::Hook { hook: "training_step", .. }), "{err}");
    assert_eq!(err.to_string(), "hook `training_step` failed: planned failure at batch 1");

    let mut want = fit_start();
    want.push(m("train_dataloader"));
    want.extend(seq(&["C on_train_start", "M on_train_start", "C on_train_epoch_start", "M on_train_epoch_start"]));
    want.extend(train_batch(false));
    want.extend(batch_start());
    want.extend(seq(&["M optimizer_step", "M training_step", "C on_exception"]));
    assert_eq!(take(&log), want);
}

#[test]
fn max_steps_one_stops_mid_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let b = builder(&dir).max_steps(1).limit_train_batches(2).limit_val_batches(0);
    let (mut trainer, mut model) = new_run(&log, b);
    let out = run_fit(&mut trainer, &mut model).unwrap();

    let mut want = fit_start();
    want.push(m("train_dataloader"));
    want.extend(seq(&["C on_train_start", "M on_train_start", "C on_train_epoch_start", "M on_train_epoch_start"]));
    want.extend(train_batch(false));
    want.extend(seq(&["C on_train_epoch_end", "M on_train_epoch_end"]));
    want.extend(save());
    want.extend(end_of_fit());
    assert_eq!(take(&log), want);
    assert_eq!(out.global_step, 1);
}

#[test]
fn two_epochs_validating_every_second() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let b = builder(&dir)
        .max_epochs(2)
        .limit_train_batches(1)
        .limit_val_batches(1)
        .num_sanity_val_steps(0)
        .check_val_every_n_epoch(Some(2));
    let (mut trainer, mut model) = new_run(&log, b);
    let out = run_fit(&mut trainer, &mut model).unwrap();

    let mut want = fit_start();
    want.extend(seq(&["M train_dataloader", "M val_dataloader", "C on_train_start", "M on_train_start"]));
    // epoch 0: no validation, and no checkpoint (it saves after validation when n != 1)
    want.extend(seq(&["C on_train_epoch_start", "M on_train_epoch_start"]));
    want.extend(train_batch(true));
    want.extend(seq(&["C on_train_epoch_end", "M on_train_epoch_end"]));
    // epoch 1: validation, saving inside on_validation_end (checkpoints run last among callbacks)
    want.extend(seq(&["C on_train_epoch_start", "M on_train_epoch_start"]));
    want.extend(train_batch(true));
    want.push(m("on_validation_model_zero_grad"));
    let mut val = eval_run("validation", "validation_step", 1);
    let at = val.iter().position(|l| *l == c("on_validation_end")).unwrap() + 1;
    val.splice(at..at, save());
    want.extend(val);
    want.extend(seq(&["C on_train_epoch_end", "M on_train_epoch_end"]));
    want.extend(end_of_fit());
    assert_eq!(take(&log), want);
    assert_eq!((out.global_step, out.current_epoch), (2, 2));
}

#[test]
fn resume_restores_in_lightning_order() {
    // §2.5: train one epoch, then a new trainer with max_epochs=2 resumes from the checkpoint.
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let b = || builder(&dir).limit_train_batches(2).limit_val_batches(0);
    let (mut trainer, mut model) = new_run(&log, b().max_epochs(1));
    let first = run_fit(&mut trainer, &mut model).unwrap();
    let ckpt = first.last_checkpoint.unwrap();
    take(&log);

    let (mut trainer, mut fresh) = new_run(&log, b().max_epochs(2));
    trainer.resume_from(&ckpt);
    let out = run_fit(&mut trainer, &mut fresh).unwrap();
    let mut want = setup();
    want.extend(seq(&["M on_load_checkpoint", "C on_load_checkpoint", "C load_state_dict"]));
    want.extend(seq(&["M configure_optimizers", "C on_fit_start", "M on_fit_start", "M train_dataloader"]));
    want.extend(seq(&["C on_train_start", "M on_train_start", "C on_train_epoch_start", "M on_train_epoch_start"]));
    want.extend(train_batch(false));
    want.extend(train_batch(true));
    want.extend(seq(&["C on_train_epoch_end", "M on_train_epoch_end"]));
    want.extend(save());
    want.extend(end_of_fit());
    assert_eq!(take(&log), want);
    assert_eq!((out.global_step, out.current_epoch), (4, 2));
    assert_eq!(trainer.callbacks().0.loaded, Some(lightning::serde_json::json!({"foo": true})));
    assert!(out.last_checkpoint.unwrap().ends_with("epoch=1-step=4.ckpt"));
    assert!(ckpt.exists(), "the checkpoint resumed from is kept, as Lightning keeps it");
}

#[test]
fn resume_mid_epoch_continues_from_the_next_batch() {
    // §2.5, `_max_steps` variant: saved at global_step 1 mid-epoch; resumes at batch 1.
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let b = || builder(&dir).limit_train_batches(3).limit_val_batches(0);
    let (mut trainer, mut model) = new_run(&log, b().max_steps(1));
    let ckpt = run_fit(&mut trainer, &mut model).unwrap().last_checkpoint.unwrap();
    take(&log);
    let (mut trainer, mut fresh) = new_run(&log, b().max_steps(3));
    trainer.resume_from(&ckpt);
    let out = run_fit(&mut trainer, &mut fresh).unwrap();
    let records = take(&log);
    assert!(!records.contains(&m("on_train_epoch_start")), "no epoch start when resuming mid-epoch");
    assert_eq!(fresh.seen.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(out.global_step, 3);
}

/// Lightning 2.6.6's records with two loaders (`scripts/make_hook_order_multi.py`, ` dl=N`
/// on the hooks given a `dataloader_idx`), plus our `on_batch_begin` after each
/// `on_train_batch_start`.
fn lightning_two_loaders(which: &str) -> Vec<String> {
    let path = format!("{}/tests/fixtures/lightning-hooks-two-loaders/{which}.txt", env!("CARGO_MANIFEST_DIR"));
    let mut want = Vec::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        want.push(line.to_string());
        if line == "[M] on_train_batch_start" {
            want.extend(seq(&["C on_batch_begin", "M on_batch_begin"]));
        }
    }
    want
}

/// Records with ` dl=N` on this thread while `f` runs.
fn with_dl<T>(f: impl FnOnce() -> T) -> T {
    common::RECORD_DL.with(|r| r.set(true));
    let out = f();
    common::RECORD_DL.with(|r| r.set(false));
    out
}

#[test]
fn two_validation_loaders_in_lightnings_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let b = builder(&dir).max_epochs(1).limit_train_batches(2).limit_val_batches(2).num_sanity_val_steps(1);
    let (mut trainer, mut model) = new_run(&log, b.enable_checkpointing(false));
    // two loaders of different types
    let val = (common::data(4), Either::<_, DataLoader>::Left(common::data(4)));
    let out = with_dl(|| trainer.fit(&mut model, Data::loader(common::data(4)).val(val))).unwrap();
    let want = lightning_two_loaders("fit");
    assert_eq!(take(&log), want);
    assert_eq!(want.len(), 132 + 2 * 2, "Lightning's 132 records plus 2×2 on_batch_begin");
    // one epoch mean per loader, under Lightning's names
    assert!(out.metrics.contains_key("val_loss/dataloader_idx_0"), "{:?}", out.metrics);
    assert!(out.metrics.contains_key("val_loss/dataloader_idx_1"), "{:?}", out.metrics);
    assert!(!out.metrics.contains_key("val_loss"), "{:?}", out.metrics);
}

#[test]
fn two_test_and_two_predict_loaders_in_lightnings_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let (mut trainer, mut model) = new_run(&log, builder(&dir).limit_test_batches(2).limit_predict_batches(2));
    let metrics = with_dl(|| trainer.test(&mut model, Data::loaders(vec![common::data(4), common::data(4)]))).unwrap();
    assert_eq!(take(&log), lightning_two_loaders("test"));
    assert_eq!(metrics.keys().collect::<Vec<_>>(), ["test_loss/dataloader_idx_0", "test_loss/dataloader_idx_1"]);

    let preds = with_dl(|| trainer.predict(&mut model, Data::loaders([common::data(4), common::data(4)]))).unwrap();
    assert_eq!(take(&log), lightning_two_loaders("predict"));
    assert_eq!(preds.len(), 4, "two batches of each loader, loader after loader");
}

#[test]
fn reload_dataloaders_every_epoch_in_lightnings_order() {
    // the module's loader hooks again before epoch 1 (train) and its validation (val)
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let b = builder(&dir).max_epochs(2).limit_train_batches(1).limit_val_batches(1).num_sanity_val_steps(1);
    let (mut trainer, mut model) = new_run(&log, b.reload_dataloaders_every_n_epochs(1).enable_checkpointing(false));
    run_fit(&mut trainer, &mut model).unwrap();
    // one loader: Lightning passes `dataloader_idx` to the transfer hooks only
    let want: Vec<String> = lightning_two_loaders("reload").iter().map(|l| l.replace(" dl=0", "")).collect();
    assert_eq!(take(&log), want);
    assert_eq!(want.iter().filter(|l| l.ends_with("_dataloader")).count(), 4);

    // loaders given to `fit` are kept: no hook is asked
    let log = Log::default();
    let b = builder(&dir).max_epochs(2).limit_train_batches(1).limit_val_batches(1);
    let (mut trainer, mut model) = new_run(&log, b.reload_dataloaders_every_n_epochs(1).enable_checkpointing(false));
    trainer.fit(&mut model, Data::loader(common::data(2)).val(common::data(2))).unwrap();
    assert!(!take(&log).iter().any(|l| l.ends_with("_dataloader")));
}
