//! Area under the ROC curve, binary or one-vs-rest. It needs every score, not a sum, so its
//! state is the scores and labels themselves, gathered from all ranks by `sync`.

use candle_core::Tensor;

use super::input::{error, host, labels, score_rows};
use super::{sync, Metric};
use crate::dist::Collective;
use crate::Result;

/// AUROC (scikit-learn's `roc_auc_score`): binary, from one score per sample and 0/1
/// targets, or one-vs-rest, the macro mean over the classes of each class's binary AUROC
/// from (N, C) scores and class targets. Tied scores count half, as in scikit-learn.
///
/// ```
/// use lightning::metrics::{Auroc, Metric};
/// use candle_core::{Device, Tensor};
/// let mut auroc = Auroc::binary();
/// let scores = Tensor::new(&[0.1f32, 0.4, 0.35, 0.8], &Device::Cpu)?;
/// auroc.update((&scores, &Tensor::new(&[0u32, 0, 1, 1], &Device::Cpu)?))?;
/// assert_eq!(auroc.compute()?, 0.75);
/// # Ok::<(), lightning::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Auroc {
    /// `None`: binary.
    num_classes: Option<usize>,
    /// N scores (binary) or N rows of C scores.
    scores: Vec<f64>,
    /// N targets: 0/1 (binary) or class indices.
    targets: Vec<f64>,
}

impl Auroc {
    /// Binary: scores (N,), targets (N,) of 0 and 1.
    pub fn binary() -> Self {
        Auroc { num_classes: None, scores: Vec::new(), targets: Vec::new() }
    }
    /// One-vs-rest over `num_classes` classes (at least 2): scores (N, C), targets (N,).
    pub fn one_vs_rest(num_classes: usize) -> Self {
        Auroc { num_classes: Some(num_classes), scores: Vec::new(), targets: Vec::new() }
    }
}

/// Binary AUROC of `scores` where `positive(i)` says whether sample i is positive: the
/// Mann-Whitney statistic, tied scores sharing their mean rank.
fn binary_auc(scores: &[f64], positive: impl Fn(usize) -> bool) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut positives) = (0.0, 0.0);
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        // ranks start+1 ..= end share their mean
        let mean_rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            if positive(i) {
                rank_sum += mean_rank;
                positives += 1.0;
            }
        }
        start = end;
    }
    let negatives = scores.len() as f64 - positives;
    (positives > 0.0 && negatives > 0.0)
        .then(|| (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

impl Metric for Auroc {
    /// `(&scores, &target)`.
    type Input<'a> = (&'a Tensor, &'a Tensor);
    type Output = f64;
    fn update(&mut self, (preds, target): Self::Input<'_>) -> Result<()> {
        match self.num_classes {
            None => {
                let truth = labels("Auroc", target, 2)?;
                if preds.dims() != target.dims() {
                    let dims = (preds.dims(), target.dims());
                    return Err(error(
                        "Auroc",
                        format!("binary scores {:?} must have the target's shape {:?}", dims.0, dims.1),
                    ));
                }
                self.scores.extend(host(preds)?);
                self.targets.extend(truth.into_iter().map(|t| t as f64));
            }
            Some(c) if c < 2 => return Err(error("Auroc", format!("num_classes must be at least 2, got {c}"))),
            Some(c) => {
                let truth = labels("Auroc", target, c)?;
                self.scores.extend(score_rows("Auroc", preds, truth.len(), c)?);
                self.targets.extend(truth.into_iter().map(|t| t as f64));
            }
        }
        Ok(())
    }

    fn compute(&self) -> Result<f64> {
        let one_class = |class: String| {
            error("Auroc", format!("{class} has no positive or no negative sample, so its ROC curve is undefined"))
        };
        let Some(c) = self.num_classes else {
            return binary_auc(&self.scores, |i| self.targets[i] == 1.0).ok_or_else(|| one_class("the data".into()));
        };
        let mut total = 0.0;
        for k in 0..c {
            let column: Vec<f64> = self.scores.iter().skip(k).step_by(c).copied().collect();
            total +=
                binary_auc(&column, |i| self.targets[i] == k as f64).ok_or_else(|| one_class(format!("class {k}")))?;
        }
        Ok(total / c as f64)
    }

    fn reset(&mut self) {
        self.scores.clear();
        self.targets.clear();
    }

    fn sync(&mut self, world: &dyn Collective) -> Result<()> {
        self.scores = sync::gather(world, &self.scores)?;
        self.targets = sync::gather(world, &self.targets)?;
        Ok(())
    }
}
