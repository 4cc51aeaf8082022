//! Manual optimization: the hooks `backward` and `step` fire, Lightning's rules, and the
//! GAN example (two optimizers) itself.

#[path = "../examples/gan.rs"]
#[allow(dead_code)]
mod gan;

use std::cell::RefCell;
use std::rc::Rc;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use clap::Parser;
use lightning::prelude::*;

type Log = Rc<RefCell<Vec<String>>>;

#[lightning_module]
struct Two {
    vars: VarMap,
    a: Var,
    b: Var,
    log: Log,
}

fn two(log: &Log) -> Two {
    let vars = VarMap::new();
    let a = Var::ones((1, 1), DType::F32, &Device::Cpu).unwrap();
    let b = Var::ones((1, 1), DType::F32, &Device::Cpu).unwrap();
    vars.data().lock().unwrap().insert("a".into(), a.clone());
    vars.data().lock().unwrap().insert("b".into(), b.clone());
    Two { vars, a, b, log: log.clone() }
}

#[lightning_module(manual_optimization)]
impl Two {
    #[not_hook]
    fn rec(&self, s: &str) {
        self.log.borrow_mut().push(format!("[M] {s}"));
    }
    fn configure_optimizers(&mut self) -> lightning::Result<[Sgd; 2]> {
        Ok([
            Sgd::new(vec![("a".to_string(), self.a.clone())], 0.1)?,
            Sgd::new(vec![("b".to_string(), self.b.clone())], 0.1)?,
        ])
    }
    fn training_step(
        &mut self,
        batch: &(Tensor, Tensor),
        trainer: &mut TrainerState,
        manual: &mut impl ManualOptimization<Self>,
    ) -> lightning::Result<()> {
        self.rec("training_step");
        let loss = batch.0.matmul(&self.a.as_tensor().matmul(self.b.as_tensor())?)?.sum_all()?;
        manual.zero_grad()?;
        manual.backward(self, trainer, &loss)?;
        manual.step(self, trainer, 1)?; // only b moves
        Ok(())
    }
    fn on_before_backward(&mut self) {
        self.rec("on_before_backward");
    }
    fn backward(&mut self, loss: &Tensor) -> candle_core::Result<candle_core::backprop::GradStore> {
        self.rec("backward");
        loss.backward()
    }
    fn on_after_backward(&mut self) {
        self.rec("on_after_backward");
    }
    fn on_before_optimizer_step(&mut self, optimizer: &mut Sgd) {
        self.rec(&format!("on_before_optimizer_step lr={}", optimizer.learning_rate(0)));
    }
    fn optimizer_step(
        &mut self,
        optimizer: &mut Sgd,
        optimizer_closure: &mut impl OptimizerClosure<Self>,
    ) -> lightning::Result<()> {
        self.rec("optimizer_step");
        optimizer_closure.step(self, optimizer)
    }
    fn on_before_zero_grad(&mut self) {
        self.rec("on_before_zero_grad");
    }
    fn configure_gradient_clipping(&mut self) {
        self.rec("configure_gradient_clipping");
    }
}

struct Cb(Log);

#[callback]
impl Cb {
    fn on_before_backward(&mut self) {
        self.0.borrow_mut().push("[C] on_before_backward".into());
    }
    fn on_after_backward(&mut self) {
        self.0.borrow_mut().push("[C] on_after_backward".into());
    }
    fn on_before_optimizer_step(&mut self) {
        self.0.borrow_mut().push("[C] on_before_optimizer_step".into());
    }
}

fn one_batch() -> DataLoader {
    let x = Tensor::new(&[[1f32]], &Device::Cpu).unwrap();
    DataLoader::new(x.clone(), x, 1).unwrap()
}

fn builder() -> lightning::TrainerBuilder {
    Trainer::builder().accelerator(Accelerator::Cpu).enable_checkpointing(false).max_epochs(1)
}

#[test]
fn manual_steps_fire_backward_and_step_hooks_only() {
    let log = Log::default();
    let mut m = two(&log);
    let out = builder().callbacks((Cb(log.clone()),)).build().unwrap().fit(&mut m, Data::loader(one_batch())).unwrap();
    let want = [
        "[M] training_step",
        "[C] on_before_backward",
        "[M] on_before_backward",
        "[M] backward",
        "[C] on_after_backward",
        "[M] on_after_backward",
        "[C] on_before_optimizer_step",
        "[M] on_before_optimizer_step lr=0.1",
    ];
    assert_eq!(*log.borrow(), want, "no optimizer_step, zero-grad or clipping hooks in manual mode");
    assert_eq!(out.global_step, 1);
    assert_eq!(m.a.as_tensor().to_vec2::<f32>().unwrap(), [[1.0]], "optimizer 0 was not stepped");
    assert_eq!(m.b.as_tensor().to_vec2::<f32>().unwrap(), [[0.9]]);
}

#[test]
fn lightning_rules_for_manual_optimization() {
    let log = Log::default();
    for (b, flag) in [
        (builder().accumulate_grad_batches(2), "accumulate_grad_batches"),
        (builder().gradient_clip_val(1.0), "gradient_clip_val"),
    ] {
        let e = b.build().unwrap().fit(&mut two(&log), Data::loader(one_batch())).unwrap_err();
        assert!(matches!(e, lightning::Error::Config { flag: f, .. } if f == flag), "{e}");
    }

    // several optimizers without manual optimization
    #[lightning_module]
    struct Auto {
        vars: VarMap,
        w: Var,
    }
    #[lightning_module]
    impl Auto {
        fn training_step(&mut self, batch: &(Tensor, Tensor)) -> lightning::Result<Tensor> {
            Ok(batch.0.matmul(self.w.as_tensor())?.sum_all()?)
        }
        fn configure_optimizers(&mut self) -> lightning::Result<[Sgd; 2]> {
            Ok([Sgd::new(vec![self.w.clone()], 0.1)?, Sgd::new(vec![self.w.clone()], 0.1)?])
        }
    }
    let w = Var::ones((1, 1), DType::F32, &Device::Cpu).unwrap();
    let e = builder()
        .build()
        .unwrap()
        .fit(&mut Auto { vars: lightning::var_map([("w", &w)]), w }, Data::loader(one_batch()))
        .unwrap_err();
    assert!(e.to_string().contains("2 optimizers need manual optimization"), "{e}");

    // an automatically optimized module that reaches for `manual` is a compile error:
    // ui-tests/cases/manual_under_automatic.rs
}

#[test]
fn the_gan_example_trains_two_optimizers() {
    let args = gan::Args::parse_from(["gan", "--epochs", "2"]);
    let (g, losses, steps) = gan::run(&args).unwrap();
    assert_eq!(steps, 2 * 2 * (4000 / 64), "two optimizer steps per batch");
    assert_eq!(losses.len(), 2);
    assert!(losses.iter().all(|(d, g)| d.is_finite() && g.is_finite()), "{losses:?}");
    // the generator learned something: its samples are not the untrained generator's
    let fresh = gan::Gan::new(args.seed, &Device::Cpu).unwrap();
    let z = Tensor::ones((1, 32), DType::F32, &Device::Cpu).unwrap();
    let diff = (g.generate(&z).unwrap() - fresh.generate(&z).unwrap()).unwrap().abs().unwrap().mean_all().unwrap();
    assert!(diff.to_scalar::<f32>().unwrap() > 0.01);
}
