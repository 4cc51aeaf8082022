//! Trainer behaviours beyond the hook order: batch threading, callback order, the
//! closure contract, accumulation arithmetic, clipping, flags and their errors.

use std::cell::RefCell;
use std::rc::Rc;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Linear, Module, VarBuilder, VarMap};
use lightning::prelude::*;
use lightning::{CallbackList, Error};

type Log = Rc<RefCell<Vec<String>>>;

fn line(n: usize) -> DataLoader {
    // y = 2x, one feature
    let x = Tensor::arange(1f32, (n + 1) as f32, &Device::Cpu).unwrap().reshape((n, 1)).unwrap();
    let y = (&x * 2.0).unwrap();
    DataLoader::new(x, y, 1).unwrap()
}

fn cpu() -> lightning::TrainerBuilder {
    Trainer::builder().accelerator(Accelerator::Cpu).enable_checkpointing(false).limit_val_batches(0)
}

/// One weight, no bias: w starts at 0.
#[lightning_module]
struct Scalar {
    vars: VarMap,
    w: Var,
    log: Log,
    seen: Vec<f32>,
    clip_seen: Vec<f64>,
    skip_closure: bool,
    no_loss: bool,
    lr: f64,
}

fn scalar(log: &Log) -> Scalar {
    let vars = VarMap::new();
    let w = Var::zeros((1, 1), DType::F32, &Device::Cpu).unwrap();
    vars.data().lock().unwrap().insert("w".into(), w.clone());
    Scalar { vars, w, log: log.clone(), seen: vec![], clip_seen: vec![], skip_closure: false, no_loss: false, lr: 0.01 }
}

#[lightning_module]
impl Scalar {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> lightning::Result<Option<Tensor>> {
        self.seen.push(batch.0.flatten_all()?.to_vec1::<f32>()?[0]);
        if self.no_loss {
            return Ok(None);
        }
        let pred = batch.0.matmul(self.w.as_tensor())?;
        Ok(Some(pred.sub(&batch.1)?.sqr()?.mean_all()?))
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(vec![self.w.clone()], self.lr)
    }
    #[hook(on_batch_begin)]
    fn add_hundred(&mut self, batch: (Tensor, Tensor)) -> candle_core::Result<(Tensor, Tensor)> {
        self.log.borrow_mut().push("module on_batch_begin".into());
        Ok(((batch.0 + 100.0)?, batch.1))
    }
    fn optimizer_step(
        &mut self,
        optimizer: &mut Sgd,
        optimizer_closure: &mut impl OptimizerClosure<Self>,
    ) -> lightning::Result<()> {
        if self.skip_closure {
            return Ok(());
        }
        optimizer_closure.step(self, optimizer)
    }
    fn on_before_optimizer_step(&mut self, grads: &Gradients) -> lightning::Result<()> {
        self.clip_seen.push(grads.norm()?);
        Ok(())
    }
}

struct Tag {
    name: &'static str,
    log: Log,
}

#[callback]
impl Tag {
    fn on_batch_begin(&mut self, batch: (Tensor, Tensor), batch_idx: usize) -> candle_core::Result<(Tensor, Tensor)> {
        self.log.borrow_mut().push(format!("{} on_batch_begin {batch_idx}", self.name));
        Ok(((batch.0 * 10.0)?, batch.1))
    }
    fn on_train_epoch_end(&mut self, module: &mut Scalar) {
        self.log.borrow_mut().push(format!("{} on_train_epoch_end (module saw {})", self.name, module.seen.len()));
    }
}

struct Monitor(Log);

#[callback(monitoring)]
impl Monitor {
    fn on_train_epoch_end(&mut self) {
        self.0.borrow_mut().push("monitor on_train_epoch_end".into());
    }
}

