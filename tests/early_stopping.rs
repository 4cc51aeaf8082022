//! EarlyStopping: patience, non-finite values, strictness, and seeing what the module logs
//! in `on_train_epoch_end` (it is a monitoring callback, so it runs after the module).

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use lightning::prelude::*;
use lightning::EarlyStopping;

/// Logs `values[epoch]` as `score`, from validation or from `on_train_epoch_end`.
#[lightning_module]
struct Scripted {
    vars: VarMap,
    w: Var,
    values: Vec<f64>,
    in_validation: bool,
}

#[lightning_module]
impl Scripted {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        batch.0.matmul(self.w.as_tensor())?.sum_all()
    }
    fn validation_step(&mut self, trainer: &mut TrainerState) -> lightning::Result<()> {
        if self.in_validation {
            trainer.log("score", self.values[trainer.current_epoch()])?;
        }
        Ok(())
    }
    fn on_train_epoch_end(&mut self, trainer: &mut TrainerState) -> lightning::Result<()> {
        if !self.in_validation {
            trainer.log("score", self.values[trainer.current_epoch()])?;
        }
        Ok(())
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(vec![("w".to_string(), self.w.clone())], 0.01)
    }
}

fn run(
    values: &[f64],
    in_validation: bool,
    es: EarlyStopping,
) -> (lightning::Result<lightning::FitOutcome>, EarlyStopping) {
    run_min(values, in_validation, es, 0)
}

fn run_min(
    values: &[f64],
    in_validation: bool,
    es: EarlyStopping,
    min_epochs: usize,
) -> (lightning::Result<lightning::FitOutcome>, EarlyStopping) {
    let w = Var::zeros((1, 1), DType::F32, &Device::Cpu).unwrap();
    let mut m = Scripted { vars: lightning::var_map([("w", &w)]), w, values: values.to_vec(), in_validation };
    let x = Tensor::ones((2, 1), DType::F32, &Device::Cpu).unwrap();
    let data = || DataLoader::new(x.clone(), x.clone(), 1).unwrap();
    let mut t = Trainer::builder()
        .accelerator(Accelerator::Cpu)
        .enable_checkpointing(false)
        .max_epochs(values.len())
        .num_sanity_val_steps(0)
        .limit_val_batches(if in_validation { 1 } else { 0 })
        .min_epochs(min_epochs)
        .callbacks((es,))
        .build()
        .unwrap();
    let out = t.fit(&mut m, Data::loader(data()).val(data()));
    let es = t.callbacks().0.clone();
    (out, es)
}

#[test]
fn stops_after_patience_checks_without_improvement() {
    let (out, es) = run(&[1.0, 0.9, 0.95, 0.96, 0.97, 0.5, 0.4], true, EarlyStopping::new("score").patience(3));
    assert_eq!(out.unwrap().current_epoch, 5, "epochs 0–4 ran; 2, 3 and 4 did not improve on 0.9");
    assert_eq!(es.stopped_epoch(), Some(4));
    assert_eq!(es.best_score(), Some(0.9));
    assert!(
        es.stopping_reason().unwrap().ends_with("did not improve in the last 3 records. Best score: 0.900."),
        "{:?}",
        es.stopping_reason()
    );

    // min_delta: 0.9 → 0.85 is not enough of an improvement with min_delta 0.1
    let (out, _) = run(&[1.0, 0.85, 0.8, 0.75, 0.7], true, EarlyStopping::new("score").patience(2).min_delta(0.1));
    assert_eq!(out.unwrap().current_epoch, 4);
}

#[test]
fn sees_what_the_module_logs_in_on_train_epoch_end() {
    let es = EarlyStopping::new("score").mode(lightning::callbacks::Mode::Max).patience(1);
    let (out, es) = run(&[0.1, 0.2, 0.2, 0.3], false, es);
    assert_eq!(out.unwrap().current_epoch, 3);
    assert_eq!(es.best_score(), Some(0.2));
}

#[test]
fn non_finite_values_stop_and_a_missing_metric_is_an_error() {
    let (out, es) = run(&[1.0, f64::NAN, 0.5], true, EarlyStopping::new("score"));
    assert_eq!(out.unwrap().current_epoch, 2);
    let reason = es.stopping_reason().unwrap();
    assert!(reason.contains("score = NaN is not finite (epoch 1"), "{reason}");
    assert!(reason.ends_with("Previous best value was 1.000."), "{reason}");

    let (out, _) = run(&[1.0, 0.5], true, EarlyStopping::new("val_los"));
    let e = out.unwrap_err().to_string();
    assert!(e.contains("monitors `val_los`, which was not logged") && e.contains("score"), "{e}");
    let (out, _) = run(&[1.0, 0.5], true, EarlyStopping::new("val_los").strict(false));
    assert_eq!(out.unwrap().current_epoch, 2);

    let (out, es) = run(&[1.0, 0.5, 0.1, 0.05], true, EarlyStopping::new("score").stopping_threshold(0.2));
    assert_eq!(out.unwrap().current_epoch, 3);
    assert!(es.stopping_reason().unwrap().starts_with("Stopping threshold reached"));
}

#[test]
fn min_epochs_defers_the_stop() {
    // patience 1 asks to stop after epoch 1, min_epochs 4 keeps training to 4 epochs
    let values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let (out, _) = run_min(&values, true, EarlyStopping::new("score").patience(1), 4);
    assert_eq!(out.unwrap().current_epoch, 4);
    let (out, _) = run_min(&values, true, EarlyStopping::new("score").patience(1), 0);
    assert_eq!(out.unwrap().current_epoch, 2);
}

/// One `Mode` for callbacks and schedulers: both paths name the same type.
#[test]
fn callbacks_and_schedulers_share_one_mode() {
    let mode: lightning::callbacks::Mode = lightning::optim::Mode::Max;
    let _ = EarlyStopping::new("val_acc").mode(mode);
    assert_eq!(std::any::TypeId::of::<lightning::callbacks::Mode>(), std::any::TypeId::of::<lightning::optim::Mode>());
}

/// With no validation batch, a monitor logged in `validation_step` is missing: the message
/// names that cause (an empty or zero-limited validation loader), not only the symptom.
#[test]
fn a_monitor_missing_because_no_validation_ran_says_so() {
    let w = Var::zeros((1, 1), DType::F32, &Device::Cpu).unwrap();
    let mut m = Scripted { vars: lightning::var_map([("w", &w)]), w, values: vec![1.0], in_validation: true };
    let x = Tensor::ones((2, 1), DType::F32, &Device::Cpu).unwrap();
    let data = || DataLoader::new(x.clone(), x.clone(), 1).unwrap();
    let mut t = Trainer::builder()
        .accelerator(Accelerator::Cpu)
        .enable_checkpointing(false)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .max_epochs(1)
        .num_sanity_val_steps(0)
        .limit_val_batches(0)
        .callbacks((EarlyStopping::new("score"),))
        .build()
        .unwrap();
    let e = t.fit(&mut m, Data::loader(data()).val(data())).unwrap_err().to_string();
    assert!(
        e.contains("`score`, which was not logged")
            && e.contains("; no validation batch ran: the validation loader is empty")
            && e.contains("nothing `validation_step` logs exists"),
        "{e}"
    );
}
