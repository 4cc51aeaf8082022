//! `StochasticWeightAveraging`: Lightning's SWA callback (torch's `swa_utils`): from a start
//! epoch, SWALR anneals the learning rate to the SWA rates and the weights at the end of
//! each epoch join an equal-weight running mean, which the module keeps at the end of `fit`.

use std::collections::BTreeMap;
use std::ops::Range;

use candle_core::{Tensor, Var};

use super::swa_state::{self, Saved};
use crate::optim::swa_lr::SwaLr;
use crate::optim::Anneal;
use crate::{Checkpoint, Error, HasParameters, Result, TrainerState};

/// Prefix of the averages' names among a checkpoint's tensors.
pub(super) const PREFIX: &str = "swa/";

/// How the running average takes in one more epoch's weights: `(averaged, current,
/// num_averaged) -> new average` (Lightning's `avg_fn`). [`equal_mean`] is the default.
pub type AvgFn = fn(averaged: &Tensor, current: &Tensor, num_averaged: usize) -> candle_core::Result<Tensor>;

/// The equal-weight running mean (torch's default `avg_fn`):
/// `averaged + (current − averaged) / (num_averaged + 1)`.
pub fn equal_mean(averaged: &Tensor, current: &Tensor, num_averaged: usize) -> candle_core::Result<Tensor> {
    averaged + (current - averaged)?.affine(1.0 / (num_averaged as f64 + 1.0), 0.0)?
}

/// Where SWA starts (Lightning's `swa_epoch_start`): `Epoch(n)` is the `n`-th epoch, counted
/// from 1; `Fraction(f)` starts at the `⌊f · max_epochs⌋`-th. `3` and `0.8` convert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SwaEpochStart {
    /// The `n`-th epoch, counted from 1 (0-based epoch `n − 1`); at least 1.
    Epoch(usize),
    /// A fraction of `max_epochs` in [0, 1]: the `⌊f · max_epochs⌋`-th epoch, counted from 1
    /// (the first epoch when that is 0).
    Fraction(f64),
}

impl From<usize> for SwaEpochStart {
    fn from(n: usize) -> Self {
        SwaEpochStart::Epoch(n)
    }
}

impl From<f64> for SwaEpochStart {
    fn from(f: f64) -> Self {
        SwaEpochStart::Fraction(f)
    }
}

/// Lightning's `StochasticWeightAveraging` (Izmailov et al., 2018): from `swa_epoch_start`
/// the learning rate follows torch's `SWALR` (from the rate in force to `swa_lrs`, over
/// `annealing_epochs` epochs along a cosine or a line; it replaces the module's scheduler,
/// which no longer steps), the weights at the end of each epoch from then on join a running
/// average, and when `fit` has run its last epoch the module keeps the average.
///
/// Checkpoints keep the average (`swa/<name>` tensors in `extra.safetensors`), `n_averaged`
/// and SWALR's state, so a resumed `fit` continues exactly. One optimizer, automatic
/// optimization and an epoch limit are needed (errors otherwise, at fit start, as are
/// `swa_lrs` that do not match the optimizer's parameter groups and a start past
/// `max_epochs`).
///
/// ```
/// use lightning::prelude::*;
///
/// # fn main() -> lightning::Result<()> {
/// // SGD at 0.1 for 6 epochs; from the 4th, the rate anneals to 0.01 over 2 epochs
/// let swa = StochasticWeightAveraging::new(0.01)?.swa_epoch_start(4)?.annealing_epochs(2);
/// let trainer = Trainer::builder().max_epochs(6).callbacks((swa,)).build()?;
/// # let _ = trainer;
/// // per parameter group, from 80% of max_epochs (the default), linear annealing:
/// let swa = StochasticWeightAveraging::new([0.01, 0.002])?
///     .swa_epoch_start(0.8)?
///     .annealing_strategy(Anneal::Linear);
/// assert_eq!(swa.n_averaged(), 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct StochasticWeightAveraging {
    swa_lrs: Vec<f64>,
    start: SwaEpochStart,
    annealing_epochs: usize,
    annealing_strategy: Anneal,
    avg_fn: AvgFn,
    /// The 0-based epochs whose weights are averaged, resolved at fit start.
    window: Range<usize>,
    average: BTreeMap<String, Tensor>,
    n_averaged: usize,
    latest_update_epoch: Option<usize>,
    /// What a checkpoint held, used by the next `on_fit_start`.
    restored: (Option<Saved>, BTreeMap<String, Tensor>),
}

