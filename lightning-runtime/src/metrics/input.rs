//! Reading a batch's predictions and targets to the host, with the shape checks that turn a
//! wrong call into an error naming the metric.

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

pub(crate) fn error(metric: &'static str, reason: impl Into<String>) -> Error {
    Error::Metric { metric, reason: reason.into() }
}

/// All of `t`'s elements as f64, on the host.
pub(crate) fn host(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_device(&Device::Cpu)?.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
}

/// Class indices of a (N,) target: whole numbers in `0..num_classes`.
pub(crate) fn labels(metric: &'static str, target: &Tensor, num_classes: usize) -> Result<Vec<usize>> {
    if target.rank() != 1 {
        return Err(error(metric, format!("the target must be class indices of shape (N,), not {:?}", target.dims())));
    }
    host(target)?
        .into_iter()
        .map(|v| {
            if v >= 0.0 && v.fract() == 0.0 && (v as usize) < num_classes {
                Ok(v as usize)
            } else {
                Err(error(metric, format!("target {v} is not a class index in 0..{num_classes}")))
            }
        })
        .collect()
}

/// Scores of shape (N, C) with C = `num_classes`, as N rows; `n` is the target's length.
pub(crate) fn score_rows(metric: &'static str, preds: &Tensor, n: usize, num_classes: usize) -> Result<Vec<f64>> {
    if preds.dims() != [n, num_classes] {
        return Err(error(
            metric,
            format!(
                "the predictions must be scores of shape (N, {num_classes}) for a target of {n} samples, not {:?}",
                preds.dims()
            ),
        ));
    }
    host(preds)
}

/// Predicted classes: the argmax of (N, C) scores, or (N,) class indices as they are.
pub(crate) fn predicted(metric: &'static str, preds: &Tensor, n: usize, num_classes: usize) -> Result<Vec<usize>> {
    if preds.rank() == 1 {
        if preds.dim(0)? != n {
            return Err(error(metric, format!("{} predicted classes for a target of {n} samples", preds.dim(0)?)));
        }
        return labels(metric, preds, num_classes);
    }
    let scores = score_rows(metric, preds, n, num_classes)?;
    Ok(scores.chunks_exact(num_classes).map(argmax).collect())
}

/// The first index of the largest value (as torch's and numpy's argmax).
pub(crate) fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

/// Predictions and targets of a regression metric: same number of elements, read as pairs.
pub(crate) fn pairs(metric: &'static str, preds: &Tensor, target: &Tensor) -> Result<(Vec<f64>, Vec<f64>)> {
    if preds.dims() != target.dims() {
        return Err(error(
            metric,
            format!("predictions {:?} and target {:?} must have the same shape", preds.dims(), target.dims()),
        ));
    }
    Ok((host(preds)?, host(target)?))
}
