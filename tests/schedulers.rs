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

/// Receives each fixture case: torch's name, our scheduler built with the same options, and
/// torch's learning rate before each step.
trait Visit {
    fn visit<S: LrScheduler + Clone + 'static>(&mut self, name: &str, sched: S, want: &[f64]);
}

/// The metric the fixture's `ReduceLROnPlateau` was stepped with.
fn plateau_metric() -> Vec<f64> {
    serde_json::from_value(fixture()["schedulers"]["plateau_metric"].clone()).unwrap()
}

/// Runs `v` over every scheduler case of the fixture (all at a base rate of 0.1).
fn each_case(v: &mut impl Visit) {
    let f = fixture();
    let s = &f["schedulers"];
    assert_eq!(s["base_lr"].as_f64(), Some(0.1));
    let cases = s["cases"].as_array().unwrap();
    for case in cases {
        let name = case["scheduler"].as_str().unwrap();
        let o = &case["options"];
        let num = |k: &str| o[k].as_f64().unwrap();
        let int = |k: &str| o[k].as_u64().unwrap() as usize;
        let want: Vec<f64> = serde_json::from_value(case["lr_before_step"].clone()).unwrap();
        assert_eq!(want.len(), 30);
        match name {
            "StepLR" => v.visit(name, StepLr::new(int("step_size"), num("gamma")), &want),
            "MultiStepLR" => {
                let m: Vec<usize> = serde_json::from_value(o["milestones"].clone()).unwrap();
                v.visit(name, MultiStepLr::new(m, num("gamma")), &want)
            }
            "ExponentialLR" => v.visit(name, ExponentialLr::new(num("gamma")), &want),
            "CosineAnnealingLR" => v.visit(name, CosineAnnealingLr::new(int("T_max"), num("eta_min")), &want),
            "CosineAnnealingWarmRestarts" => {
                v.visit(name, CosineAnnealingWarmRestarts::new(int("T_0"), int("T_mult"), 0.0), &want)
            }
            "OneCycleLR" => v.visit(name, OneCycleLr::new(num("max_lr"), int("total_steps")), &want),
            "LinearLR" => v.visit(name, LinearLr::new(num("start_factor"), 1.0, int("total_iters")), &want),
            "ReduceLROnPlateau" => v.visit(name, ReduceLrOnPlateau::new(num("factor"), int("patience")), &want),
            other => panic!("no scheduler for {other}"),
        }
    }
}

#[test]
fn every_fixture_scheduler_matches_torch() {
    struct Direct(Vec<f64>, usize);
    impl Visit for Direct {
        fn visit<S: LrScheduler + Clone + 'static>(&mut self, name: &str, s: S, want: &[f64]) {
            let metric = S::NEEDS_METRIC.then_some(&self.0[..]);
            close(name, &trajectory(s, 0.1, metric, want.len()), want);
            self.1 += 1;
        }
    }
    let mut d = Direct(plateau_metric(), 0);
    each_case(&mut d);
    assert_eq!(d.1, 8);
}

/// One weight, SGD at the fixture's rate, the scheduler under test; `training_step` logs the
/// fixture's plateau metric for the current step as `m`.
#[lightning_module]
struct Traj<S: LrScheduler + Clone + 'static> {
    vars: VarMap,
    w: Var,
    sched: S,
    config: SchedulerConfig,
    metric: Vec<f64>,
}

#[lightning_module]
impl<S: LrScheduler + Clone + 'static> Traj<S> {
    fn training_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        let loss = batch.0.matmul(self.w.as_tensor())?.sub(&batch.1)?.sqr()?.mean_all()?;
        trainer.log("m", self.metric.get(trainer.global_step()).copied().unwrap_or(0.0))?;
        Ok(loss)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<(Sgd, S, SchedulerConfig)> {
        Ok((Sgd::new(vec![self.w.clone()], 0.1)?, self.sched.clone(), self.config.clone()))
    }
}

/// Records the learning rate each optimizer step runs at.
struct SeenLr(Vec<f64>);

#[callback]
impl SeenLr {
    fn on_before_optimizer_step(&mut self, optimizer: &mut Sgd) {
        self.0.push(optimizer.learning_rate(0));
    }
}

