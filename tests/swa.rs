//! StochasticWeightAveraging: the average and the SWALR schedule against a hand computation,
//! an exact resume, and its argument errors.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use lightning::callbacks::SwaEpochStart;
use lightning::prelude::*;
use lightning::{CallbackTuple, Error};

/// Loss `a + b` (gradient 1 each), so SGD moves each by minus its group's rate per step; the
/// module records the rates of every step and the weights at every epoch end.
#[lightning_module]
struct Pair {
    vars: VarMap,
    a: Var,
    b: Var,
    lr: (f64, f64),
    /// `(epoch, lr of a's group, lr of b's group)` at each optimizer step.
    lrs: Vec<(usize, f64, f64)>,
    /// `(a, b)` at the end of each epoch.
    ends: Vec<(f64, f64)>,
}

#[lightning_module]
impl Pair {
    fn training_step(&mut self) -> lightning::Result<Tensor> {
        Ok((self.a.as_tensor() + self.b.as_tensor())?.sum_all()?)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<(Sgd, StepLr)> {
        let params = Params::from(vec![("a".to_string(), self.a.clone())])
            .with_lr(self.lr.0)
            .group(vec![("b".to_string(), self.b.clone())], self.lr.1);
        // halves the rates every epoch until SWALR replaces it
        Ok((Sgd::new(params, self.lr.0)?, StepLr::new(1, 0.5)))
    }
    fn on_before_optimizer_step(&mut self, optimizer: &mut Sgd, trainer: &TrainerState) {
        self.lrs.push((trainer.current_epoch(), optimizer.learning_rate(0), optimizer.learning_rate(1)));
    }
    fn on_train_epoch_end(&mut self) -> lightning::Result<()> {
        self.ends.push(self.weights()?);
        Ok(())
    }
}

impl Pair {
    fn new(lr: (f64, f64)) -> Self {
        let a = Var::zeros(1, DType::F64, &Device::Cpu).unwrap();
        let b = Var::zeros(1, DType::F64, &Device::Cpu).unwrap();
        Pair { vars: lightning::var_map([("a", &a), ("b", &b)]), a, b, lr, lrs: vec![], ends: vec![] }
    }
    fn weights(&self) -> candle_core::Result<(f64, f64)> {
        Ok((self.a.as_tensor().to_vec1::<f64>()?[0], self.b.as_tensor().to_vec1::<f64>()?[0]))
    }
}

/// Two batches an epoch.
fn two_batches() -> DataLoader {
    let x = Tensor::zeros((4, 1), DType::F64, &Device::Cpu).unwrap();
    DataLoader::new(x.clone(), x, 2).unwrap()
}

fn trainer<C: CallbackTuple>(epochs: usize, dir: &std::path::Path, callbacks: C) -> Trainer<C::List> {
    Trainer::builder()
        .max_epochs(epochs)
        .default_root_dir(dir)
        .enable_progress_bar(false)
        .enable_logger(false)
        .callbacks(callbacks)
        .build()
        .unwrap()
}

/// torch's SWALR in closed form: `k` epochs after it starts from `lr0`, the rate is
/// `lr0 + (swa − lr0)·α(min(1, k / A))`, `α(t) = (1 − cos πt) / 2` (cos) or `t` (linear);
/// with `A = 0` the SWA rate at once.
fn swalr(lr0: f64, swa: f64, k: usize, anneal: usize, cos: bool) -> f64 {
    let t = if anneal == 0 { 1.0 } else { (k as f64 / anneal as f64).min(1.0) };
    let alpha = if cos { (1.0 - (std::f64::consts::PI * t).cos()) / 2.0 } else { t };
    lr0 + (swa - lr0) * alpha
}

/// One run's settings and the hand computation of its rates and weights.
struct Case {
    epochs: usize,
    start: SwaEpochStart,
    /// The 0-based first SWA epoch Lightning's rule gives for `start`.
    first: usize,
    anneal: usize,
    cos: bool,
    base: (f64, f64),
    swa: (f64, f64),
}

impl Case {
    /// Each epoch's rate of one group: StepLr halving until `first`, then SWALR from the rate
    /// in force there.
    fn lr(&self, base: f64, swa: f64, epoch: usize) -> f64 {
        let step_lr = |e: usize| base * 0.5f64.powi(e as i32);
        if epoch < self.first {
            step_lr(epoch)
        } else {
            swalr(step_lr(self.first), swa, epoch - self.first, self.anneal, self.cos)
        }
    }