#[test]
fn on_batch_begin_threads_the_batch_through_callbacks_then_module() {
    let log = Log::default();
    let mut model = scalar(&log);
    let cbs = (Tag { name: "a", log: log.clone() }, Tag { name: "b", log: log.clone() });
    let mut trainer = cpu().max_epochs(1).limit_train_batches(2).callbacks(cbs).build().unwrap();
    trainer.fit(&mut model, Data::loader(line(4))).unwrap();
    // x=1: a → 10, b → 100, module → 200; x=2: 20 → 200 → 300
    assert_eq!(model.seen, [200.0, 300.0]);
    let l = log.borrow();
    assert_eq!(l[..3], ["a on_batch_begin 0", "b on_batch_begin 0", "module on_batch_begin"]);
    assert_eq!(l[6..], ["a on_train_epoch_end (module saw 2)", "b on_train_epoch_end (module saw 2)"]);
}

#[test]
fn monitoring_callbacks_run_after_the_module_in_train_epoch_end() {
    #[lightning_module]
    struct Logs {
        vars: VarMap,
        w: Var,
        log: Log,
    }
    #[lightning_module]
    impl Logs {
        fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
            batch.0.matmul(self.w.as_tensor())?.sub(&batch.1)?.sqr()?.mean_all()
        }
        fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
            Sgd::new(vec![self.w.clone()], 0.01)
        }
        fn on_train_epoch_end(&mut self) {
            self.log.borrow_mut().push("module on_train_epoch_end".into());
        }
    }
    struct Plain(Log);
    #[callback]
    impl Plain {
        fn on_train_epoch_end(&mut self) {
            self.0.borrow_mut().push("plain on_train_epoch_end".into());
        }
    }
    let log = Log::default();
    let w = Var::zeros((1, 1), DType::F32, &Device::Cpu).unwrap();
    let mut model = Logs { vars: lightning::var_map([("w", &w)]), w, log: log.clone() };
    // the monitoring callback is listed first, and still runs last
    let mut trainer = cpu().max_epochs(1).callbacks((Monitor(log.clone()), Plain(log.clone()))).build().unwrap();
    trainer.fit(&mut model, Data::loader(line(2))).unwrap();
    assert_eq!(*log.borrow(), ["plain on_train_epoch_end", "module on_train_epoch_end", "monitor on_train_epoch_end"]);
}

#[test]
fn optimizer_step_that_skips_its_closure_is_an_error() {
    let log = Log::default();
    let mut model = scalar(&log);
    model.skip_closure = true;
    let mut trainer = cpu().max_epochs(1).build().unwrap();
    let err = trainer.fit(&mut model, Data::loader(line(2))).unwrap_err();
    assert!(matches!(err, Error::ClosureNotCalled), "{err}");
    assert!(model.seen.is_empty());
}

#[test]
fn training_step_returning_none_skips_backward_but_counts_the_step() {
    let log = Log::default();
    let mut model = scalar(&log);
    model.no_loss = true;
    let mut trainer = cpu().max_epochs(1).build().unwrap();
    let out = trainer.fit(&mut model, Data::loader(line(3))).unwrap();
    assert_eq!(out.global_step, 3);
    assert_eq!(model.w.as_tensor().to_vec2::<f32>().unwrap(), [[0.0]], "no gradient, no update");
}

#[test]
fn accumulation_divides_the_loss_and_sums_gradients() {
    // One SGD step over a window of 2 equals one step on the mean of the two losses.
    let log = Log::default();
    let run = |k: usize, batch: usize| {
        let mut model = scalar(&log);
        let x = Tensor::new(&[[1f32], [3.]], &Device::Cpu).unwrap();
        let y = Tensor::new(&[[2f32], [4.]], &Device::Cpu).unwrap();
        let data = DataLoader::new(x, y, batch).unwrap();
        let mut trainer = cpu().max_epochs(1).accumulate_grad_batches(k).build().unwrap();
        // the module adds 100 in on_batch_begin, so x is 101 and 103
        let out = trainer.fit(&mut model, Data::loader(data)).unwrap();
        (out.global_step, model.w.as_tensor().to_vec2::<f32>().unwrap()[0][0])
    };
    let (steps_acc, w_acc) = run(2, 1);
    let (steps_full, w_full) = run(1, 2);
    assert_eq!((steps_acc, steps_full), (1, 1));
    // d/dw mean((x w - y)^2) at w=0 = mean(-2 x y) = -(2*101*2 + 2*103*4)/2 = -614
    assert!((w_full - 6.14).abs() < 1e-4, "{w_full}");
    assert!((w_acc - w_full).abs() < 1e-4, "{w_acc} vs {w_full}");
}