/// The rates `Trainer::fit` runs `sched` at over `epochs` × `batches` steps.
fn fit_rates<S: LrScheduler + Clone + 'static>(
    sched: S,
    config: SchedulerConfig,
    epochs: usize,
    batches: usize,
    metric: &[f64],
) -> Vec<f64> {
    let w = Var::zeros((1, 1), DType::F64, &Device::Cpu).unwrap();
    let mut m = Traj { vars: lightning::var_map([("w", &w)]), w, sched, config, metric: metric.to_vec() };
    let x = Tensor::zeros((batches, 1), DType::F64, &Device::Cpu).unwrap();
    let loader = DataLoader::new(x.clone(), x, 1).unwrap();
    let mut t = Trainer::builder()
        .accelerator(Accelerator::Cpu)
        .enable_checkpointing(false)
        .enable_logger(false)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .max_epochs(epochs)
        .callbacks((SeenLr(vec![]),))
        .build()
        .unwrap();
    t.fit(&mut m, Data::loader(loader)).unwrap();
    std::mem::take(&mut t.callbacks_mut().0 .0)
}

#[test]
fn fit_runs_every_fixture_scheduler_at_torchs_rates_per_step() {
    // interval="step": optimizer step i runs at torch's rate before scheduler step i, from
    // step 0 (the rate torch's constructor sets: LinearLR's start_factor × lr, OneCycleLR's
    // max_lr / div_factor); ReduceLROnPlateau steps after every batch with its monitor
    struct Fit(Vec<f64>, usize);
    impl Visit for Fit {
        fn visit<S: LrScheduler + Clone + 'static>(&mut self, name: &str, s: S, want: &[f64]) {
            let config = SchedulerConfig::every_step().monitor("m");
            close(name, &fit_rates(s, config, 1, want.len(), &self.0), want);
            self.1 += 1;
        }
    }
    let mut f = Fit(plateau_metric(), 0);
    each_case(&mut f);
    assert_eq!(f.1, 8);
}

#[test]
fn fit_runs_epoch_interval_schedulers_at_torchs_rate_from_the_first_epoch() {
    // interval="epoch": every step of epoch e runs at torch's rate before scheduler step e
    struct Fit(usize);
    impl Visit for Fit {
        fn visit<S: LrScheduler + Clone + 'static>(&mut self, name: &str, s: S, want: &[f64]) {
            if S::NEEDS_METRIC {
                return;
            }
            let got = fit_rates(s, SchedulerConfig::every_epoch(), 10, 3, &[]);
            let want: Vec<f64> = want[..10].iter().flat_map(|&lr| [lr; 3]).collect();
            close(name, &got, &want);
            self.0 += 1;
        }
    }
    let mut f = Fit(0);
    each_case(&mut f);
    assert_eq!(f.0, 7);
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
    Sched { vars: lightning::var_map([("w", &w), ("v", &v)]), w, v, sched, config, lrs: vec![] }
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
    trainer(1).fit(&mut m, Data::loader(four_batches())).unwrap();
    // halved after optimizer steps 2 and 4 (batch_idx + 1 divisible by 2), both groups
    assert_eq!(m.lrs, [(0.1, 0.2), (0.1, 0.2), (0.05, 0.1), (0.05, 0.1)]);
}

#[test]
fn epoch_interval_steps_after_the_last_batch() {
    let mut m = sched_model(StepLr::new(1, 0.5), SchedulerConfig::every_epoch());
    trainer(2).fit(&mut m, Data::loader(four_batches())).unwrap();
    let first: Vec<_> = m.lrs[..4].to_vec();
    let second: Vec<_> = m.lrs[4..].to_vec();
    assert!(first.iter().all(|&l| l == (0.1, 0.2)) && second.iter().all(|&l| l == (0.05, 0.1)), "{:?}", m.lrs);
}

