//! LR schedulers against torch 2.15 (the fixture's learning rate before each of the first
//! 30 steps, to 1e-12), and their use by the trainer: interval, frequency, monitor, groups.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use lightning::optim::*;
use lightning::prelude::*;
use lightning::serde_json::{self, Value};

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/torch-optim-reference.json")).unwrap()
}

fn trajectory<S: LrScheduler>(mut s: S, base: f64, metrics: Option<&[f64]>, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let lr = s.learning_rate(base);
            s.step(metrics.map(|m| m[i]));
            lr
        })
        .collect()
}

fn close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-12, "{what} step {i}: {g} vs {w}");
    }
}

#[test]
fn every_fixture_scheduler_matches_torch() {
    let f = fixture();
    let s = &f["schedulers"];
    let base = s["base_lr"].as_f64().unwrap();
    let metrics: Vec<f64> = serde_json::from_value(s["plateau_metric"].clone()).unwrap();
    let mut seen = Vec::new();
    for case in s["cases"].as_array().unwrap() {
        let name = case["scheduler"].as_str().unwrap();
        let o = &case["options"];
        let num = |k: &str| o[k].as_f64().unwrap();
        let int = |k: &str| o[k].as_u64().unwrap() as usize;
        let want: Vec<f64> = serde_json::from_value(case["lr_before_step"].clone()).unwrap();
        let n = want.len();
        let got = match name {
            "StepLR" => trajectory(StepLr::new(int("step_size"), num("gamma")), base, None, n),
            "MultiStepLR" => {
                let m: Vec<usize> = serde_json::from_value(o["milestones"].clone()).unwrap();
                trajectory(MultiStepLr::new(m, num("gamma")), base, None, n)
            }
            "ExponentialLR" => trajectory(ExponentialLr::new(num("gamma")), base, None, n),
            "CosineAnnealingLR" => trajectory(CosineAnnealingLr::new(int("T_max"), num("eta_min")), base, None, n),
            "CosineAnnealingWarmRestarts" => {
                trajectory(CosineAnnealingWarmRestarts::new(int("T_0"), int("T_mult"), 0.0), base, None, n)
            }
            "OneCycleLR" => trajectory(OneCycleLr::new(num("max_lr"), int("total_steps")), base, None, n),
            "LinearLR" => trajectory(LinearLr::new(num("start_factor"), 1.0, int("total_iters")), base, None, n),
            "ReduceLROnPlateau" => {
                trajectory(ReduceLrOnPlateau::new(num("factor"), int("patience")), base, Some(&metrics), n)
            }
            other => panic!("no scheduler for {other}"),
        };
        assert_eq!(n, 30);
        close(name, &got, &want);
        seen.push(name);
    }
    assert_eq!(seen.len(), 8);
}

#[test]
fn sequential_warm_up_then_cosine() {
    // torch: SequentialLR([LinearLR(0.1, total_iters=3), CosineAnnealingLR(T_max=4)], milestones=[3])
    let s = SequentialLr::new(LinearLr::new(0.1, 1.0, 3), CosineAnnealingLr::new(4, 0.0), 3);
    let got = trajectory(s, 1.0, None, 8);
    let cos = |t: f64| (1.0 + (std::f64::consts::PI * t / 4.0).cos()) / 2.0;
    let want = [0.1, 0.4, 0.7, cos(0.0), cos(1.0), cos(2.0), cos(3.0), cos(4.0)];
    close("SequentialLR", &got, &want);
}

#[test]
fn scheduler_state_round_trips() {
    let mut s = ReduceLrOnPlateau::new(0.5, 0);
    for m in [1.0, 2.0, 3.0] {
        s.step(Some(m));
    }
    let mut t = ReduceLrOnPlateau::new(0.5, 0);
    t.load_state(&s.state()).unwrap();
    assert_eq!(t.learning_rate(1.0), s.learning_rate(1.0));
    assert_eq!(t.learning_rate(1.0), 0.25);
    assert!(t.load_state(&serde_json::json!({"nonsense": 1})).is_err());
}

/// One weight, SGD over `groups` groups, a scheduler chosen by the test.
#[lightning_module]
struct Sched<S: LrScheduler + Clone + 'static> {
    vars: VarMap,
    w: Var,
    v: Var,
    sched: S,
    config: SchedulerConfig,
    lrs: Vec<(f64, f64)>,
}

