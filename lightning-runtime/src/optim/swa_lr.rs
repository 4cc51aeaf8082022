//! torch's `SWALR` (`torch/optim/swa_utils.py`): anneals each parameter group's learning rate
//! from where it stands to its SWA rate over `anneal_epochs` epochs, then holds it there.
//! `StochasticWeightAveraging` puts it in place of the module's scheduler.

use serde::{Deserialize, Serialize};

use super::Anneal;

/// SWALR's state: the rates now, the targets and torch's step count. Stepped once per epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SwaLr {
    /// Each group's rate now (torch's `group["lr"]`).
    lrs: Vec<f64>,
    /// Each group's SWA rate (`group["swa_lr"]`).
    swa_lrs: Vec<f64>,
    anneal_epochs: usize,
    strategy: Anneal,
    /// torch's `_step_count`: 1 once built (its constructor steps once), +1 a step.
    step_count: usize,
    /// Whether the loop has said that it replaced the module's scheduler.
    #[serde(skip)]
    pub announced: bool,
}

impl SwaLr {
    /// torch's `SWALR(optimizer, swa_lr, anneal_epochs, anneal_strategy)` over groups whose
    /// rates are `lrs`: the constructor's step leaves them as they are, unless
    /// `anneal_epochs` is 0, when the SWA rates apply at once.
    pub fn new(lrs: Vec<f64>, swa_lrs: Vec<f64>, anneal_epochs: usize, strategy: Anneal) -> Self {
        let mut s = SwaLr { lrs, swa_lrs, anneal_epochs, strategy, step_count: 0, announced: false };
        s.step();
        s
    }

    /// One epoch: torch's `get_lr`, which recovers the rate annealing started from (`prev_lrs`)
    /// and moves `alpha(t)` of the way from it to the SWA rate, `t = step / anneal_epochs`.
    pub fn step(&mut self) {
        self.step_count += 1;
        let step = self.step_count - 1;
        let step = if self.anneal_epochs == 0 { step.max(1) } else { step };
        let span = self.anneal_epochs.max(1) as f64;
        let prev_alpha = self.alpha((step as f64 - 1.0) / span);
        let alpha = self.alpha(step as f64 / span);
        for (lr, &swa) in self.lrs.iter_mut().zip(&self.swa_lrs) {
            let prev = if prev_alpha == 1.0 { swa } else { (*lr - prev_alpha * swa) / (1.0 - prev_alpha) };
            *lr = swa * alpha + prev * (1.0 - alpha);
        }
    }

    /// torch's `anneal_func` at `t`, clamped to [0, 1]: `(1 - cos(πt)) / 2` or `t`.
    fn alpha(&self, t: f64) -> f64 {
        let t = t.clamp(0.0, 1.0);
        match self.strategy {
            Anneal::Cos => (1.0 - (std::f64::consts::PI * t).cos()) / 2.0,
            Anneal::Linear => t,
        }
    }

    /// Each group's rate now.
    pub fn rates(&self) -> &[f64] {
        &self.lrs
    }

    /// What is wrong with a state read back from a checkpoint, if anything.
    pub fn invalid(&self) -> Option<String> {
        if self.lrs.is_empty() || self.lrs.len() != self.swa_lrs.len() {
            return Some(format!("has {} rates for {} SWA rates", self.lrs.len(), self.swa_lrs.len()));
        }
        if self.step_count == 0 {
            return Some("has step_count 0: SWALR steps once when built".to_string());
        }
        let bad = |v: &f64| !(v.is_finite() && *v >= 0.0);
        self.lrs.iter().chain(&self.swa_lrs).find(|v| bad(v)).map(|v| format!("has the rate {v}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The closed form torch's recurrence follows: `lr0 + (swa - lr0) · alpha(min(1, k / A))`
    /// after `k` epoch steps.
    fn closed(lr0: f64, swa: f64, k: usize, a: usize, cos: bool) -> f64 {
        let t = if a == 0 { 1.0 } else { (k as f64 / a as f64).min(1.0) };
        let alpha = if cos { (1.0 - (std::f64::consts::PI * t).cos()) / 2.0 } else { t };
        lr0 + (swa - lr0) * alpha
    }

    #[test]
    fn anneals_each_group_from_its_rate_to_its_swa_rate() {
        for (strategy, cos) in [(Anneal::Cos, true), (Anneal::Linear, false)] {
            let mut s = SwaLr::new(vec![0.1, 0.3], vec![0.02, 0.05], 4, strategy);
            for k in 0..8 {
                for (g, (lr0, swa)) in [(0.1, 0.02), (0.3, 0.05)].into_iter().enumerate() {
                    let want = closed(lr0, swa, k, 4, cos);
                    assert!((s.rates()[g] - want).abs() < 1e-12, "{strategy:?} step {k} group {g}: {:?}", s.rates());
                }
                s.step();
            }
            assert_eq!(s.rates(), [0.02, 0.05], "held at the SWA rates after annealing");
        }
    }

    #[test]
    fn cosine_halfway_is_the_midpoint_and_no_annealing_starts_at_the_swa_rate() {
        let mut s = SwaLr::new(vec![0.1], vec![0.02], 2, Anneal::Cos);
        assert_eq!(s.rates(), [0.1], "the constructor's step keeps the rate");
        s.step();
        assert!((s.rates()[0] - 0.06).abs() < 1e-15, "{:?}", s.rates());
        s.step();
        assert_eq!(s.rates(), [0.02]);
        // anneal_epochs = 0: torch's `step = max(1, step)` puts the SWA rate in at once
        assert_eq!(SwaLr::new(vec![0.1], vec![0.02], 0, Anneal::Cos).rates(), [0.02]);
    }
}
