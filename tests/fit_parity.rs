//! Lightning parity of `fit` and the entry points: why fit stopped (`FitOutcome::stopped`),
//! runs that train nothing, non-scalar losses, `estimated_stepping_batches`, and
//! `ckpt_path="best"` / `"last"`.

mod rank_zero;
use rank_zero::RankZeroOfTwo;

use std::time::Duration;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use lightning::callbacks::Mode;
use lightning::data::StreamLoader;
use lightning::prelude::*;
use lightning::{CkptPath, EarlyStopping, Error, StopReason};

/// y = 2x, `n` one-sample batches.
fn line(n: usize) -> DataLoader {
    let x = Tensor::arange(1f32, (n + 1) as f32, &Device::Cpu).unwrap().reshape((n, 1)).unwrap();
    DataLoader::new(x.clone(), (&x * 2.0).unwrap(), 1).unwrap()
}

/// `n` batches of 2 samples.
fn pairs(n: usize) -> DataLoader {
    let x = Tensor::arange(1f32, (2 * n + 1) as f32, &Device::Cpu).unwrap().reshape((2 * n, 1)).unwrap();
    DataLoader::new(x.clone(), (&x * 2.0).unwrap(), 2).unwrap()
}

fn quiet() -> lightning::TrainerBuilder {
    Trainer::builder()
        .accelerator(Accelerator::Cpu)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .enable_logger(false)
        .enable_checkpointing(false)
}

/// One weight; `training_step` returns the per-sample loss when `per_sample` is set, and
/// `configure_optimizers` records what the trainer knows then.
#[lightning_module]
struct Lin {
    vars: VarMap,
    w: Var,
    per_sample: bool,
    stop_at: Option<usize>,
    estimate: Option<Result<usize, String>>,
    batches_seen_in_configure: usize,
}

fn lin() -> Lin {
    let vars = VarMap::new();
    let w = Var::zeros((1, 1), DType::F32, &Device::Cpu).unwrap();
    vars.data().lock().unwrap().insert("w".into(), w.clone());
    Lin { vars, w, per_sample: false, stop_at: None, estimate: None, batches_seen_in_configure: 0 }
}

#[lightning_module]
impl Lin {
    fn training_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        let err = batch.0.matmul(self.w.as_tensor())?.sub(&batch.1)?.sqr()?;
        if self.stop_at == Some(trainer.global_step()) {
            trainer.request_stop();
        }
        trainer.log("val_loss", 1.0)?;
        Ok(if self.per_sample { err.flatten_all()? } else { err.mean_all()? })
    }
    fn validation_step(&mut self, trainer: &mut TrainerState) -> lightning::Result<()> {
        // a score that improves every epoch, so each epoch's checkpoint is the new best
        trainer.log("score", trainer.current_epoch() as f64)?;
        Ok(())
    }
    fn test_step(&mut self, trainer: &mut TrainerState) -> lightning::Result<()> {
        trainer.log("w", self.w.as_tensor().flatten_all()?.to_vec1::<f32>()?[0] as f64)?;
        Ok(())
    }
    fn configure_optimizers(&mut self, trainer: &mut TrainerState) -> lightning::Result<Sgd> {
        self.estimate = Some(trainer.estimated_stepping_batches().map_err(|e| e.to_string()));
        self.batches_seen_in_configure = trainer.num_training_batches();
        Sgd::new(vec![self.w.clone()], 0.01)
    }
}

#[test]
fn fit_says_why_it_stopped() {
    let out = quiet().max_epochs(2).build().unwrap().fit(&mut lin(), Data::loader(line(3))).unwrap();
    assert_eq!(out.stopped, StopReason::MaxEpochs(2));
    assert_eq!(out.stopped.to_string(), "`Trainer.fit` stopped: `max_epochs=2` reached.");

    let out = quiet().max_steps(4).build().unwrap().fit(&mut lin(), Data::loader(line(3))).unwrap();
    assert_eq!(out.stopped, StopReason::MaxSteps(4));

    let mut m = lin();
    m.stop_at = Some(1);
    let out = quiet().max_epochs(5).build().unwrap().fit(&mut m, Data::loader(line(3))).unwrap();
    assert_eq!(out.stopped, StopReason::ShouldStop(None));
    assert_eq!(out.stopped.to_string(), "`Trainer.fit` stopped: `trainer.should_stop` was set.");

    let t = quiet().max_epochs(1000).max_time(Duration::ZERO).build();
    let out = t.unwrap().fit(&mut lin(), Data::loader(line(3))).unwrap();
    assert_eq!(out.stopped, StopReason::MaxTime(Duration::ZERO));
    assert_eq!(out.global_step, 1);
}

#[test]
fn early_stopping_gives_its_reason() {
    let es = EarlyStopping::new("val_loss").patience(1);
    let mut t = quiet().max_epochs(10).callbacks((es,)).build().unwrap();
    let out = t.fit(&mut lin(), Data::loader(line(2))).unwrap();
    let StopReason::ShouldStop(Some(why)) = &out.stopped else { panic!("{:?}", out.stopped) };
    assert_eq!(Some(why.as_str()), t.callbacks().0.stopping_reason());
    assert!(why.contains("did not improve"), "{why}");
}

