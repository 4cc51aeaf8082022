//! `Tuner::lr_find`: the learning-rate range test and its options.

use super::lr_finder::LrFinder;
use super::lr_sweep::{LrFindMode, LrSweep, Schedule, Smoother};
use super::snapshot::Snapshot;
use super::{info, Tuner};
use crate::contract::module::requirements::{HasConfigureOptimizers, HasTrainingStep};
use std::borrow::BorrowMut;

use crate::data::{Loader, Loaders};
use crate::{DataModule, Error, FitData, LightningModule, Result, Trainer};

/// Lightning's smoothing factor of the sweep's loss (`_LRCallback`'s `beta`).
const BETA: f64 = 0.98;

/// Where `lr_find` puts the suggested rate: nowhere ([`NoUpdate`], the default) or a setter
/// given to [`LrFind::update_attr`] (Lightning's `update_attr=True` with `attr_name`).
pub trait UpdateLr<M> {
    /// Whether a rate is set at all (a missing suggestion is then a warning).
    const ENABLED: bool;
    /// Gives the module the suggested rate.
    fn update(&mut self, model: &mut M, lr: f64);
}

/// `lr_find` leaves the module's rate alone (Lightning's `update_attr=False`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoUpdate;

impl<M> UpdateLr<M> for NoUpdate {
    const ENABLED: bool = false;
    fn update(&mut self, _: &mut M, _: f64) {}
}

/// The setter given to [`LrFind::update_attr`].
#[derive(Clone, Copy)]
pub struct SetLr<F>(F);

impl<F> std::fmt::Debug for SetLr<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SetLr(..)")
    }
}

impl<M, F: FnMut(&mut M, f64)> UpdateLr<M> for SetLr<F> {
    const ENABLED: bool = true;
    fn update(&mut self, model: &mut M, lr: f64) {
        (self.0)(model, lr)
    }
}

/// The options of [`Tuner::lr_find_with`], with Lightning's defaults: `min_lr` 1e-8,
/// `max_lr` 1, `num_training` 100, exponential mode, `early_stop_threshold` 4.
#[derive(Debug, Clone)]
#[must_use]
pub struct LrFind<U = NoUpdate> {
    min_lr: f64,
    max_lr: f64,
    num_training: usize,
    mode: LrFindMode,
    early_stop_threshold: Option<f64>,
    rule: Suggestion,
    update: U,
}

/// Which rate [`LrFind::update_attr`] gives the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Suggestion {
    /// Lightning's: the steepest slope of the smoothed loss per unit of rate
    /// ([`LrFinder::suggestion`]). The default.
    #[default]
    Lightning,
    /// Ours: the steepest slope per decade of rate ([`LrFinder::fastest_per_decade`]), which
    /// a noisy loss does not pull down to the tiny first rates.
    FastestPerDecade,
}

impl Default for LrFind {
    fn default() -> Self {
        Self::new()
    }
}

impl LrFind {
    /// Lightning's defaults.
    pub fn new() -> Self {
        LrFind {
            min_lr: 1e-8,
            max_lr: 1.0,
            num_training: 100,
            mode: LrFindMode::Exponential,
            early_stop_threshold: Some(4.0),
            rule: Suggestion::Lightning,
            update: NoUpdate,
        }
    }
}