#[test]
fn gradient_clipping_by_norm_and_value() {
    let log = Log::default();
    for (algo, val, want) in [(GradientClipAlgorithm::Norm, 1.0f64, 1.0f32), (GradientClipAlgorithm::Value, 0.5, 0.5)] {
        let mut model = scalar(&log);
        model.lr = 1.0;
        let mut trainer = cpu()
            .max_epochs(1)
            .limit_train_batches(1)
            .gradient_clip_val(val)
            .gradient_clip_algorithm(algo)
            .build()
            .unwrap();
        trainer.fit(&mut model, Data::loader(line(1))).unwrap();
        // gradient before clipping: 2 * 101 * (0 - 2) = -404; after: -1 (norm) / -0.5 (value); lr 1
        assert!((model.clip_seen[0] - 404.0).abs() < 1e-3, "{:?}", model.clip_seen);
        let w = model.w.as_tensor().to_vec2::<f32>().unwrap()[0][0];
        assert!((w - want).abs() < 1e-5, "{algo:?}: {w}");
    }
}

#[test]
fn sgd_trains_a_line() {
    let log = Log::default();
    let mut model = scalar(&log);
    model.lr = 1e-5;
    let mut trainer = cpu().max_epochs(40).build().unwrap();
    let x = Tensor::new(&[[1f32], [2.], [3.], [4.]], &Device::Cpu).unwrap();
    let full_batch = DataLoader::new(x.clone(), (x * 2.0).unwrap(), 4).unwrap();
    trainer.fit(&mut model, Data::loader(full_batch)).unwrap();
    let w = model.w.as_tensor().to_vec2::<f32>().unwrap()[0][0];
    // inputs are x + 100, targets 2x: least squares w = Σ(x+100)2x / Σ(x+100)² = 2060 / 42030
    assert!((w - 2060.0 / 42030.0).abs() < 1e-4, "{w}");
}

#[test]
fn invalid_flags_are_typed_errors() {
    let cases: Vec<(lightning::TrainerBuilder, &str)> = vec![
        (Trainer::builder().limit_train_batches(1.5), "limit_train_batches"),
        (Trainer::builder().limit_val_batches(-1), "limit_val_batches"),
        (Trainer::builder().accumulate_grad_batches(0), "accumulate_grad_batches"),
        (Trainer::builder().check_val_every_n_epoch(Some(0)), "check_val_every_n_epoch"),
        (Trainer::builder().check_val_every_n_epoch(None), "val_check_interval"),
        (Trainer::builder().gradient_clip_val(f64::NAN), "gradient_clip_val"),
        (Trainer::builder().val_check_interval(0), "val_check_interval"),
    ];
    for (b, flag) in cases {
        match b.accelerator(Accelerator::Cpu).build() {
            Err(Error::Config { flag: f, .. }) => assert_eq!(f, flag),
            other => panic!("{flag}: {other:?}"),
        }
    }
    let log = Log::default();
    let mut model = scalar(&log);
    let mut trainer = cpu().limit_train_batches(0.1).build().unwrap();
    let err = trainer.fit(&mut model, Data::loader(line(4))).unwrap_err();
    assert!(err.to_string().contains("less than one batch"), "{err}");
}

