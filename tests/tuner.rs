//! The tuner (Lightning's `Tuner`): `lr_find` on a linear regression whose good rates are
//! known, and `scale_batch_size` with failures that the tests trigger themselves.

use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarMap};
use lightning::prelude::*;
use lightning::tuner::{BatchSizeAttr, BatchSizeMode, LrFind, LrFindMode, ScaleBatchSize, Suggestion, Tuner};

/// 512 samples of 4 inputs, uniform with unit variance (a fixed generator), and
/// `y = x · (1, -2, 3, 0.5)`: the mean squared error's Hessian is about `2 I`, so plain
/// gradient descent converges for rates below 1, fastest near 0.5, and diverges above 1.
fn regression(batch_size: usize) -> DataLoader {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * 3f64.sqrt()
    };
    let x: Vec<f32> = (0..512 * 4).map(|_| next() as f32).collect();
    let x = Tensor::from_vec(x, (512, 4), &Device::Cpu).unwrap();
    let w = Tensor::new(&[[1f32], [-2.], [3.], [0.5]], &Device::Cpu).unwrap();
    let y = x.matmul(&w).unwrap();
    DataLoader::new(x, y, batch_size).unwrap()
}

#[lightning_module]
struct Regression {
    vars: VarMap,
    layer: Linear,
    lr: f64,
    batch_size: usize,
    /// `training_step` fails as CUDA does when out of memory above this many rows.
    oom_above: Option<usize>,
    /// `training_step` sleeps this long from this many rows on.
    slow_from: Option<(usize, Duration)>,
    /// `train_dataloader` builds batches of 8 whatever `batch_size` says (a user's mistake).
    ignore_batch_size: bool,
}

impl Regression {
    fn new() -> Self {
        let vars = VarMap::new();
        let vb = lightning::seeded_var_builder(&vars, 7, DType::F32, &Device::Cpu);
        let layer = candle_nn::linear(4, 1, vb).unwrap();
        Regression { vars, layer, lr: 1e-3, batch_size: 8, oom_above: None, slow_from: None, ignore_batch_size: false }
    }