impl<U> LrFind<U> {
    /// The first rate of the sweep (default 1e-8).
    pub fn min_lr(mut self, lr: f64) -> Self {
        self.min_lr = lr;
        self
    }
    /// The last rate of the sweep (default 1).
    pub fn max_lr(mut self, lr: f64) -> Self {
        self.max_lr = lr;
        self
    }
    /// Optimizer steps of the sweep, one rate each (default 100).
    pub fn num_training(mut self, steps: usize) -> Self {
        self.num_training = steps;
        self
    }
    /// How the rate grows (default exponentially).
    pub fn mode(mut self, mode: LrFindMode) -> Self {
        self.mode = mode;
        self
    }
    /// Stop when the smoothed loss exceeds this multiple of its best so far (default 4;
    /// `None` never stops early). A loss that is not finite always stops the sweep.
    pub fn early_stop_threshold(mut self, threshold: Option<f64>) -> Self {
        self.early_stop_threshold = threshold;
        self
    }
    /// Which point [`update_attr`](Self::update_attr) takes (default [`Suggestion::Lightning`]).
    pub fn suggest(mut self, rule: Suggestion) -> Self {
        self.rule = rule;
        self
    }
    /// Gives the module the suggestion after the sweep (Lightning's `update_attr=True`, which
    /// sets `model.lr` or `model.learning_rate`): `|m: &mut Model, lr| m.lr = lr`. The
    /// closure's argument type is checked against the module at compile time.
    pub fn update_attr<M, F: FnMut(&mut M, f64)>(self, set: F) -> LrFind<SetLr<F>> {
        LrFind {
            min_lr: self.min_lr,
            max_lr: self.max_lr,
            num_training: self.num_training,
            mode: self.mode,
            early_stop_threshold: self.early_stop_threshold,
            rule: self.rule,
            update: SetLr(set),
        }
    }

    /// The rate of `finder` that [`suggest`](Self::suggest)'s rule picks.
    pub(crate) fn chosen(&self, finder: &LrFinder) -> Option<f64> {
        match self.rule {
            Suggestion::Lightning => finder.suggestion(),
            Suggestion::FastestPerDecade => finder.fastest_per_decade(),
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Tuner(format!("lr_find: {what}")));
        let min_ok = if self.mode == LrFindMode::Exponential { self.min_lr > 0.0 } else { self.min_lr >= 0.0 };
        if !(min_ok && self.min_lr.is_finite()) {
            return bad(format!("min_lr is {}; it must be finite and > 0 (≥ 0 in linear mode)", self.min_lr));
        }
        if !(self.max_lr.is_finite() && self.max_lr > self.min_lr) {
            return bad(format!("max_lr is {}; it must be finite and above min_lr {}", self.max_lr, self.min_lr));
        }
        if self.num_training < 2 {
            return bad(format!("num_training is {}; the sweep needs at least 2 steps", self.num_training));
        }
        if let Some(t) = self.early_stop_threshold.filter(|t| !(t.is_finite() && *t > 0.0)) {
            return bad(format!("early_stop_threshold is {t}; it must be finite and > 0 (or None)"));
        }
        Ok(())
    }
}

impl<C, P: crate::Profiler> Tuner<'_, C, P> {
    /// The learning-rate range test with Lightning's defaults: see [`Tuner::lr_find_with`].
    pub fn lr_find<M, D>(&mut self, model: &mut M, data: D) -> Result<LrFinder>
    where
        M: LightningModule + HasTrainingStep + HasConfigureOptimizers,
        D: FitData<M>,
    {
        self.lr_find_with(model, data, LrFind::new())
    }

    /// Lightning's `Tuner.lr_find`: trains `num_training` optimizer steps on `data` (what
    /// `fit` takes) with the rate growing from `min_lr` to `max_lr` (every parameter group
    /// of the optimizer `configure_optimizers` returns gets the same rate, set before each
    /// step), records the smoothed loss after each step, stops when it diverges, then puts
    /// the module's weights back as they were. The optimizer of the sweep is dropped: the
    /// next `fit` calls `configure_optimizers` afresh. With [`LrFind::update_attr`], the
    /// module gets [`LrFinder::suggestion`].
    ///
    /// Errors: options out of range, a module under manual optimization (whose steps the
    /// sweep does not drive), and any error of the sweep's `fit` (after the weights are back).
    pub fn lr_find_with<M, D, U>(&mut self, model: &mut M, data: D, mut opts: LrFind<U>) -> Result<LrFinder>
    where
        M: LightningModule + HasTrainingStep + HasConfigureOptimizers,
        D: FitData<M>,
        U: UpdateLr<M>,
    {
        let (mut dm, train, val) = data.into_parts();
        sweep(self.trainer, model, dm.borrow_mut(), train, val, &mut opts)
    }
}