#[test]
fn duplicate_state_keys_are_refused() {
    struct S;
    #[callback(state_key = "same")]
    impl S {
        fn state_dict(&mut self) -> lightning::serde_json::Value {
            lightning::serde_json::json!(1)
        }
    }
    let log = Log::default();
    let mut model = scalar(&log);
    let mut trainer = cpu().callbacks((S, S)).build().unwrap();
    let err = trainer.fit(&mut model, Data::loader(line(2))).unwrap_err();
    assert!(matches!(err, Error::DuplicateStateKey("same")), "{err}");
}

#[test]
fn unimplemented_hooks_are_known_at_compile_time() {
    // What the loops test to skip a hook and its arguments: checked by the compiler.
    const {
        assert!(<Scalar as LightningModule>::IMPL_TRAINING_STEP);
        assert!(!<Scalar as LightningModule>::IMPL_ON_TRAIN_BATCH_END);
        assert!(<Scalar as LightningModule>::IMPL_ON_BATCH_BEGIN);
        assert!(!<() as CallbackList<Scalar>>::IMPL_ON_TRAIN_BATCH_END);
        assert!(<(Tag,) as CallbackList<Scalar>>::IMPL_ON_BATCH_BEGIN);
        assert!(!<(Tag, Monitor) as CallbackList<Scalar>>::IMPL_ON_TRAIN_BATCH_START);
    }
}

#[test]
fn a_hook_may_take_its_arguments_in_any_order_and_the_trainer() {
    #[lightning_module]
    struct M2 {
        vars: VarMap,
        layer: Linear,
        ends: Vec<(usize, bool, usize)>,
    }
    #[lightning_module]
    impl M2 {
        fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
            self.layer.forward(&batch.0)?.sub(&batch.1)?.sqr()?.mean_all()
        }
        fn configure_optimizers(&mut self) -> lightning::Result<AdamW> {
            AdamW::with_lr(&self.vars, 0.01)
        }
        #[hook(on_train_batch_end)]
        fn remember(&mut self, batch_idx: usize, outputs: &StepOutput, trainer: &TrainerState) {
            self.ends.push((batch_idx, outputs.loss.is_some(), trainer.global_step()));
        }
    }
    let vars = VarMap::new();
    let layer = candle_nn::linear(1, 1, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu)).unwrap();
    let mut model = M2 { vars, layer, ends: vec![] };
    let mut trainer = cpu().max_epochs(1).build().unwrap();
    trainer.fit(&mut model, Data::loader(line(3))).unwrap();
    assert_eq!(model.ends, [(0, true, 1), (1, true, 2), (2, true, 3)]);
}

/// A two-layer f64 network for exact comparisons.
#[lightning_module]
struct Deep {
    vars: VarMap,
    l1: Linear,
    l2: Linear,
}

#[lightning_module]
impl Deep {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        self.l2.forward(&self.l1.forward(&batch.0)?.tanh()?)?.sub(&batch.1)?.sqr()?.mean_all()
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::with_config(&self.vars, SgdConfig { lr: 0.1, momentum: 0.9, ..Default::default() })
    }
}

fn deep() -> Deep {
    let vars = VarMap::new();
    let vb = lightning::seeded_var_builder(&vars, 11, DType::F64, &Device::Cpu);
    Deep { l1: candle_nn::linear(3, 5, vb.pp("l1")).unwrap(), l2: candle_nn::linear(5, 1, vb.pp("l2")).unwrap(), vars }
}

fn weights(d: &Deep) -> Vec<f64> {
    let mut named: Vec<_> = d.vars.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named.iter().flat_map(|(_, v)| v.flatten_all().unwrap().to_vec1::<f64>().unwrap()).collect()
}