#[test]
fn plateau_schedulers_need_and_use_a_monitored_metric() {
    let mut m = sched_model(ReduceLrOnPlateau::new(0.5, 0), SchedulerConfig::every_epoch());
    let e = trainer(1).fit(&mut m, Data::loader(four_batches())).unwrap_err();
    assert!(matches!(e, lightning::Error::Config { flag: "monitor", .. }), "{e}");

    let mut m = sched_model(ReduceLrOnPlateau::new(0.5, 0), SchedulerConfig::every_epoch().monitor("nope"));
    let e = trainer(1).fit(&mut m, Data::loader(four_batches())).unwrap_err();
    assert!(e.to_string().contains("`nope`, which was not logged") && e.to_string().contains("train_loss"), "{e}");

    // on interval "step" too: the same errors (it used to be never stepped, silently)
    let mut m = sched_model(ReduceLrOnPlateau::new(0.5, 0), SchedulerConfig::every_step());
    let e = trainer(1).fit(&mut m, Data::loader(four_batches())).unwrap_err();
    assert!(matches!(e, lightning::Error::Config { flag: "monitor", .. }), "{e}");
    let mut m = sched_model(ReduceLrOnPlateau::new(0.5, 0), SchedulerConfig::every_step().monitor("nope"));
    let e = trainer(1).fit(&mut m, Data::loader(four_batches())).unwrap_err();
    assert!(e.to_string().contains("`nope`, which was not logged"), "{e}");

    // with a monitor it steps once per epoch, after the epoch-end hooks
    let mut m = sched_model(ReduceLrOnPlateau::new(0.5, 0), SchedulerConfig::every_epoch().monitor("train_loss"));
    trainer(3).fit(&mut m, Data::loader(four_batches())).unwrap();
    assert_eq!(m.lrs.len(), 12);
    assert!(m.lrs[..4].iter().all(|&l| l == (0.1, 0.2)));
}

#[test]
fn plateau_threshold_mode_eps_and_min_lr_as_torch() {
    // mode min, patience 0: 0.95 beats 1.0 both ways; 0.94 beats 0.95 relatively
    // (0.94 < 0.95 × 0.99) but not absolutely (0.94 ≥ 0.95 − 0.01)
    let run = |mut s: ReduceLrOnPlateau, base: f64, metrics: &[f64]| {
        metrics.iter().for_each(|&m| s.step(Some(m)));
        s.learning_rate(base)
    };
    let m = [1.0, 0.95, 0.94];
    let rel = ReduceLrOnPlateau::new(0.5, 0).threshold(0.01);
    assert_eq!(run(rel.clone(), 1.0, &m), 1.0);
    assert_eq!(run(rel.threshold_mode(ThresholdMode::Abs), 1.0, &m), 0.5);
    // mode max mirrors it: 0.608 > 0.6 × 1.01, but not > 0.6 + 0.01
    let up = [0.5, 0.6, 0.608];
    let max = ReduceLrOnPlateau::new(0.5, 0).mode(Mode::Max).threshold(0.01);
    assert_eq!(run(max.clone(), 1.0, &up), 1.0);
    assert_eq!(run(max.threshold_mode(ThresholdMode::Abs), 1.0, &up), 0.5);
    // torch skips a reduction smaller than eps (1e-8): 1.5e-8 → 0.75e-8 is one
    let flat = [1.0, 1.0, 1.0];
    assert_eq!(run(ReduceLrOnPlateau::new(0.5, 0), 1.5e-8, &flat), 1.5e-8);
    assert_eq!(run(ReduceLrOnPlateau::new(0.5, 0).eps(0.0), 1.5e-8, &flat), 1.5e-8 / 4.0);
    // min_lr floors it: 1 → 0.5 → 0.3, then nothing left to reduce
    assert_eq!(run(ReduceLrOnPlateau::new(0.5, 0).min_lr(0.3), 1.0, &flat), 0.3);
    // cooldown: after a reduction, bad steps are not counted for `cooldown` steps
    let cool = ReduceLrOnPlateau::new(0.5, 0).cooldown(2);
    assert_eq!(run(cool, 1.0, &[1.0, 1.0, 1.0, 1.0, 1.0]), 0.25);
}

/// torch's OneCycleLR momentum (cos annealing, two phases): from `max_momentum` down to
/// `base_momentum` while the rate rises, then back up.
fn one_cycle_momentum(t: usize, total: usize, pct_start: f64) -> f64 {
    let anneal = |from: f64, to: f64, pct: f64| to + (from - to) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0);
    let up_end = pct_start * total as f64 - 1.0;
    let t = t as f64;
    if t <= up_end {
        anneal(0.95, 0.85, t / up_end)
    } else {
        anneal(0.85, 0.95, (t - up_end) / (total as f64 - 1.0 - up_end))
    }
}

/// Records the momentum each optimizer step runs with.
struct SeenMomentum(Vec<f64>);

#[callback]
impl SeenMomentum {
    fn on_before_optimizer_step(&mut self, optimizer: &mut Sgd) {
        self.0.push(optimizer.rule().momentum);
    }
}