/// The range test on the data of a `fit` (what [`Tuner::lr_find_with`] and the
/// [`LearningRateFinder`](super::LearningRateFinder) callback run), with `trainer`'s flags.
pub(crate) fn sweep<C, P, M, DM, T, V, U>(
    trainer: &Trainer<C, P>,
    model: &mut M,
    dm: &mut DM,
    train: Option<T>,
    val: Option<V>,
    opts: &mut LrFind<U>,
) -> Result<LrFinder>
where
    P: crate::Profiler,
    M: LightningModule,
    DM: DataModule<Batch = M::Batch>,
    T: Loader<Batch = M::Batch>,
    V: Loaders<Batch = M::Batch>,
    U: UpdateLr<M>,
{
    opts.check()?;
    if !M::AUTOMATIC_OPTIMIZATION {
        return Err(Error::Tuner(format!(
            "lr_find needs automatic optimization; `{}` steps its optimizers itself (manual_optimization): sweep the rate in its `training_step` instead",
            M::NAME
        )));
    }
    let schedule =
        Schedule { min_lr: opts.min_lr, max_lr: opts.max_lr, num_training: opts.num_training, mode: opts.mode };
    let sweep = LrSweep::new(schedule, Smoother::new(BETA, opts.early_stop_threshold));
    let mut run = trainer.for_tuning((sweep,), |c| {
        c.max_steps = Some(opts.num_training);
        // a diverging loss is what the sweep looks for, not an error
        c.detect_anomaly = false;
    });
    let snapshot = Snapshot::take(model.parameters())?;
    let fitted = run.fit_inner(model, dm, train, val);
    let restored = snapshot.restore(model.parameters());
    fitted?;
    restored?;
    let sweep = &mut run.callbacks_mut().0;
    let (lrs, losses, raw) =
        (std::mem::take(&mut sweep.lrs), std::mem::take(&mut sweep.losses), std::mem::take(&mut sweep.raw));
    let finder = LrFinder { mode: opts.mode, lrs, losses, raw, stopped_early: sweep.diverged };
    if finder.stopped_early {
        let steps = finder.lrs.len();
        info(trainer, format_args!("LR finder stopped early after {steps} steps due to diverging loss."));
    }
    if opts.rule == Suggestion::Lightning {
        warn_if_far_below_fastest(trainer, &finder);
    }
    if U::ENABLED {
        match opts.chosen(&finder) {
            Some(lr) => {
                opts.update.update(model, lr);
                info(trainer, format_args!("Learning rate set to {lr:.3e}"));
            }
            None => info(
                trainer,
                format_args!("Failed to compute suggestion for learning rate because there are not enough points ({} after skipping 10 and 1). Increase num_training or the size of your dataset/dataloader; the learning rate was left as it was.", finder.lrs.len().saturating_sub(11)),
            ),
        }
    }
    Ok(finder)
}

/// Lightning's rule takes the steepest slope of the smoothed loss per unit of rate, which
/// a noisy loss (small batches) can put among the tiny first rates, where training has barely
/// begun. Lightning says nothing; a user would then train at a rate far too small. Said
/// when the suggestion is over 100× below the rate where the loss fell fastest per decade.
fn warn_if_far_below_fastest<C, P: crate::Profiler>(trainer: &Trainer<C, P>, finder: &LrFinder) {
    let (Some(lr), Some(fast)) = (finder.suggestion(), finder.fastest_per_decade()) else { return };
    if lr * 100.0 < fast {
        info(
            trainer,
            format_args!(
                "LR finder: the suggestion {lr:.3e} is {:.0}x below {fast:.3e}, where the loss fell fastest per decade of rate (`LrFinder::fastest_per_decade`). On a noisy loss curve (small batches) Lightning's rule, the steepest slope per unit of rate, picks the tiny first rates. Look at `plot()` and choose the rate yourself, or sweep with larger batches.",
                fast / lr
            ),
        );
    }
}