    /// The weights at each epoch's end: minus two steps of each epoch's rate, summed.
    fn ends(&self, base: f64, swa: f64) -> Vec<f64> {
        let mut w = 0.0;
        (0..self.epochs).map(|e| (w -= 2.0 * self.lr(base, swa, e), w).1).collect()
    }
}

fn run_case(c: &Case, swa_lrs: SwaLrsArg) {
    let dir = tempfile::tempdir().unwrap();
    let strategy = if c.cos { Anneal::Cos } else { Anneal::Linear };
    let swa = match swa_lrs {
        SwaLrsArg::One => StochasticWeightAveraging::new(c.swa.0),
        SwaLrsArg::PerGroup => StochasticWeightAveraging::new([c.swa.0, c.swa.1]),
    };
    let swa = swa.unwrap().swa_epoch_start(c.start).unwrap().annealing_epochs(c.anneal).annealing_strategy(strategy);
    let mut t = trainer(c.epochs, dir.path(), (swa,));
    let mut m = Pair::new(c.base);
    t.fit(&mut m, Data::loader(two_batches())).unwrap();

    assert_eq!(t.callbacks().0.swa_epochs(), c.first..c.epochs);
    assert_eq!(t.callbacks().0.n_averaged(), c.epochs - c.first);
    assert_eq!(m.lrs.len(), 2 * c.epochs);
    for &(e, la, lb) in &m.lrs {
        let (wa, wb) = (c.lr(c.base.0, c.swa.0, e), c.lr(c.base.1, c.swa.1, e));
        assert!(
            (la - wa).abs() < 1e-12 && (lb - wb).abs() < 1e-12,
            "epoch {e}: rates ({la}, {lb}), SWALR ({wa}, {wb})"
        );
    }
    let (ends_a, ends_b) = (c.ends(c.base.0, c.swa.0), c.ends(c.base.1, c.swa.1));
    for (e, &(a, b)) in m.ends.iter().enumerate() {
        assert!((a - ends_a[e]).abs() < 1e-12 && (b - ends_b[e]).abs() < 1e-12, "epoch {e}: ({a}, {b})");
    }
    // the module ends with the mean of the weights at the ends of the SWA epochs
    let n = (c.epochs - c.first) as f64;
    let mean = |ends: &[f64]| ends[c.first..].iter().sum::<f64>() / n;
    let (a, b) = m.weights().unwrap();
    assert!((a - mean(&ends_a)).abs() < 1e-12, "a = {a}, the hand average {}", mean(&ends_a));
    assert!((b - mean(&ends_b)).abs() < 1e-12, "b = {b}, the hand average {}", mean(&ends_b));
    assert!((t.callbacks().0.average("a").unwrap().to_vec1::<f64>().unwrap()[0] - a).abs() == 0.0);
}

#[derive(Clone, Copy)]
enum SwaLrsArg {
    One,
    PerGroup,
}

#[test]
fn swa_averages_the_swa_epochs_weights_under_swalr() {
    // cos, one rate for both groups, the 3rd epoch (0-based 2): rates of a 0.1, 0.05, then
    // SWALR from 0.025: 0.025, 0.0225 (halfway on the cosine), 0.02; a ends at -0.2, -0.3,
    // -0.35, -0.395, -0.435 and keeps (-0.35 - 0.395 - 0.435) / 3
    let cos = Case { epochs: 5, start: 3.into(), first: 2, anneal: 2, cos: true, base: (0.1, 0.2), swa: (0.02, 0.02) };
    assert!((cos.ends(0.1, 0.02)[4] - -0.435).abs() < 1e-12);
    run_case(&cos, SwaLrsArg::One);
    // linear, one rate per group, half of max_epochs: ⌊0.5 · 6⌋ = 3rd epoch (0-based 2)
    let linear =
        Case { epochs: 6, start: 0.5.into(), first: 2, anneal: 3, cos: false, base: (0.1, 0.2), swa: (0.01, 0.04) };
    run_case(&linear, SwaLrsArg::PerGroup);
    // Lightning's default start, 0.8 of 10 epochs: the 8th (0-based 7); no annealing: the SWA
    // rates from that epoch on
    let now =
        Case { epochs: 10, start: 0.8.into(), first: 7, anneal: 0, cos: true, base: (0.1, 0.2), swa: (0.01, 0.04) };
    run_case(&now, SwaLrsArg::PerGroup);
    // a fraction below one epoch starts at the first
    let first =
        Case { epochs: 3, start: 0.2.into(), first: 0, anneal: 1, cos: true, base: (0.1, 0.2), swa: (0.05, 0.05) };
    run_case(&first, SwaLrsArg::One);
}

/// Stops `fit` at the end of epoch `.0` (0-based).
struct StopAt(usize);

#[callback]
impl StopAt {
    fn on_train_epoch_end(&mut self, trainer: &mut TrainerState) {
        if trainer.current_epoch() == self.0 {
            trainer.request_stop();
        }
    }
}

/// A fit stopped at an epoch end (before SWA starts, and within it) and resumed from its
/// checkpoint ends with the weights, average, count and rates of an uninterrupted fit.
#[test]
fn swa_resumed_from_a_checkpoint_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let swa = || StochasticWeightAveraging::new(0.01).unwrap().swa_epoch_start(3).unwrap().annealing_epochs(3);
    let mut whole = trainer(6, &dir.path().join("whole"), (swa(),));
    let mut m = Pair::new((0.1, 0.2));
    whole.fit(&mut m, Data::loader(two_batches())).unwrap();
    let expected = m.weights().unwrap();
    assert_eq!(whole.callbacks().0.n_averaged(), 4);

