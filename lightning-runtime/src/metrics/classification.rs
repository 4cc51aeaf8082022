//! Multiclass classification metrics from a confusion matrix's counts: accuracy (top-k),
//! precision, recall, F1 (macro or micro averaged) and the matrix itself.

use candle_core::Tensor;

use super::input::{error, labels, predicted, score_rows};
use super::{sync, Metric};
use crate::dist::Collective;
use crate::Result;

/// How per-class values become one (torchmetrics' and scikit-learn's `average`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Average {
    /// The unweighted mean over every class; a class never predicted (or never present)
    /// counts as 0, as scikit-learn's `zero_division=0`.
    #[default]
    Macro,
    /// From the counts summed over the classes (equal to the accuracy for precision,
    /// recall and F1 of single-label data).
    Micro,
}

/// `num_classes` × `num_classes` counts, row = true class, column = predicted class.
#[derive(Clone, Debug)]
struct Counts {
    num_classes: usize,
    cells: Vec<f64>,
}

impl Counts {
    fn new(num_classes: usize) -> Self {
        Counts { num_classes, cells: vec![0.0; num_classes * num_classes] }
    }

    fn update(&mut self, metric: &'static str, preds: &Tensor, target: &Tensor) -> Result<()> {
        check_classes(metric, self.num_classes)?;
        let truth = labels(metric, target, self.num_classes)?;
        let guess = predicted(metric, preds, truth.len(), self.num_classes)?;
        for (t, p) in truth.into_iter().zip(guess) {
            self.cells[t * self.num_classes + p] += 1.0;
        }
        Ok(())
    }

    /// Per class: (true positives, predicted as it, truly it).
    fn per_class(&self, metric: &'static str) -> Result<Vec<(f64, f64, f64)>> {
        let c = self.num_classes;
        if self.cells.iter().sum::<f64>() == 0.0 {
            return Err(error(metric, "computed before any update (or after a reset): there is nothing to compute"));
        }
        Ok((0..c)
            .map(|k| {
                let predicted: f64 = (0..c).map(|t| self.cells[t * c + k]).sum();
                let actual: f64 = self.cells[k * c..(k + 1) * c].iter().sum();
                (self.cells[k * c + k], predicted, actual)
            })
            .collect())
    }