#[test]
fn accumulating_k_batches_equals_one_k_times_larger_batch() {
    let x = Tensor::arange(0f64, 48., &Device::Cpu).unwrap().reshape((16, 3)).unwrap();
    let x = (x / 48.0).unwrap();
    let y = x.sum_keepdim(1).unwrap().cos().unwrap();
    let run = |k: usize, batch: usize| {
        let mut m = deep();
        let mut t = cpu().max_epochs(3).accumulate_grad_batches(k).build().unwrap();
        let out = t.fit(&mut m, Data::loader(DataLoader::new(x.clone(), y.clone(), batch).unwrap())).unwrap();
        (out.global_step, weights(&m))
    };
    let (steps_a, acc) = run(4, 2);
    let (steps_b, big) = run(1, 8);
    assert_eq!((steps_a, steps_b), (6, 6));
    for (a, b) in acc.iter().zip(&big) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
}

#[test]
fn clipping_matches_torch_worked_numbers() {
    // grads (3, 4) and (12,): total L2 norm 13; torch clip_grad_norm_(max 6.5) scales by
    // 6.5 / (13 + 1e-6); clip_grad_value_(2) clamps each element to [-2, 2].
    let a = Var::zeros(2, DType::F64, &Device::Cpu).unwrap();
    let b = Var::zeros(1, DType::F64, &Device::Cpu).unwrap();
    let fresh = || {
        let mut g = Gradients::new(vec![a.clone(), b.clone()]);
        g.set(a.as_tensor(), Tensor::new(&[3f64, 4.], &Device::Cpu).unwrap());
        g.set(b.as_tensor(), Tensor::new(&[12f64], &Device::Cpu).unwrap());
        g
    };
    let mut g = fresh();
    assert_eq!(g.norm().unwrap(), 13.0);
    g.clip(Some(6.5), GradientClipAlgorithm::Norm).unwrap();
    let coef = 6.5 / (13.0 + 1e-6);
    assert_eq!(g.get(a.as_tensor()).unwrap().to_vec1::<f64>().unwrap(), [3.0 * coef, 4.0 * coef]);
    assert_eq!(g.get(b.as_tensor()).unwrap().to_vec1::<f64>().unwrap(), [12.0 * coef]);
    let mut g = fresh();
    g.clip(Some(20.0), GradientClipAlgorithm::Norm).unwrap();
    assert_eq!(g.get(b.as_tensor()).unwrap().to_vec1::<f64>().unwrap(), [12.0], "under the limit: untouched");
    let mut g = fresh();
    g.clip(Some(2.0), GradientClipAlgorithm::Value).unwrap();
    assert_eq!(g.get(a.as_tensor()).unwrap().to_vec1::<f64>().unwrap(), [2.0, 2.0]);
    assert_eq!(g.get(b.as_tensor()).unwrap().to_vec1::<f64>().unwrap(), [2.0]);
}

#[test]
fn gradient_accumulation_scheduler_changes_the_factor_by_epoch() {
    let log = Log::default();
    let mut model = scalar(&log);
    let sched = lightning::GradientAccumulationScheduler::new([(0, 4), (1, 2), (2, 1)]).unwrap();
    assert_eq!((sched.factor(0), sched.factor(1), sched.factor(5)), (4, 2, 1));
    let mut trainer = cpu().max_epochs(3).callbacks((sched,)).build().unwrap();
    let out = trainer.fit(&mut model, Data::loader(line(4))).unwrap();
    assert_eq!(out.global_step, 1 + 2 + 4, "4 batches per epoch, in windows of 4, 2, then 1");

    let both = lightning::GradientAccumulationScheduler::new([(0, 2)]).unwrap();
    let mut trainer = cpu().max_epochs(1).accumulate_grad_batches(2).callbacks((both,)).build().unwrap();
    let e = trainer.fit(&mut scalar(&log), Data::loader(line(4))).unwrap_err();
    assert!(matches!(e, Error::Hook { .. }) && e.to_string().contains("keep one of them"), "{e}");
    assert!(lightning::GradientAccumulationScheduler::new([(0, 0)]).is_err());
}
