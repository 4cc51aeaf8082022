//! What `lr_find` returns: the sweep's (rate, smoothed loss) points and the suggestion at
//! the steepest descent of the loss (Lightning's `_LRFinder.results` and `suggestion`).

use super::LrFindMode;

/// The result of [`Tuner::lr_find`](super::Tuner::lr_find): one point per optimizer step of
/// the sweep, the rate it ran at and the smoothed loss after it.
#[derive(Debug, Clone, PartialEq)]
pub struct LrFinder {
    pub(crate) mode: LrFindMode,
    pub(crate) lrs: Vec<f64>,
    pub(crate) losses: Vec<f64>,
    pub(crate) stopped_early: bool,
}

impl LrFinder {
    /// The rate of each step (Lightning's `results["lr"]`).
    pub fn lrs(&self) -> &[f64] {
        &self.lrs
    }

    /// The smoothed loss after each step (Lightning's `results["loss"]`).
    pub fn losses(&self) -> &[f64] {
        &self.losses
    }

    /// `(rate, smoothed loss)` pairs, in sweep order.
    pub fn points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.lrs.iter().copied().zip(self.losses.iter().copied())
    }

    /// How the rate grew.
    pub fn mode(&self) -> LrFindMode {
        self.mode
    }

    /// Whether the loss diverged (`early_stop_threshold`) before `num_training` steps.
    pub fn stopped_early(&self) -> bool {
        self.stopped_early
    }

    /// The rate at the steepest descent of the smoothed loss, skipping the first 10 and the
    /// last point (Lightning's `suggestion()`); `None` with fewer than 2 finite points left.
    pub fn suggestion(&self) -> Option<f64> {
        self.suggestion_with(10, 1)
    }

    /// [`suggestion`](Self::suggestion) with other skips. The point is the one whose loss
    /// gradient with respect to the rate (not its logarithm, as Lightning's
    /// `torch.gradient(losses, spacing=[lrs])`: second-order central differences on
    /// uneven spacing, one-sided at the ends) is most negative, among the finite losses.
    /// Unlike Python's slice `[skip_begin:-0]`, `skip_end = 0` skips nothing.
    pub fn suggestion_with(&self, skip_begin: usize, skip_end: usize) -> Option<f64> {
        self.optimal_index(skip_begin, skip_end).map(|i| self.lrs[i])
    }

    /// The index of the suggested point (Lightning's `_optimal_idx`).
    pub fn optimal_index(&self, skip_begin: usize, skip_end: usize) -> Option<usize> {
        self.steepest(skip_begin, skip_end, Some)
    }

    /// Not Lightning's: the rate where the smoothed loss falls fastest per decade of rate
    /// (the steepest slope against the rate's logarithm, fastai's "steep" point), with the
    /// same skips as [`suggestion`](Self::suggestion). On a noisy loss Lightning's rule,
    /// the steepest slope per unit of rate, favours the tiny first rates; this one does not.
    pub fn fastest_per_decade(&self) -> Option<f64> {
        self.steepest(10, 1, |lr| (lr > 0.0).then(|| lr.ln())).map(|i| self.lrs[i])
    }

    /// The index of the steepest descent of the finite losses against `x(rate)`, between the
    /// skips (points where `x` is `None` are left out).
    fn steepest(&self, skip_begin: usize, skip_end: usize, x: impl Fn(f64) -> Option<f64>) -> Option<usize> {
        let end = self.losses.len().saturating_sub(skip_end);
        let kept: Vec<(usize, f64)> = (skip_begin..end)
            .filter(|&i| self.losses[i].is_finite())
            .filter_map(|i| x(self.lrs[i]).map(|x| (i, x)))
            .collect();
        if kept.len() < 2 {
            return None;
        }
        let xs: Vec<f64> = kept.iter().map(|&(_, x)| x).collect();
        let ys: Vec<f64> = kept.iter().map(|&(i, _)| self.losses[i]).collect();
        let g = gradient(&ys, &xs);
        // the first minimum, as torch.argmin
        let best = (0..g.len()).fold(0, |b, i| if g[i] < g[b] { i } else { b });
        Some(kept[best].0)
    }
}

/// `torch.gradient(y, spacing=[x])` with `edge_order=1`: at interior points the
/// second-order formula for uneven spacing, at the ends one-sided differences.
pub(crate) fn gradient(y: &[f64], x: &[f64]) -> Vec<f64> {
    let n = y.len();
    let mut g = vec![0.0; n];
    g[0] = (y[1] - y[0]) / (x[1] - x[0]);
    g[n - 1] = (y[n - 1] - y[n - 2]) / (x[n - 1] - x[n - 2]);
    for i in 1..n - 1 {
        let (hl, hr) = (x[i] - x[i - 1], x[i + 1] - x[i]);
        g[i] = (hl * hl * y[i + 1] - hr * hr * y[i - 1] + (hr * hr - hl * hl) * y[i]) / (hl * hr * (hl + hr));
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_is_torchs_on_uneven_spacing() {
        // y = x²: the second-order formula is exact inside, the ends are one-sided
        let x = [0.0, 1.0, 3.0, 4.0];
        let y: Vec<f64> = x.iter().map(|v| v * v).collect();
        let g = gradient(&y, &x);
        assert_eq!(g, vec![1.0, 2.0, 6.0, 7.0]);
    }

    #[test]
    fn suggestion_is_the_steepest_descent_after_the_skips() {
        let lrs: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let mut losses = vec![10.0; 20];
        // a fall of 5 between 14 and 15: the central difference is steepest at 15 (-2.55, 14 has
        // -2.5); the skipped start falls faster still
        losses[1] = 0.0;
        for (i, l) in losses.iter_mut().enumerate().skip(15) {
            *l = 10.0 - 5.0 - (i as f64 - 15.0) * 0.1;
        }
        let f = LrFinder { mode: LrFindMode::Linear, lrs, losses, stopped_early: false };
        assert_eq!(f.optimal_index(10, 1), Some(15));
        assert_eq!(f.suggestion(), Some(15.0));
        assert_eq!(f.optimal_index(0, 1), Some(0));
        let short = LrFinder { lrs: vec![1.0; 11], losses: vec![1.0; 11], ..f.clone() };
        assert_eq!(short.suggestion(), None, "fewer than 2 points after the skips");
        let mut nan = f.clone();
        nan.losses[15] = f64::NAN;
        // without 15, uneven spacing: 14 gets -0.85, 16 gets -0.917
        assert_eq!(nan.optimal_index(10, 1), Some(16), "non-finite losses are left out");
    }

    #[test]
    fn fastest_per_decade_is_steepest_against_the_log_rate() {
        // rates 1e-6 .. 1e0 a decade every 10 points; a noisy dip at the third kept point
        // (steep per unit of rate, where the rates are tiny) and the real fall around 1e-2
        let lrs: Vec<f64> = (0..61).map(|i| 10f64.powf(-6.0 + i as f64 / 10.0)).collect();
        let mut losses: Vec<f64> = lrs.iter().map(|lr| 1.0 / (1.0 + (lr / 1e-2).powi(2))).collect();
        losses[12] -= 0.01;
        let f = LrFinder { mode: LrFindMode::Exponential, lrs, losses, stopped_early: false };
        assert!(f.suggestion().unwrap() < 1e-4, "Lightning's rule takes the dip");
        let fast = f.fastest_per_decade().unwrap();
        assert!((5e-3..2e-2).contains(&fast), "{fast}");
    }
}