    /// `score(tp, fp, fn)` per class averaged, or once over the summed counts.
    fn averaged(&self, metric: &'static str, average: Average, score: fn(f64, f64, f64) -> f64) -> Result<f64> {
        let classes = self.per_class(metric)?;
        let parts = classes.iter().map(|&(tp, predicted, actual)| (tp, predicted - tp, actual - tp));
        Ok(match average {
            Average::Macro => parts.map(|(tp, fp, fneg)| score(tp, fp, fneg)).sum::<f64>() / classes.len() as f64,
            Average::Micro => {
                let (tp, fp, fneg) = parts.fold((0.0, 0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
                score(tp, fp, fneg)
            }
        })
    }
}

/// `num / den`, or 0 when nothing was counted (scikit-learn's `zero_division=0`).
fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// A class count below 2 is an error at the first update (constructors don't fail).
fn check_classes(metric: &'static str, num_classes: usize) -> Result<()> {
    if num_classes < 2 {
        return Err(error(metric, format!("num_classes must be at least 2, got {num_classes}")));
    }
    Ok(())
}

macro_rules! counts_metric {
    ($(#[$doc:meta])* $name:ident, $label:literal, $score:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            counts: Counts,
            average: Average,
        }

        impl $name {
            /// Over `num_classes` classes (at least 2, or the first update fails), macro averaged; see [`Self::average`].
            pub fn new(num_classes: usize) -> Self {
                $name { counts: Counts::new(num_classes), average: Average::Macro }
            }
            /// Macro (the default) or micro averaging.
            pub fn average(mut self, average: Average) -> Self {
                self.average = average;
                self
            }
        }

        impl Metric for $name {
            /// `(&preds, &target)`: scores (N, C) or predicted classes (N,), and classes (N,).
            type Input<'a> = (&'a Tensor, &'a Tensor);
            type Output = f64;
            fn update(&mut self, (preds, target): Self::Input<'_>) -> Result<()> {
                self.counts.update($label, preds, target)
            }
            fn compute(&self) -> Result<f64> {
                self.counts.averaged($label, self.average, $score)
            }
            fn reset(&mut self) {
                self.counts.cells.fill(0.0);
            }
            fn sync(&mut self, world: &dyn Collective) -> Result<()> {
                sync::sum(world, &mut self.counts.cells)
            }
        }
    };
}

counts_metric!(
    /// Precision, tp / (tp + fp): of the samples predicted as a class, the share that are.
    Precision, "Precision", |tp, fp, _| ratio(tp, tp + fp)
);
counts_metric!(
    /// Recall, tp / (tp + fn): of the samples of a class, the share predicted as it.
    Recall, "Recall", |tp, _, fneg| ratio(tp, tp + fneg)
);
counts_metric!(
    /// F1, the harmonic mean of precision and recall: 2tp / (2tp + fp + fn).
    F1Score, "F1Score", |tp, fp, fneg| ratio(2.0 * tp, 2.0 * tp + fp + fneg)
);

/// The confusion matrix: `compute()[true][predicted]` counts the samples of class `true`
/// predicted as `predicted` (scikit-learn's layout).
#[derive(Clone, Debug)]
pub struct ConfusionMatrix {
    counts: Counts,
}

impl ConfusionMatrix {
    /// Over `num_classes` classes (at least 2).
    pub fn new(num_classes: usize) -> Self {
        ConfusionMatrix { counts: Counts::new(num_classes) }
    }
}

impl Metric for ConfusionMatrix {
    /// `(&preds, &target)`: scores (N, C) or predicted classes (N,), and classes (N,).
    type Input<'a> = (&'a Tensor, &'a Tensor);
    type Output = Vec<Vec<u64>>;
    fn update(&mut self, (preds, target): Self::Input<'_>) -> Result<()> {
        self.counts.update("ConfusionMatrix", preds, target)
    }
    fn compute(&self) -> Result<Vec<Vec<u64>>> {
        Ok(self
            .counts
            .cells
            .chunks_exact(self.counts.num_classes)
            .map(|r| r.iter().map(|&v| v as u64).collect())
            .collect())
    }
    fn reset(&mut self) {
        self.counts.cells.fill(0.0);
    }
    fn sync(&mut self, world: &dyn Collective) -> Result<()> {
        sync::sum(world, &mut self.counts.cells)
    }
}

/// Multiclass accuracy: the share of samples whose class is among the `top_k` highest
/// scores (1 by default: the argmax).
#[derive(Clone, Debug)]
pub struct Accuracy {
    num_classes: usize,
    top_k: usize,
    /// (correct, seen).
    state: [f64; 2],
}

impl Accuracy {
    /// Top-1 accuracy over `num_classes` classes (at least 2).
    pub fn new(num_classes: usize) -> Self {
        Accuracy { num_classes, top_k: 1, state: [0.0; 2] }
    }
    /// Counts a sample as right when its class is among the `k` highest scores (1 ≤ k ≤ C;
    /// another `k` is an error at the first update).
    pub fn top_k(mut self, k: usize) -> Self {
        self.top_k = k;
        self
    }
}

impl Metric for Accuracy {
    /// `(&preds, &target)`: scores (N, C), or predicted classes (N,) for top-1, and classes (N,).
    type Input<'a> = (&'a Tensor, &'a Tensor);
    type Output = f64;
    fn update(&mut self, (preds, target): Self::Input<'_>) -> Result<()> {
        check_classes("Accuracy", self.num_classes)?;
        if !(1..=self.num_classes).contains(&self.top_k) {
            return Err(error("Accuracy", format!("top_k must be in 1..={}, got {}", self.num_classes, self.top_k)));
        }
        let truth = labels("Accuracy", target, self.num_classes)?;
        let correct = if self.top_k == 1 {
            let guess = predicted("Accuracy", preds, truth.len(), self.num_classes)?;
            truth.iter().zip(&guess).filter(|(t, p)| t == p).count()
        } else {
            let scores = score_rows("Accuracy", preds, truth.len(), self.num_classes)?;
            // right when fewer than k classes score higher than the true one
            let rows = scores.chunks_exact(self.num_classes).zip(&truth);
            rows.filter(|(row, &t)| row.iter().filter(|&&s| s > row[t]).count() < self.top_k).count()
        };
        self.state[0] += correct as f64;
        self.state[1] += truth.len() as f64;
        Ok(())
    }
    fn compute(&self) -> Result<f64> {
        if self.state[1] == 0.0 {
            return Err(error(
                "Accuracy",
                "computed before any update (or after a reset): there is nothing to compute",
            ));
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