impl StochasticWeightAveraging {
    /// `swa_lrs`: one rate for every parameter group (`0.01`), or one per group
    /// (`[0.01, 0.002]`, `vec![..]`); each finite and above 0, else an error. Lightning's
    /// defaults for the rest: `swa_epoch_start` 0.8, `annealing_epochs` 10, cosine annealing,
    /// the equal-weight mean.
    pub fn new(swa_lrs: impl Into<SwaLrs>) -> Result<Self> {
        let swa_lrs = swa_lrs.into().0;
        if swa_lrs.is_empty() {
            return Err(Error::config("swa_lrs", "give one rate, or one per parameter group"));
        }
        if let Some(lr) = swa_lrs.iter().find(|lr| !(lr.is_finite() && **lr > 0.0)) {
            return Err(Error::config("swa_lrs", format!("each SWA learning rate must be finite and > 0, got {lr}")));
        }
        Ok(StochasticWeightAveraging {
            swa_lrs,
            start: SwaEpochStart::Fraction(0.8),
            annealing_epochs: 10,
            annealing_strategy: Anneal::Cos,
            avg_fn: equal_mean,
            window: 0..0,
            average: BTreeMap::new(),
            n_averaged: 0,
            latest_update_epoch: None,
            restored: (None, BTreeMap::new()),
        })
    }

    /// Lightning's `swa_epoch_start`: an epoch counted from 1 (`3`: at least 1, at most
    /// `max_epochs`, checked at fit start) or a fraction of `max_epochs` (`0.8`: in [0, 1]).
    pub fn swa_epoch_start(mut self, start: impl Into<SwaEpochStart>) -> Result<Self> {
        self.start = start.into();
        match self.start {
            SwaEpochStart::Epoch(0) => {
                Err(Error::config("swa_epoch_start", "epochs count from 1 here, as in Lightning: give at least 1"))
            }
            SwaEpochStart::Fraction(f) if !(0.0..=1.0).contains(&f) => {
                Err(Error::config("swa_epoch_start", format!("a fraction of max_epochs is in [0, 1], got {f}")))
            }
            _ => Ok(self),
        }
    }

    /// Epochs SWALR takes from the rate in force to `swa_lrs` (default 10; 0: at once).
    pub fn annealing_epochs(mut self, epochs: usize) -> Self {
        self.annealing_epochs = epochs;
        self
    }

    /// `Anneal::Cos` (default: weights `(1 − cos(πt)) / 2`) or `Anneal::Linear`.
    pub fn annealing_strategy(mut self, strategy: Anneal) -> Self {
        self.annealing_strategy = strategy;
        self
    }

    /// Lightning's `avg_fn`: how the average takes in an epoch's weights (default [`equal_mean`]).
    pub fn avg_fn(mut self, avg_fn: AvgFn) -> Self {
        self.avg_fn = avg_fn;
        self
    }

    /// How many epochs' weights are in the average (Lightning's `n_averaged`).
    pub fn n_averaged(&self) -> usize {
        self.n_averaged
    }

    /// The averaged value of one variable, by its `VarMap` name, once an epoch was averaged.
    pub fn average(&self, name: &str) -> Option<&Tensor> {
        self.average.get(name)
    }

    /// The 0-based epochs SWA averages in the last `fit` (empty before one).
    pub fn swa_epochs(&self) -> Range<usize> {
        self.window.clone()
    }