    fn weights(&self) -> Vec<f32> {
        let mut names: Vec<String> = self.vars.data().lock().unwrap().keys().cloned().collect();
        names.sort();
        let data = self.vars.data().lock().unwrap();
        names.iter().flat_map(|n| data[n].as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect()
    }
}

#[lightning_module]
impl Regression {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> lightning::Result<Tensor> {
        let rows = batch.0.dim(0)?;
        if self.oom_above.is_some_and(|limit| rows > limit) {
            // the message candle gives for cudarc's allocation failure
            return Err(lightning::Error::msg("DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")"));
        }
        if let Some((from, pause)) = self.slow_from.filter(|(from, _)| rows >= *from) {
            let _ = from;
            std::thread::sleep(pause);
        }
        Ok(self.layer.forward(&batch.0)?.sub(&batch.1)?.sqr()?.mean_all()?)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&self.vars, self.lr)
    }
    fn train_dataloader(&mut self) -> lightning::Result<DataLoader> {
        Ok(regression(if self.ignore_batch_size { 8 } else { self.batch_size }))
    }
}

impl BatchSizeAttr for Regression {
    fn batch_size(&self) -> usize {
        self.batch_size
    }
    fn set_batch_size(&mut self, batch_size: usize) {
        self.batch_size = batch_size;
    }
}

fn trainer(dir: &str) -> Trainer {
    Trainer::builder()
        .max_epochs(1)
        .enable_checkpointing(false)
        .enable_logger(false)
        .enable_progress_bar(false)
        .default_root_dir(std::env::temp_dir().join(dir))
        .build()
        .unwrap()
}

#[test]
fn lr_find_suggests_a_good_rate_and_restores_the_weights() {
    let mut model = Regression::new();
    let before = model.weights();
    let mut trainer = trainer("tuner-lr");
    let finder = Tuner::new(&mut trainer).lr_find(&mut model, Data::loader(regression(512))).unwrap();
    assert_eq!(model.weights(), before, "the sweep's updates are undone");
    // the default sweep 1e-8 → 1 runs its 100 steps (the loss does not diverge below rate 1)
    assert_eq!(finder.lrs().len(), 100);
    assert!(!finder.stopped_early());
    assert_eq!(finder.lrs()[0], 1e-8);
    // the smoothed loss (β = 0.98, over ~50 steps) lags the sweep, so the steepest descent
    // per unit of rate comes about a decade below the fastest rates (0.05 to 1): here 4.8e-3
    let lr = finder.suggestion().expect("a suggestion");
    assert!((1e-3..0.05).contains(&lr), "suggested {lr}");
    // one sweep point per step: the smoothed loss falls from its peak by the end
    let peak = finder.losses().iter().copied().fold(0.0, f64::max);
    assert!(finder.losses()[99] < 0.7 * peak);
}

#[test]
fn lr_find_updates_the_module_and_trains_better_than_a_tiny_rate() {
    let mut model = Regression::new();
    let mut trainer = trainer("tuner-update");
    model.batch_size = 512; // the full batch: a smooth loss curve
    let opts = LrFind::new().min_lr(1e-5).max_lr(0.9).num_training(60).update_attr(|m: &mut Regression, lr| m.lr = lr);
    let finder = Tuner::new(&mut trainer).lr_find_with(&mut model, Data::module(), opts).unwrap();
    assert_eq!(Some(model.lr), finder.suggestion());
    let loss_after = |model: &mut Regression| {
        let mut t = Trainer::builder().max_steps(40).enable_checkpointing(false).enable_logger(false).build().unwrap();
        t.fit(model, Data::module()).unwrap();
        let (x, y) = (regression(512).batches(0).next().unwrap()).unwrap();
        model.layer.forward(&x).unwrap().sub(&y).unwrap().sqr().unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap()
    };
    let tuned = loss_after(&mut model);
    let mut slow = Regression::new();
    (slow.lr, slow.batch_size) = (1e-5, 512);
    let untuned = loss_after(&mut slow);
    assert!(tuned < 0.5 * untuned, "tuned {tuned} (rate {}) vs untuned {untuned}", model.lr);
}

/// Batches of 16: Lightning's rule lands on a tiny rate; the steepest fall per decade does not.
#[test]
fn lr_find_can_suggest_the_fastest_fall_per_decade() {
    let mut model = Regression::new();
    let mut trainer = trainer("tuner-per-decade");
    let opts = LrFind::new()
        .min_lr(1e-6)
        .max_lr(0.9)
        .suggest(Suggestion::FastestPerDecade)
        .update_attr(|m: &mut Regression, lr| m.lr = lr);
    let finder = Tuner::new(&mut trainer).lr_find_with(&mut model, Data::loader(regression(16)), opts).unwrap();
    assert_eq!(Some(model.lr), finder.fastest_per_decade());
    let lightning = finder.suggestion().unwrap();
    assert!(lightning * 100.0 < model.lr, "{} vs {lightning}", model.lr);
    // 40 steps at each rate: the per-decade rate trains, Lightning's barely moves
    let loss_after = |lr: f64| {
        let mut m = Regression::new();
        m.lr = lr;
        let mut t = Trainer::builder().max_steps(40).enable_checkpointing(false).enable_logger(false).build().unwrap();
        t.fit(&mut m, Data::loader(regression(16))).unwrap();
        let (x, y) = (regression(512).batches(0).next().unwrap()).unwrap();
        m.layer.forward(&x).unwrap().sub(&y).unwrap().sqr().unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap()
    };
    let (ours, theirs) = (loss_after(model.lr), loss_after(lightning));
    assert!(ours < 0.8 * theirs, "loss {ours} at {} vs {theirs} at {lightning}", model.lr);
}

#[test]
fn lr_find_stops_early_when_the_loss_diverges() {
    let mut model = Regression::new();
    let before = model.weights();
    let mut trainer = trainer("tuner-diverge");
    // rates up to 1000: far past the stable limit of 1
    let opts = LrFind::new().min_lr(1e-4).max_lr(1e3).num_training(100);
    let finder = Tuner::new(&mut trainer).lr_find_with(&mut model, Data::loader(regression(16)), opts).unwrap();
    assert!(finder.stopped_early());
    let n = finder.lrs().len();
    assert!(n < 100, "stopped after {n} steps");
    assert!(finder.lrs()[n - 1] > 1.0, "it diverged past the stable limit, at {}", finder.lrs()[n - 1]);
    assert_eq!(model.weights(), before);
    // without the threshold it runs on (until a loss is not finite)
    let opts = LrFind::new().min_lr(1e-4).max_lr(1.5).num_training(40).early_stop_threshold(None);
    let finder = Tuner::new(&mut trainer).lr_find_with(&mut model, Data::loader(regression(16)), opts).unwrap();
    assert_eq!(finder.lrs().len(), 40);
}

#[test]
fn lr_find_linear_mode_spaces_the_rates_evenly() {
    let mut model = Regression::new();
    let mut trainer = trainer("tuner-linear");
    let opts = LrFind::new().mode(LrFindMode::Linear).min_lr(0.0).max_lr(0.9).num_training(30);
    let finder = Tuner::new(&mut trainer).lr_find_with(&mut model, Data::loader(regression(16)), opts).unwrap();
    assert_eq!(finder.mode(), LrFindMode::Linear);
    assert_eq!(finder.lrs().len(), 30);
    assert_eq!(finder.lrs()[0], 0.0);
    for (k, lr) in finder.lrs().iter().enumerate().skip(1) {
        assert!((lr - 0.9 * (k + 1) as f64 / 30.0).abs() < 1e-12, "step {k}: {lr}");
    }
    let lr = finder.suggestion().unwrap();
    assert!(lr > 0.0 && lr <= 0.9);
}

#[test]
fn lr_find_refuses_bad_options() {
    let mut model = Regression::new();
    let mut trainer = trainer("tuner-bad");
    let mut tuner = Tuner::new(&mut trainer);
    for opts in [LrFind::new().min_lr(0.0), LrFind::new().max_lr(1e-9), LrFind::new().num_training(1)] {
        let e = tuner.lr_find_with(&mut model, Data::module(), opts).unwrap_err();
        assert!(matches!(e, lightning::Error::Tuner(_)), "{e}");
    }
}

#[test]
fn scale_batch_size_power_stops_at_out_of_memory() {
    let mut model = Regression::new();
    model.oom_above = Some(24);
    let before = model.weights();
    let mut trainer = trainer("tuner-power");
    let found = Tuner::new(&mut trainer).scale_batch_size(&mut model, ScaleBatchSize::new()).unwrap();
    assert_eq!(found.batch_size, 16);
    let tried: Vec<usize> = found.trials.iter().map(|t| t.batch_size).collect();
    assert_eq!(tried, [2, 4, 8, 16, 32]);
    assert!(found.trials[4].failure.as_deref().unwrap().contains("out of memory"));
    // the loader the module builds now has the new size, and the weights are as before
    assert_eq!(model.batch_size, 16);
    assert_eq!(model.train_dataloader().unwrap().batch_size(), 16);
    assert_eq!(model.weights(), before);
}

#[test]
fn scale_batch_size_binsearch_finds_the_exact_limit() {
    let mut model = Regression::new();
    model.oom_above = Some(24);
    let mut trainer = trainer("tuner-bin");
    let opts = ScaleBatchSize::new().mode(BatchSizeMode::BinSearch);
    let found = Tuner::new(&mut trainer).scale_batch_size(&mut model, opts).unwrap();
    assert_eq!(found.batch_size, 24);
    let tried: Vec<usize> = found.trials.iter().map(|t| t.batch_size).collect();
    assert_eq!(tried, [2, 4, 8, 16, 32, 24, 28, 26, 25]);
    assert_eq!(model.train_dataloader().unwrap().batch_size(), 24);
}

#[test]
fn scale_batch_size_time_budget_and_other_errors() {
    let mut model = Regression::new();
    // from 32 rows a step takes 300 ms, over the 100 ms budget
    model.slow_from = Some((32, Duration::from_millis(300)));
    let mut trainer = trainer("tuner-time");
    let opts = ScaleBatchSize::new().steps_per_trial(1).max_step_time(Duration::from_millis(100));
    let found = Tuner::new(&mut trainer).scale_batch_size(&mut model, opts).unwrap();
    assert_eq!(found.batch_size, 16);
    assert!(found.trials.last().unwrap().failure.as_deref().unwrap().contains("budget"));
    // growth stops once one batch holds the 512 samples
    let mut model = Regression::new();
    let found = Tuner::new(&mut trainer).scale_batch_size(&mut model, ScaleBatchSize::new().init_val(128)).unwrap();
    assert_eq!(found.batch_size, 512);
    // an error that is not out of memory ends the search, and the batch size is put back
    let mut model = Regression::new();
    model.oom_above = Some(24);
    let mut trainer = Trainer::builder()
        .max_epochs(1)
        .enable_checkpointing(false)
        .enable_logger(false)
        .detect_anomaly(true)
        .build()
        .unwrap();
    model.lr = f64::NAN;
    let e = Tuner::new(&mut trainer).scale_batch_size(&mut model, ScaleBatchSize::new()).unwrap_err();
    assert!(!matches!(e, lightning::Error::Tuner(_)), "{e}");
    assert_eq!(model.batch_size, 8);
}

#[test]
fn lr_find_draws_its_plot() {
    let mut model = Regression::new();
    let mut trainer = trainer("tuner-plot");
    let opts = LrFind::new().min_lr(1e-4).max_lr(0.9).num_training(30);
    let finder = Tuner::new(&mut trainer).lr_find_with(&mut model, Data::loader(regression(512)), opts).unwrap();
    let svg = finder.plot_svg().unwrap();
    assert!(svg.contains("Learning rate") && svg.contains("<circle"), "axis label and the suggestion's dot");
    let dir = std::env::temp_dir().join(format!("tuner-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    finder.plot(dir.join("lr.png")).unwrap();
    let png = std::fs::read(dir.join("lr.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The batch size on a datamodule (Lightning's `trainer.datamodule.batch_size`).
struct Batches {
    batch_size: usize,
    /// Batch sizes of the loaders it built.
    built: Vec<usize>,
}

#[datamodule]
impl DataModule for Batches {
    type Batch = (Tensor, Tensor);
    type Loader = DataLoader;
    fn train_dataloader(&mut self) -> lightning::Result<Option<DataLoader>> {
        self.built.push(self.batch_size);
        Ok(Some(regression(self.batch_size)))
    }
}

impl BatchSizeAttr for Batches {
    fn batch_size(&self) -> usize {
        self.batch_size
    }
    fn set_batch_size(&mut self, batch_size: usize) {
        self.batch_size = batch_size;
    }
}

#[test]
fn scale_batch_size_on_a_datamodule() {
    let mut model = Regression::new();
    model.oom_above = Some(100);
    let before = model.weights();
    let mut dm = Batches { batch_size: 1, built: Vec::new() };
    let mut trainer = trainer("tuner-dm");
    let found =
        Tuner::new(&mut trainer).scale_batch_size_datamodule(&mut model, &mut dm, ScaleBatchSize::new()).unwrap();
    assert_eq!(found.batch_size, 64);
    assert_eq!(dm.batch_size, 64);
    // each trial asked the datamodule for a new loader of its size
    assert_eq!(dm.built, [2, 4, 8, 16, 32, 64, 128]);
    assert_eq!(model.weights(), before);
    assert_eq!(model.batch_size, 8, "the module's own batch size is not the one tuned");
}

/// The callbacks: Lightning's `LearningRateFinder` and `BatchSizeFinder`, which tune the
/// `fit` they are given to before it trains.
mod finder_callbacks {
    use super::*;
    use lightning::tuner::{BatchSizeFinder, LearningRateFinder};

    fn fit_trainer<C: lightning::CallbackTuple>(callbacks: C) -> Trainer<C::List> {
        Trainer::builder()
            .max_epochs(2)
            .callbacks(callbacks)
            .enable_checkpointing(false)
            .enable_logger(false)
            .enable_progress_bar(false)
            .build()
            .unwrap()
    }

    fn opts() -> LrFind<impl lightning::tuner::UpdateLr<Regression> + Clone> {
        LrFind::new().min_lr(1e-5).max_lr(0.9).num_training(60).update_attr(|m: &mut Regression, lr| m.lr = lr)
    }

    #[test]
    fn learning_rate_finder_tunes_then_fits_as_the_tuner_and_fit_do() {
        // the callback's run...
        let mut model = Regression::new();
        let mut tuned = fit_trainer((LearningRateFinder::new(opts()),));
        let out = tuned.fit(&mut model, Data::loader(regression(64))).unwrap();
        let suggested = tuned.callbacks().0.optimal_lr().and_then(|f| f.suggestion()).expect("a suggestion");
        assert_eq!(model.lr, suggested, "the module got the suggestion");
        assert_eq!(out.global_step, 16, "the fit's own steps: the sweep's 60 are not counted");
        // ...equals the Tuner's sweep followed by a fit, weight for weight: the sweep's
        // updates were undone and the fit trained at the suggested rate
        let mut by_hand = Regression::new();
        let mut tuner_trainer = trainer("finder-by-hand");
        let finder =
            Tuner::new(&mut tuner_trainer).lr_find_with(&mut by_hand, Data::loader(regression(64)), opts()).unwrap();
        assert_eq!(finder.suggestion(), Some(suggested));
        fit_trainer(()).fit(&mut by_hand, Data::loader(regression(64))).unwrap();
        assert_eq!(model.weights(), by_hand.weights());
        assert_ne!(model.weights(), Regression::new().weights(), "it trained");
    }

    #[test]
    fn learning_rate_finder_without_a_setter_reports_and_leaves_the_rate() {
        let mut model = Regression::new();
        // nested in a tuple of tuples, after another callback: still found and run
        let mut trainer = fit_trainer(((LearningRateFinder::new(LrFind::new().num_training(30)),),));
        trainer.fit(&mut model, Data::loader(regression(64))).unwrap();
        assert_eq!(model.lr, 1e-3);
        let found = trainer.callbacks().0 .0 .0.optimal_lr().expect("it swept");
        assert_eq!(found.lrs().len(), 30);
    }

    #[test]
    fn learning_rate_finder_skips_a_resumed_fit() {
        let dir = std::env::temp_dir().join(format!("finder-resume-{}", std::process::id()));
        let mut model = Regression::new();
        let mut first = Trainer::builder()
            .max_epochs(1)
            .enable_logger(false)
            .enable_progress_bar(false)
            .default_root_dir(&dir)
            .build()
            .unwrap();
        let ckpt = first.fit(&mut model, Data::loader(regression(64))).unwrap().last_checkpoint.expect("a checkpoint");
        let mut trainer = Trainer::builder()
            .max_epochs(2)
            .callbacks((LearningRateFinder::new(opts()),))
            .enable_logger(false)
            .enable_progress_bar(false)
            .default_root_dir(&dir)
            .build()
            .unwrap();
        trainer.ckpt_path(ckpt);
        trainer.fit(&mut model, Data::loader(regression(64))).unwrap();
        assert!(trainer.callbacks().0.optimal_lr().is_none());
        assert_eq!(model.lr, 1e-3);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn batch_size_finder_scales_then_fits_at_the_size_found() {
        let mut model = Regression::new();
        model.oom_above = Some(24);
        let before = model.weights();
        let opts = ScaleBatchSize::new().mode(BatchSizeMode::BinSearch);
        let mut trainer = fit_trainer((BatchSizeFinder::new(opts),));
        let out = trainer.fit(&mut model, Data::module()).unwrap();
        let finder = &trainer.callbacks().0;
        assert_eq!(finder.optimal_batch_size(), Some(24));
        let tried: Vec<usize> = finder.search().unwrap().trials.iter().map(|t| t.batch_size).collect();
        assert_eq!(tried, [2, 4, 8, 16, 32, 24, 28, 26, 25]);
        assert_eq!(model.batch_size, 24);
        // two epochs of ⌈512 / 24⌉ = 22 batches: the fit ran at the size found, from the
        // weights as they were before the trials
        assert_eq!(out.global_step, 44);
        let mut by_hand = Regression::new();
        (by_hand.batch_size, by_hand.oom_above) = (24, Some(24));
        assert_eq!(by_hand.weights(), before);
        fit_trainer(()).fit(&mut by_hand, Data::module()).unwrap();
        assert_eq!(model.weights(), by_hand.weights());
    }

    #[test]
    fn batch_size_finder_says_when_the_loader_ignores_the_batch_size() {
        let mut model = Regression::new();
        model.ignore_batch_size = true;
        let mut trainer = fit_trainer((BatchSizeFinder::default(),));
        let e = trainer.fit(&mut model, Data::module()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("64 batches an epoch at batch size 4 as at 2") && text.contains("train_dataloader"),
            "{text}"
        );
        assert_eq!(model.batch_size, 8, "the batch size is put back");
    }

    #[test]
    fn batch_size_finder_refuses_a_loader_given_to_fit() {
        let mut model = Regression::new();
        let mut trainer = fit_trainer((BatchSizeFinder::default(),));
        let e = trainer.fit(&mut model, Data::loader(regression(8))).unwrap_err();
        assert!(matches!(&e, lightning::Error::Tuner(m) if m.contains("Data::module()")), "{e}");
        assert_eq!(model.batch_size, 8);
    }
}

/// A finder returned by `configure_callbacks` cannot run (the search runs before `fit` asks
/// the module for its callbacks): the fit says so instead of doing nothing.
#[lightning_module]
struct SelfTuned {
    vars: VarMap,
    layer: Linear,
}

#[lightning_module]
impl SelfTuned {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> lightning::Result<Tensor> {
        Ok(self.layer.forward(&batch.0)?.sub(&batch.1)?.sqr()?.mean_all()?)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&self.vars, 0.01)
    }
    fn configure_callbacks(&mut self) -> Option<(lightning::tuner::LearningRateFinder,)> {
        Some((lightning::tuner::LearningRateFinder::default(),))
    }
}

#[test]
fn a_finder_from_configure_callbacks_says_it_does_not_run() {
    let name = "a_finder_from_configure_callbacks_says_it_does_not_run";
    if std::env::var_os("TUNER_CHILD").is_some() {
        let vars = VarMap::new();
        let layer = candle_nn::linear(4, 1, lightning::seeded_var_builder(&vars, 7, DType::F32, &Device::Cpu)).unwrap();
        trainer("tuner-self").fit(&mut SelfTuned { vars, layer }, Data::loader(regression(64))).unwrap();
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("TUNER_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "warning: a `LearningRateFinder` or `BatchSizeFinder` returned by `configure_callbacks` does not run"
        ),
        "{stderr}"
    );
}