    for stop in [1, 3] {
        let sub = dir.path().join(format!("stop{stop}"));
        let mut first = trainer(6, &sub, (StopAt(stop), swa()));
        let mut part = Pair::new((0.1, 0.2));
        let out = first.fit(&mut part, Data::loader(two_batches())).unwrap();
        assert_eq!(part.weights().unwrap(), *part.ends.last().unwrap(), "stopped early: no average taken");
        let last = out.last_checkpoint.unwrap();
        let saved = lightning::Checkpoint::load(&last).unwrap();
        let state = &saved.callbacks["StochasticWeightAveraging"];
        assert_eq!(state["n_averaged"], stop.saturating_sub(1) as u64, "{state}");
        assert_eq!(saved.tensors.contains_key("swa/a"), stop >= 2, "{:?}", saved.tensors.keys().collect::<Vec<_>>());

        let mut rest = trainer(6, &sub, (StopAt(usize::MAX), swa()));
        rest.resume_from(&last);
        let mut resumed = Pair::new((0.1, 0.2));
        rest.fit(&mut resumed, Data::loader(two_batches())).unwrap();
        assert_eq!(resumed.weights().unwrap(), expected, "resumed after epoch {stop}");
        assert_eq!(rest.callbacks().1.n_averaged(), 4);
        assert_eq!(resumed.lrs[..], m.lrs[2 * (stop + 1)..], "the rates after the resume");
        let (a, b) = (rest.callbacks().1.average("a").unwrap(), whole.callbacks().0.average("a").unwrap());
        assert_eq!(a.to_vec1::<f64>().unwrap(), b.to_vec1::<f64>().unwrap());
    }
}

/// The setting a typed error names, through the hook that returned it.
fn flag(e: &Error) -> Option<&'static str> {
    match e {
        Error::Config { flag, .. } => Some(flag),
        Error::Hook { source, .. } => flag(source),
        _ => None,
    }
}

#[test]
fn swa_bad_arguments_are_typed_errors() {
    for lr in [-0.1, 0.0, f64::NAN, f64::INFINITY] {
        let e = StochasticWeightAveraging::new(lr).unwrap_err();
        assert_eq!(flag(&e), Some("swa_lrs"), "{e}");
    }
    assert_eq!(flag(&StochasticWeightAveraging::new(Vec::new()).unwrap_err()), Some("swa_lrs"));
    assert_eq!(flag(&StochasticWeightAveraging::new([0.1, -1.0]).unwrap_err()), Some("swa_lrs"));
    let swa = || StochasticWeightAveraging::new(0.01).unwrap();
    for start in [SwaEpochStart::Epoch(0), SwaEpochStart::Fraction(1.5), SwaEpochStart::Fraction(-0.1)] {
        let e = swa().swa_epoch_start(start).unwrap_err();
        assert_eq!(flag(&e), Some("swa_epoch_start"), "{e}");
    }

    // checked against the run at fit start, before any step
    let dir = tempfile::tempdir().unwrap();
    let fit = |swa: StochasticWeightAveraging| {
        let mut m = Pair::new((0.1, 0.2));
        let e = trainer(5, dir.path(), (swa,)).fit(&mut m, Data::loader(two_batches())).unwrap_err();
        assert!(m.lrs.is_empty(), "no step taken");
        e
    };
    let e = fit(swa().swa_epoch_start(6).unwrap());
    assert_eq!(flag(&e), Some("swa_epoch_start"), "{e}");
    assert!(e.to_string().contains("epoch 6 is past max_epochs=5"), "{e}");
    let e = fit(StochasticWeightAveraging::new([0.1, 0.2, 0.3]).unwrap());
    assert_eq!(flag(&e), Some("swa_lrs"), "{e}");
    assert!(e.to_string().contains("3 rates for an optimizer of 2 parameter groups"), "{e}");
    // the last epoch itself is a valid start
    let mut m = Pair::new((0.1, 0.2));
    trainer(5, dir.path(), (swa().swa_epoch_start(5).unwrap(),)).fit(&mut m, Data::loader(two_batches())).unwrap();
    assert_eq!(m.weights().unwrap(), *m.ends.last().unwrap(), "one epoch averaged: its own weights");
}