#[test]
fn runs_that_train_nothing_say_so() {
    let mut t = quiet().max_epochs(3).limit_train_batches(0).build().unwrap();
    let out = t.fit(&mut lin(), Data::loader(line(3))).unwrap();
    assert_eq!((out.stopped, out.global_step), (StopReason::NoTrainingBatches, 0));

    let out = quiet().max_epochs(0).build().unwrap().fit(&mut lin(), Data::loader(line(3))).unwrap();
    assert_eq!((out.stopped, out.global_step), (StopReason::MaxEpochs(0), 0));
}

#[test]
fn resuming_past_max_epochs_trains_nothing_and_says_so_and_a_larger_max_epochs_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let ck = || ModelCheckpoint::new().save_last(true);
    let builder = || quiet().default_root_dir(root).enable_checkpointing(true).checkpoint(ck());
    let first = builder().max_epochs(2).build().unwrap().fit(&mut lin(), Data::loader(line(3))).unwrap();
    assert_eq!(first.global_step, 6);

    let mut again = builder().max_epochs(2).build().unwrap();
    let out = again.ckpt_path("last").fit(&mut lin(), Data::loader(line(3))).unwrap();
    assert_eq!((out.stopped, out.global_step), (StopReason::MaxEpochs(2), 6));

    let mut more = builder().max_epochs(4).build().unwrap();
    let out = more.ckpt_path(CkptPath::Last).fit(&mut lin(), Data::loader(line(3))).unwrap();
    assert_eq!((out.stopped, out.global_step, out.current_epoch), (StopReason::MaxEpochs(4), 12, 4));
}

/// The error under any hook names that wrap it.
fn root_cause(e: &Error) -> &Error {
    match e {
        Error::Hook { source, .. } => root_cause(source),
        e => e,
    }
}

#[test]
fn a_non_scalar_loss_is_an_error_naming_its_shape() {
    let mut m = lin();
    m.per_sample = true;
    let w0 = m.w.as_tensor().to_vec2::<f32>().unwrap();
    let e = quiet().max_epochs(1).build().unwrap().fit(&mut m, Data::loader(pairs(2))).unwrap_err();
    let Error::NonScalarLoss { shape, .. } = root_cause(&e) else { panic!("{e}") };
    assert_eq!(shape, &[2]);
    assert!(e.to_string().contains("scalar outputs"), "{e}");
    // nothing was trained
    assert_eq!(m.w.as_tensor().to_vec2::<f32>().unwrap(), w0);
}

#[lightning_module]
struct ManualLin {
    vars: VarMap,
    w: Var,
}

#[lightning_module(manual_optimization)]
impl ManualLin {
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(vec![self.w.clone()], 0.1)
    }
    fn training_step(
        &mut self,
        batch: &(Tensor, Tensor),
        trainer: &mut TrainerState,
        manual: &mut impl ManualOptimization<Self>,
    ) -> lightning::Result<()> {
        let per_sample = batch.0.matmul(self.w.as_tensor())?.sub(&batch.1)?.sqr()?;
        manual.backward(self, trainer, &per_sample)?;
        manual.step(self, trainer, 0)
    }
}

#[test]
fn a_non_scalar_manual_backward_is_an_error_naming_its_shape() {
    let w = Var::zeros((1, 1), DType::F32, &Device::Cpu).unwrap();
    let mut m = ManualLin { vars: lightning::var_map([("w", &w)]), w };
    let e = quiet().max_epochs(1).build().unwrap().fit(&mut m, Data::loader(pairs(2))).unwrap_err();
    let Error::NonScalarLoss { shape, from } = root_cause(&e) else { panic!("{e}") };
    assert_eq!((shape.as_slice(), *from), (&[2, 1][..], "passed to `manual_backward`"));
}

#[test]
fn estimated_stepping_batches_is_known_in_configure_optimizers() {
    let run = |b: lightning::TrainerBuilder, n: usize| {
        let mut m = lin();
        b.build().unwrap().fit(&mut m, Data::loader(line(n))).unwrap();
        (m.estimate.unwrap(), m.batches_seen_in_configure)
    };
    assert_eq!(run(quiet().max_epochs(3), 10), (Ok(30), 10));
    // limit_train_batches and accumulation (Lightning: ceil(4 / 3) = 2 steps an epoch)
    assert_eq!(run(quiet().max_epochs(3).limit_train_batches(4).accumulate_grad_batches(3), 10), (Ok(6), 4));
    assert_eq!(run(quiet().max_epochs(3).max_steps(7), 10), (Ok(7), 10));
    assert_eq!(run(quiet().max_steps(7), 10).0, Ok(7));
}

