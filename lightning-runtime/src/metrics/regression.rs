//! Regression metrics from running sums: mean squared and absolute error, and R².

use candle_core::Tensor;

use super::input::{error, pairs};
use super::{sync, Metric};
use crate::dist::Collective;
use crate::Result;

fn empty(metric: &'static str) -> crate::Error {
    error(metric, "computed before any update (or after a reset): there is nothing to compute")
}

macro_rules! mean_error {
    ($(#[$doc:meta])* $name:ident, $label:literal, $err:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default)]
        pub struct $name {
            /// (sum of errors, elements).
            state: [f64; 2],
        }

        impl $name {
            /// A metric with no updates yet.
            pub fn new() -> Self {
                Self::default()
            }
        }

        impl Metric for $name {
            /// `(&preds, &target)`, of the same shape; every element counts once.
            type Input<'a> = (&'a Tensor, &'a Tensor);
            type Output = f64;
            fn update(&mut self, (preds, target): Self::Input<'_>) -> Result<()> {
                let (p, t) = pairs($label, preds, target)?;
                self.state[0] += p.iter().zip(&t).map(|(p, t)| $err(p - t)).sum::<f64>();
                self.state[1] += p.len() as f64;
                Ok(())
            }
            fn compute(&self) -> Result<f64> {
                if self.state[1] == 0.0 {
                    return Err(empty($label));
                }
                Ok(self.state[0] / self.state[1])
            }
            fn reset(&mut self) {
                self.state = [0.0; 2];
            }
            fn sync(&mut self, world: &dyn Collective) -> Result<()> {
                sync::sum(world, &mut self.state)
            }
        }
    };
}

mean_error!(
    /// Mean squared error over every element.
    MeanSquaredError, "MeanSquaredError", |d: f64| d * d
);
mean_error!(
    /// Mean absolute error over every element.
    MeanAbsoluteError, "MeanAbsoluteError", |d: f64| d.abs()
);

/// R², 1 − SS_res / SS_tot, with every element of the target as one output (scikit-learn's
/// `r2_score` on flat arrays).
#[derive(Clone, Debug, Default)]
pub struct R2Score {
    /// (elements, Σ target, Σ target², Σ (target − pred)²).
    state: [f64; 4],
}

impl R2Score {
    /// A metric with no updates yet (torchmetrics' `R2Score()`).
    pub fn new() -> Self {
        Self::default()
    }
}

impl Metric for R2Score {
    /// `(&preds, &target)`, of the same shape.
    type Input<'a> = (&'a Tensor, &'a Tensor);
    type Output = f64;
    fn update(&mut self, (preds, target): Self::Input<'_>) -> Result<()> {
        let (p, t) = pairs("R2Score", preds, target)?;
        self.state[0] += t.len() as f64;
        self.state[1] += t.iter().sum::<f64>();
        self.state[2] += t.iter().map(|t| t * t).sum::<f64>();
        self.state[3] += p.iter().zip(&t).map(|(p, t)| (t - p) * (t - p)).sum::<f64>();
        Ok(())
    }
    fn compute(&self) -> Result<f64> {
        let [n, sum, sum_sq, residual] = self.state;
        if n < 2.0 {
            return Err(error("R2Score", format!("needs at least 2 samples, has {n}")));
        }
        let total = sum_sq - sum * sum / n;
        if total <= 0.0 {
            return Err(error("R2Score", "the target is constant, so R² is undefined"));
        }
        Ok(1.0 - residual / total)
    }
    fn reset(&mut self) {
        self.state = [0.0; 4];
    }
    fn sync(&mut self, world: &dyn Collective) -> Result<()> {
        sync::sum(world, &mut self.state)
    }
}