#[test]
fn one_cycle_cycles_sgd_momentum_through_fit_as_torch() {
    let fit = |sched: OneCycleLr| {
        let w = Var::zeros((1, 1), DType::F64, &Device::Cpu).unwrap();
        let config = SchedulerConfig::every_step();
        let mut m = Traj { vars: lightning::var_map([("w", &w)]), w, sched, config, metric: vec![] };
        let x = Tensor::zeros((30, 1), DType::F64, &Device::Cpu).unwrap();
        let mut t = Trainer::builder()
            .accelerator(Accelerator::Cpu)
            .enable_checkpointing(false)
            .enable_logger(false)
            .enable_progress_bar(false)
            .enable_model_summary(false)
            .max_epochs(1)
            .callbacks((SeenMomentum(vec![]),))
            .build()
            .unwrap();
        t.fit(&mut m, Data::loader(DataLoader::new(x.clone(), x, 1).unwrap())).unwrap();
        std::mem::take(&mut t.callbacks_mut().0 .0)
    };
    // the epochs + steps_per_epoch form: 3 × 10 = 30 steps
    let got = fit(OneCycleLr::with_epochs(0.1, 3, 10));
    let want: Vec<f64> = (0..30).map(|t| one_cycle_momentum(t, 30, 0.3)).collect();
    close("OneCycleLR momentum", &got, &want);
    assert_eq!(got[0], 0.95);
    // off: the optimizer's own momentum (0) stays
    assert!(fit(OneCycleLr::new(0.1, 30).cycle_momentum(false)).iter().all(|&m| m == 0.0));
}

/// A module whose optimizer has no momentum, with a OneCycleLR that cycles it.
#[lightning_module]
struct NoMomentum {
    vars: VarMap,
    w: Var,
}

