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
    /// Each step's own loss, unsmoothed (for [`LrFinder::fastest_per_decade`]).
    pub(crate) raw: Vec<f64>,
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
        let end = self.losses.len().saturating_sub(skip_end);
        let kept: Vec<usize> = (skip_begin..end).filter(|&i| self.losses[i].is_finite()).collect();
        if kept.len() < 2 {
            return None;
        }
        let x: Vec<f64> = kept.iter().map(|&i| self.lrs[i]).collect();
        let y: Vec<f64> = kept.iter().map(|&i| self.losses[i]).collect();
        let g = gradient(&y, &x);
        // the first minimum, as torch.argmin
        let best = (0..g.len()).fold(0, |b, i| if g[i] < g[b] { i } else { b });
        Some(kept[best])
    }

    /// Not Lightning's: the rate where the loss falls fastest per decade of rate (fastai's
    /// "steep" point). It reads each step's own loss, averaged over a centred window of
    /// 11 steps (no lag, unlike the recorded exponential smoothing, whose
    /// start-up Lightning corrects so that its first points climb), and takes the steepest
    /// slope against the rate's logarithm. On a noisy loss Lightning's rule, the steepest
    /// slope per unit of rate, favours the tiny first rates; this one does not.
    pub fn fastest_per_decade(&self) -> Option<f64> {
        let half = PER_DECADE_WINDOW / 2;
        let kept: Vec<usize> = (0..self.raw.len()).filter(|&i| self.raw[i].is_finite() && self.lrs[i] > 0.0).collect();
        if kept.len() < PER_DECADE_WINDOW + 2 {
            return None;
        }
        let mean = |w: &[usize]| w.iter().map(|&i| self.raw[i]).sum::<f64>() / w.len() as f64;
        let centres = &kept[half..kept.len() - half];
        let ys: Vec<f64> = kept.windows(2 * half + 1).map(mean).collect();
        let xs: Vec<f64> = centres.iter().map(|&i| self.lrs[i].ln()).collect();
        let g = gradient(&ys, &xs);
        let best = (0..g.len()).fold(0, |b, i| if g[i] < g[b] { i } else { b });
        Some(self.lrs[centres[best]])
    }
}

/// Steps averaged around each point by [`LrFinder::fastest_per_decade`].
const PER_DECADE_WINDOW: usize = 11;

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
        let f = LrFinder { mode: LrFindMode::Linear, lrs, losses, raw: Vec::new(), stopped_early: false };
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
        // rates 1e-6 .. 1e0, a decade every 10 steps; the loss falls around 1e-2 with noise
        // of ±0.05 on every step (steep per unit of rate where the rates are tiny)
        let lrs: Vec<f64> = (0..61).map(|i| 10f64.powf(-6.0 + i as f64 / 10.0)).collect();
        let raw: Vec<f64> = lrs
            .iter()
            .enumerate()
            .map(|(i, lr)| 1.0 / (1.0 + (lr / 1e-2).powi(2)) + if i % 2 == 0 { 0.05 } else { -0.05 })
            .collect();
        let f = LrFinder { mode: LrFindMode::Exponential, lrs, losses: raw.clone(), raw, stopped_early: false };
        assert!(f.suggestion().unwrap() < 1e-4, "Lightning's rule takes the noise");
        let fast = f.fastest_per_decade().unwrap();
        assert!((5e-3..2e-2).contains(&fast), "{fast}");
        let short = LrFinder { raw: vec![1.0; 12], lrs: vec![1.0; 12], ..f.clone() };
        assert_eq!(short.fastest_per_decade(), None, "fewer points than the window and two more");
    }
}