    /// Lightning's checks at fit start; resolves the window of SWA epochs.
    fn resolve(&self, trainer: &TrainerState) -> Result<Range<usize>> {
        let name = "StochasticWeightAveraging";
        if !trainer.automatic_optimization {
            return Err(Error::config(
                name,
                "not with manual optimization: SWALR replaces a scheduler the trainer steps",
            ));
        }
        let Some(max) = trainer.max_epochs else {
            return Err(Error::config(
                "max_epochs",
                "StochasticWeightAveraging runs to the last epoch: set max_epochs",
            ));
        };
        let groups = trainer.learning_rates.len();
        if self.swa_lrs.len() != 1 && self.swa_lrs.len() != groups {
            let n = self.swa_lrs.len();
            let reason = format!("{n} rates for an optimizer of {groups} parameter groups: give one, or one per group");
            return Err(Error::config("swa_lrs", reason));
        }
        let first = match self.start {
            SwaEpochStart::Epoch(n) if n > max => {
                let reason = format!("epoch {n} is past max_epochs={max}: SWA would never start");
                return Err(Error::config("swa_epoch_start", reason));
            }
            SwaEpochStart::Epoch(n) => n - 1,
            // Lightning: int(max_epochs * f), counted from 1
            SwaEpochStart::Fraction(f) => ((max as f64 * f).floor() as usize).saturating_sub(1),
        };
        Ok(first..max)
    }

    /// The weights to average, by name: the f32 master weights under mixed precision, else
    /// the module's variables.
    fn weights<'a>(
        trainer: &'a TrainerState,
        data: &'a std::collections::HashMap<String, Var>,
    ) -> Vec<(&'a str, &'a Var)> {
        data.iter().map(|(k, v)| (k.as_str(), trainer.masters.get(&v.id()).unwrap_or(v))).collect()
    }

    /// Takes this epoch's weights into the average.
    fn update(&mut self, trainer: &TrainerState, module: &impl HasParameters) -> Result<()> {
        let data = module.parameters().data().lock().unwrap_or_else(|p| p.into_inner());
        for (name, var) in Self::weights(trainer, &data) {
            // a copy: the optimizer updates the variable's storage in place
            let current = var.as_tensor().detach().copy()?;
            let avg = match self.average.get(name) {
                Some(avg) if self.n_averaged > 0 => (self.avg_fn)(avg, &current, self.n_averaged)?,
                _ => current,
            };
            self.average.insert(name.to_string(), avg);
        }
        self.n_averaged += 1;
        Ok(())
    }

    /// The module (and its master weights) takes the average.
    fn transfer(&self, trainer: &TrainerState, module: &impl HasParameters) -> Result<()> {
        let data = module.parameters().data().lock().unwrap_or_else(|p| p.into_inner());
        for (name, var) in data.iter() {
            let Some(avg) = self.average.get(name) else { continue };
            if let Some(master) = trainer.masters.get(&var.id()) {
                master.set(avg)?;
            }
            var.set(&avg.to_device(var.device())?.to_dtype(var.dtype())?)?;
        }
        Ok(())
    }

    /// Continues from a checkpoint's state, if one was loaded, or starts afresh.
    fn restore(&mut self, trainer: &mut TrainerState, module: &impl HasParameters) -> Result<()> {
        let (saved, tensors) = std::mem::take(&mut self.restored);
        (self.average, self.n_averaged, self.latest_update_epoch) = (BTreeMap::new(), 0, None);
        let Some(saved) = saved else { return Ok(()) };
        if saved.n_averaged > 0 {
            let data = module.parameters().data().lock().unwrap_or_else(|p| p.into_inner());
            self.average = swa_state::averages(&Self::weights(trainer, &data), &tensors)?;
        }
        (self.n_averaged, self.latest_update_epoch) = (saved.n_averaged, saved.latest_update_epoch);
        if let Some(swa) = saved.scheduler {
            swa_state::check_groups(&swa, trainer.learning_rates.len())?;
            trainer.replace_lr_scheduler(swa);
        }
        Ok(())
    }

    /// SWALR in place of the module's scheduler, from the rates in force.
    fn start_schedule(&self, trainer: &mut TrainerState) {
        let epoch = trainer.current_epoch;
        if epoch != self.window.start {
            crate::dist::rank_zero_warn(format_args!(
                "StochasticWeightAveraging starts at epoch {epoch}, after its first epoch {}, without a saved state \
                 (a checkpoint from before it was added?): its schedule and average begin now",
                self.window.start
            ));
        }
        let lrs: Vec<f64> = trainer.learning_rates.iter().map(|(_, lr)| *lr).collect();
        let swa_lrs = match self.swa_lrs[..] {
            [one] => vec![one; lrs.len()],
            _ => self.swa_lrs.clone(),
        };
        trainer.replace_lr_scheduler(SwaLr::new(lrs, swa_lrs, self.annealing_epochs, self.annealing_strategy));
    }
}