#[lightning_module]
impl NoMomentum {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> lightning::Result<Tensor> {
        Ok(batch.0.matmul(self.w.as_tensor())?.sub(&batch.1)?.sqr()?.mean_all()?)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<(Adagrad, OneCycleLr, SchedulerConfig)> {
        let opt = Adagrad::new(vec![self.w.clone()], AdagradConfig::default())?;
        Ok((opt, OneCycleLr::new(0.1, 8), SchedulerConfig::every_step()))
    }
}

#[test]
fn cycling_momentum_of_an_optimizer_without_one_is_an_error() {
    let w = Var::zeros((1, 1), DType::F32, &Device::Cpu).unwrap();
    let mut m = NoMomentum { vars: lightning::var_map([("w", &w)]), w };
    let e = trainer(1).fit(&mut m, Data::loader(four_batches())).unwrap_err();
    assert!(matches!(e, lightning::Error::Config { flag: "cycle_momentum", .. }), "{e}");
    assert!(e.to_string().contains("Adagrad") && e.to_string().contains(".cycle_momentum(false)"), "{e}");
}

#[test]
fn a_resumed_run_starts_at_the_restored_schedules_rate() {
    // LinearLR(0.1, total_iters=5) on interval "step": 3 steps, a checkpoint, then 3 more in
    // a new trainer; the resumed steps run at torch's rates 3, 4 and 5
    let want: Vec<f64> = (0..6).map(|t| 0.1 * (0.1 + 0.9 * (t.min(5) as f64) / 5.0)).collect();
    let dir = tempfile::tempdir().unwrap();
    let fit = |epochs: usize, resume: Option<std::path::PathBuf>| {
        let vars = VarMap::new();
        let w = Var::zeros((1, 1), DType::F64, &Device::Cpu).unwrap();
        vars.data().lock().unwrap().insert("w".into(), w.clone());
        let sched = LinearLr::new(0.1, 1.0, 5);
        let mut m = Traj { vars, w, sched, config: SchedulerConfig::every_step(), metric: vec![] };
        let x = Tensor::zeros((3, 1), DType::F64, &Device::Cpu).unwrap();
        let mut t = Trainer::builder()
            .accelerator(Accelerator::Cpu)
            .default_root_dir(dir.path())
            .checkpoint(ModelCheckpoint::new().save_last(true))
            .enable_logger(false)
            .enable_progress_bar(false)
            .enable_model_summary(false)
            .max_epochs(epochs)
            .callbacks((SeenLr(vec![]),))
            .build()
            .unwrap();
        if let Some(p) = resume {
            t.ckpt_path(p);
        }
        let out = t.fit(&mut m, Data::loader(DataLoader::new(x.clone(), x, 1).unwrap())).unwrap();
        (std::mem::take(&mut t.callbacks_mut().0 .0), out.last_checkpoint)
    };
    let (first, last) = fit(1, None);
    close("LinearLR before the checkpoint", &first, &want[..3]);
    let (resumed, _) = fit(2, last);
    close("LinearLR after the resume", &resumed, &want[3..]);
}

#[test]
fn the_momentum_one_cycle_cycles_is_sgds_and_rmsprops_momentum_and_adams_beta1() {
    let w = || vec![Var::zeros((1, 1), DType::F32, &Device::Cpu).unwrap()];
    let mut adam = AdamW::with_lr(w(), 0.1).unwrap();
    assert_eq!(adam.momentum(), Some(0.9));
    adam.set_momentum(0.95);
    assert_eq!((adam.rule().beta1, adam.rule().beta2), (0.95, 0.999));
    let mut adam = Adam::new(w(), AdamConfig::default()).unwrap();
    adam.set_momentum(0.85);
    assert_eq!(adam.rule().beta1, 0.85);
    let mut rms = RmsProp::new(w(), RmsPropConfig::default()).unwrap();
    rms.set_momentum(0.9);
    assert_eq!(rms.momentum(), Some(0.9));
    assert_eq!(Adagrad::new(w(), AdagradConfig::default()).unwrap().momentum(), None);
}

/// OneCycleLR stepped past its `total_steps` is an error, as torch's "Tried to step 4 times.
/// The specified number of total steps is 3" (a resume with a larger `max_epochs` keeps the
/// checkpoint's cycle, whose rate would otherwise sit at its final value, ~4e-7 of `max_lr`,
/// and train nothing, silently).
#[test]
fn one_cycle_stepped_past_its_total_steps_is_an_error() {
    let mut m = sched_model(OneCycleLr::new(0.1, 3).cycle_momentum(false), SchedulerConfig::every_step());
    let e = trainer(1).fit(&mut m, Data::loader(four_batches())).unwrap_err().to_string();
    assert!(e.contains("OneCycleLR stepped 4 times, past its total_steps=3"), "{e}");
    // a cycle as long as the run is fine
    let mut m = sched_model(OneCycleLr::new(0.1, 4).cycle_momentum(false), SchedulerConfig::every_step());
    trainer(1).fit(&mut m, Data::loader(four_batches())).unwrap();
}

/// OneCycleLR whose warm-up has no length (`pct_start × total_steps = 1`: the first phase
/// runs from step 0 to step 0) would give the rate 0/0 = NaN and train NaN silently; torch
/// raises ZeroDivisionError. It is an error when the scheduler is attached, before any step.
#[test]
fn one_cycle_with_an_empty_warm_up_is_an_error_before_any_step() {
    for (pct, total) in [(0.25, 4), (0.1, 10)] {
        let mut m = sched_model(
            OneCycleLr::new(0.1, total).pct_start(pct).cycle_momentum(false),
            SchedulerConfig::every_step(),
        );
        let e = trainer(1).fit(&mut m, Data::loader(four_batches())).unwrap_err().to_string();
        assert!(e.contains("OneCycleLR's warm-up has no length"), "{e}");
        assert!(e.contains("more steps or a larger pct_start"), "{e}");
        assert!(m.lrs.is_empty(), "stepped with {:?}", m.lrs);
        assert_eq!(m.w.as_tensor().to_vec2::<f32>().unwrap(), [[0.0]]);
    }
    // one more step of warm-up trains, with finite rates from the first step on (torch's
    // OneCycleLR(max_lr=0.1, total_steps=4, pct_start=0.5) starts at 0.1 / 25)
    let mut m =
        sched_model(OneCycleLr::new(0.1, 4).pct_start(0.5).cycle_momentum(false), SchedulerConfig::every_step());
    trainer(1).fit(&mut m, Data::loader(four_batches())).unwrap();
    assert_eq!(m.lrs.len(), 4);
    assert!((m.lrs[0].0 - 0.004).abs() < 1e-12, "{:?}", m.lrs);
    assert!(m.lrs.iter().all(|&(a, b)| a.is_finite() && b.is_finite()), "{:?}", m.lrs);
}