#[test]
fn estimated_stepping_batches_says_why_it_is_unknown() {
    let stream = || {
        let sample = |i: u32| -> lightning::Result<(Tensor, Tensor)> {
            let x = Tensor::new(&[i as f32], &Device::Cpu)?;
            Ok((x.clone(), (x * 2.0)?))
        };
        StreamLoader::new(move |_epoch| (0..4u32).map(sample), 1).unwrap()
    };
    let mut m = lin();
    quiet().max_epochs(2).build().unwrap().fit(&mut m, Data::loader(stream())).unwrap();
    let e = m.estimate.unwrap().unwrap_err();
    assert!(e.contains("estimated_stepping_batches") && e.contains("length is unknown"), "{e}");
    // a stream bounded by limit_train_batches is known
    let mut m = lin();
    quiet().max_epochs(2).limit_train_batches(3).build().unwrap().fit(&mut m, Data::loader(stream())).unwrap();
    assert_eq!(m.estimate.unwrap(), Ok(6));
}

#[test]
fn ckpt_path_best_and_last_for_test_and_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ck = ModelCheckpoint::new().monitor("score").mode(Mode::Max).save_last(true).save_top_k(1);
    let mut t =
        quiet().default_root_dir(dir.path()).enable_checkpointing(true).checkpoint(ck).max_epochs(3).build().unwrap();
    let e = t.ckpt_path("best").test(&mut lin(), Data::loader(line(1))).unwrap_err();
    assert!(e.to_string().contains("ModelCheckpoint has saved no checkpoint yet"), "{e}");

    let mut m = lin();
    t.fit(&mut m, Data::loader(line(3)).val(line(1))).unwrap();
    let best = t.checkpoint_callback().unwrap().best_model_path().unwrap().to_path_buf();
    assert!(best.ends_with("epoch=2-step=9.ckpt"), "{best:?}");
    let trained = m.w.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()[0] as f64;
    // a fresh module tests with the best weights
    let metrics = t.ckpt_path("best").test(&mut lin(), Data::loader(line(1))).unwrap();
    assert_eq!(metrics["w"], trained);
    let metrics = t.ckpt_path("last").test(&mut lin(), Data::loader(line(1))).unwrap();
    assert_eq!(metrics["w"], trained);
    // without one, the module's own weights
    assert_eq!(t.test(&mut lin(), Data::loader(line(1))).unwrap()["w"], 0.0);

    let mut off = quiet().build().unwrap();
    let e = off.ckpt_path(CkptPath::Best).validate(&mut lin(), Data::loader(line(1))).unwrap_err();
    assert!(e.to_string().contains("checkpointing is off"), "{e}");
    let e = quiet()
        .default_root_dir(dir.path().join("none"))
        .build()
        .unwrap()
        .ckpt_path("last")
        .test(&mut lin(), Data::loader(line(1)));
    assert!(e.unwrap_err().to_string().contains("no last.ckpt under"));
}

#[test]
fn estimated_stepping_batches_counts_a_ranks_share_of_the_loader() {
    // 10 batches over 2 ranks: 5 a rank, × 3 epochs (Lightning's num_training_batches is per rank)
    let mut m = lin();
    let b = quiet().ddp(std::sync::Arc::new(RankZeroOfTwo)).max_epochs(3);
    b.build().unwrap().fit(&mut m, Data::loader(line(10))).unwrap();
    assert_eq!((m.estimate.unwrap(), m.batches_seen_in_configure), (Ok(15), 5));
}

/// A module with its own `train_dataloader`, whose `configure_optimizers` sizes a OneCycleLR
/// by the estimate; it records the order of the two hooks.
#[lightning_module]
struct OwnLoader {
    vars: VarMap,
    w: Var,
    order: Vec<&'static str>,
}

#[lightning_module]
impl OwnLoader {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> lightning::Result<Tensor> {
        Ok(batch.0.matmul(self.w.as_tensor())?.sub(&batch.1)?.sqr()?.mean_all()?)
    }
    fn train_dataloader(&mut self) -> lightning::Result<DataLoader> {
        self.order.push("train_dataloader");
        Ok(line(8))
    }
    fn configure_optimizers(
        &mut self,
        trainer: &mut TrainerState,
    ) -> lightning::Result<(Sgd, OneCycleLr, SchedulerConfig)> {
        self.order.push("configure_optimizers");
        let total = trainer.estimated_stepping_batches()?;
        Ok((Sgd::new(vec![self.w.clone()], 0.1)?, OneCycleLr::new(0.1, total), SchedulerConfig::every_step()))
    }
}

#[test]
fn estimated_stepping_batches_fetches_a_train_dataloader_first_when_configure_optimizers_reads_it() {
    let w = Var::zeros((1, 1), DType::F32, &Device::Cpu).unwrap();
    let mut m = OwnLoader { vars: lightning::var_map([("w", &w)]), w, order: vec![] };
    let out = quiet().max_epochs(2).limit_train_batches(6).build().unwrap().fit(&mut m, Data::module()).unwrap();
    // once, before configure_optimizers, as Lightning does when the property is read there
    assert_eq!(m.order, ["train_dataloader", "configure_optimizers"]);
    assert_eq!(out.global_step, 12);
}