#[lightning_module]
impl<S: LrScheduler + Clone + 'static> Sched<S> {
    fn training_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        let loss = (batch.0.matmul(self.w.as_tensor())? + batch.0.matmul(self.v.as_tensor())?)?
            .sub(&batch.1)?
            .sqr()?
            .mean_all()?;
        trainer.log("train_loss", &loss)?;
        Ok(loss)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<(Sgd, S, SchedulerConfig)> {
        let params =
            Params::from(vec![("w".to_string(), self.w.clone())]).group(vec![("v".to_string(), self.v.clone())], 0.2);
        Ok((Sgd::new(params, 0.1)?, self.sched.clone(), self.config.clone()))
    }
    fn on_before_optimizer_step(&mut self, optimizer: &mut Sgd) {
        self.lrs.push((optimizer.learning_rate(0), optimizer.learning_rate(1)));
    }
}

fn sched_model<S: LrScheduler + Clone>(sched: S, config: SchedulerConfig) -> Sched<S> {
    let w = Var::zeros((1, 1), DType::F32, &Device::Cpu).unwrap();
    let v = Var::zeros((1, 1), DType::F32, &Device::Cpu).unwrap();
    Sched { vars: VarMap::new(), w, v, sched, config, lrs: vec![] }
}

fn four_batches() -> DataLoader {
    let x = Tensor::new(&[[0.1f32], [0.2], [0.3], [0.4]], &Device::Cpu).unwrap();
    DataLoader::new(x.clone(), x, 1).unwrap()
}

fn trainer(epochs: usize) -> Trainer {
    Trainer::builder().accelerator(Accelerator::Cpu).enable_checkpointing(false).max_epochs(epochs).build().unwrap()
}

#[test]
fn step_interval_with_frequency_scales_every_group() {
    let mut m = sched_model(StepLr::new(1, 0.5), SchedulerConfig::every_step().frequency(2));
    trainer(1).fit_with(&mut m, four_batches(), None::<DataLoader>).unwrap();
    // halved after optimizer steps 2 and 4 (batch_idx + 1 divisible by 2), both groups
    assert_eq!(m.lrs, [(0.1, 0.2), (0.1, 0.2), (0.05, 0.1), (0.05, 0.1)]);
}

#[test]
fn epoch_interval_steps_after_the_last_batch() {
    let mut m = sched_model(StepLr::new(1, 0.5), SchedulerConfig::every_epoch());
    trainer(2).fit_with(&mut m, four_batches(), None::<DataLoader>).unwrap();
    let first: Vec<_> = m.lrs[..4].to_vec();
    let second: Vec<_> = m.lrs[4..].to_vec();
    assert!(first.iter().all(|&l| l == (0.1, 0.2)) && second.iter().all(|&l| l == (0.05, 0.1)), "{:?}", m.lrs);
}

#[test]
fn plateau_schedulers_need_and_use_a_monitored_metric() {
    let mut m = sched_model(ReduceLrOnPlateau::new(0.5, 0), SchedulerConfig::every_epoch());
    let e = trainer(1).fit_with(&mut m, four_batches(), None::<DataLoader>).unwrap_err();
    assert!(matches!(e, lightning::Error::Config { flag: "monitor", .. }), "{e}");

    let mut m = sched_model(ReduceLrOnPlateau::new(0.5, 0), SchedulerConfig::every_epoch().monitor("nope"));
    let e = trainer(1).fit_with(&mut m, four_batches(), None::<DataLoader>).unwrap_err();
    assert!(e.to_string().contains("`nope`, which was not logged") && e.to_string().contains("train_loss"), "{e}");

    // with a monitor it steps once per epoch, after the epoch-end hooks
    let mut m = sched_model(ReduceLrOnPlateau::new(0.5, 0), SchedulerConfig::every_epoch().monitor("train_loss"));
    trainer(3).fit_with(&mut m, four_batches(), None::<DataLoader>).unwrap();
    assert_eq!(m.lrs.len(), 12);
    assert!(m.lrs[..4].iter().all(|&l| l == (0.1, 0.2)));
}