/// What `StochasticWeightAveraging::new` takes: one rate, or one per parameter group.
#[derive(Debug, Clone, PartialEq)]
pub struct SwaLrs(pub Vec<f64>);

impl From<f64> for SwaLrs {
    fn from(lr: f64) -> Self {
        SwaLrs(vec![lr])
    }
}

impl From<Vec<f64>> for SwaLrs {
    fn from(lrs: Vec<f64>) -> Self {
        SwaLrs(lrs)
    }
}

impl From<&[f64]> for SwaLrs {
    fn from(lrs: &[f64]) -> Self {
        SwaLrs(lrs.to_vec())
    }
}

impl<const N: usize> From<[f64; N]> for SwaLrs {
    fn from(lrs: [f64; N]) -> Self {
        SwaLrs(lrs.to_vec())
    }
}

#[lightning_macros::callback]
impl StochasticWeightAveraging {
    fn on_fit_start(&mut self, trainer: &mut TrainerState, module: &mut impl HasParameters) -> Result<()> {
        self.window = self.resolve(trainer)?;
        swa_state::warn_batch_norm(module);
        self.restore(trainer, module)
    }

    fn on_train_epoch_start(&mut self, trainer: &mut TrainerState) {
        if trainer.replaced_scheduler.is_none() && self.window.contains(&trainer.current_epoch) {
            self.start_schedule(trainer);
        }
    }

    fn on_train_epoch_end(&mut self, trainer: &mut TrainerState, module: &mut impl HasParameters) -> Result<()> {
        let epoch = trainer.current_epoch;
        // an epoch stopped part-way is averaged when a resumed run finishes it
        let done = self.latest_update_epoch.is_some_and(|e| e >= epoch);
        if trainer.at_epoch_end && self.window.contains(&epoch) && !done {
            self.update(trainer, module)?;
            self.latest_update_epoch = Some(epoch);
        }
        Ok(())
    }

    fn on_train_end(&mut self, trainer: &mut TrainerState, module: &mut impl HasParameters) -> Result<()> {
        let Some(last) = self.window.end.checked_sub(1) else { return Ok(()) };
        if self.latest_update_epoch == Some(last) {
            return self.transfer(trainer, module);
        }
        // as Lightning: a fit stopped before the last epoch keeps its trained weights
        let epoch = trainer.current_epoch;
        crate::dist::rank_zero_warn(format_args!(
            "StochasticWeightAveraging: fit ended after {epoch} epochs, before the last SWA epoch ({last}, 0-based), with {} epochs \
             averaged: the module keeps its trained weights (a resumed fit goes on averaging)",
            self.n_averaged
        ));
        Ok(())
    }

    fn state_dict(&mut self, trainer: &mut TrainerState) -> serde_json::Value {
        Saved::of(self.n_averaged, self.latest_update_epoch, trainer.replaced_scheduler.as_ref())
    }

    fn load_state_dict(&mut self, state_dict: &serde_json::Value) -> Result<()> {
        self.restored.0 = Some(Saved::read(state_dict)?);
        Ok(())
    }

    fn on_save_checkpoint(&mut self, checkpoint: &mut Checkpoint) {
        for (name, avg) in &self.average {
            checkpoint.tensors.insert(format!("{PREFIX}{name}"), avg.clone());
        }
    }

    fn on_load_checkpoint(&mut self, checkpoint: &mut Checkpoint) {
        self.restored.1 = checkpoint
            .tensors
            .iter()
            .filter_map(|(k, t)| Some((k.strip_prefix(PREFIX)?.to_string(), t.clone())))
            .collect();
    }
}
