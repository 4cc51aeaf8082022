//! `StochasticWeightAveraging`'s state in checkpoints: `n_averaged`, the last epoch averaged
//! and SWALR's state in `trainer_state.json`, the averages as `swa/<name>` tensors; each part
//! checked when read back, so a damaged checkpoint is an error naming what is wrong.

use std::collections::BTreeMap;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::swa::PREFIX;
use crate::optim::swa_lr::SwaLr;
use crate::{Error, HasParameters, Result};

const NAME: &str = "StochasticWeightAveraging";

/// The saved state (Lightning's `n_averaged`, `latest_update_epoch`, `scheduler_state`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Saved {
    pub n_averaged: usize,
    pub latest_update_epoch: Option<usize>,
    pub scheduler: Option<SwaLr>,
}

impl Saved {
    pub fn of(n_averaged: usize, latest_update_epoch: Option<usize>, scheduler: Option<&SwaLr>) -> Value {
        let saved = Saved { n_averaged, latest_update_epoch, scheduler: scheduler.cloned() };
        serde_json::to_value(saved).unwrap_or(Value::Null)
    }

    /// The state from a checkpoint; a field of the wrong type or out of range is an error
    /// naming it.
    pub fn read(state: &Value) -> Result<Saved> {
        let saved: Saved = serde_path_to_error::deserialize(state.clone()).map_err(|e| {
            let path = e.path().to_string();
            super::restored::bad(NAME, &path, format!("has the wrong type: {}", e.into_inner()))
        })?;
        if let Some(why) = saved.scheduler.as_ref().and_then(SwaLr::invalid) {
            return Err(super::restored::bad(NAME, "scheduler", why));
        }
        if saved.n_averaged > 0 && saved.latest_update_epoch.is_none() {
            let why = format!("is null with n_averaged = {}", saved.n_averaged);
            return Err(super::restored::bad(NAME, "latest_update_epoch", why));
        }
        Ok(saved)
    }
}

/// The saved average of every weight, on the weight's device and in its dtype; a weight
/// without one, or with one of another shape, is an error.
pub(super) fn averages(weights: &[(&str, &Var)], saved: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    for (name, w) in weights {
        let avg = match saved.get(*name) {
            Some(a) if a.dims() == w.dims() => a.to_device(w.device())?.to_dtype(w.dtype())?,
            found => {
                let what = found.map_or("is missing".to_string(), |a| format!("has shape {:?}", a.dims()));
                return Err(Error::CheckpointField {
                    path: None,
                    field: format!("tensors.{PREFIX}{name}"),
                    reason: format!("{what}, but the module's `{name}` has shape {:?}", w.dims()),
                });
            }
        };
        out.insert(name.to_string(), avg);
    }
    Ok(out)
}

/// A restored SWALR must have one rate per parameter group of the optimizer.
pub(super) fn check_groups(swa: &SwaLr, groups: usize) -> Result<()> {
    let n = swa.rates().len();
    if n == groups {
        return Ok(());
    }
    let why = format!("has {n} parameter groups, the optimizer {groups}");
    Err(super::restored::bad(NAME, "scheduler", why))
}

/// Lightning recomputes BatchNorm statistics after SWA with one more pass over the training
/// data; this trainer does not (its `nn` has no BatchNorm). candle-nn's `BatchNorm` keeps its
/// running statistics in the `VarMap`, where they are averaged like the weights: say so.
pub(super) fn warn_batch_norm(module: &impl HasParameters) {
    let data = module.parameters().data().lock().unwrap_or_else(|p| p.into_inner());
    let stats: Vec<&String> =
        data.keys().filter(|k| k.ends_with("running_mean") || k.ends_with("running_var")).collect();
    if let Some(first) = stats.iter().min() {
        crate::dist::rank_zero_warn(format_args!(
            "StochasticWeightAveraging: `{first}` and {} other variables look like BatchNorm running statistics: \
             they are averaged like the weights, not recomputed by a pass over the data as Lightning does",
            stats.len() - 1
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::optim::Anneal;

    fn field_of(e: Error) -> String {
        match e {
            Error::CheckpointField { field, .. } => field,
            other => panic!("not a field error: {other}"),
        }
    }

    #[test]
    fn state_round_trips_and_a_damaged_one_names_its_field() {
        let swa = SwaLr::new(vec![0.1, 0.2], vec![0.01, 0.02], 3, Anneal::Linear);
        let saved = Saved::read(&Saved::of(2, Some(4), Some(&swa))).unwrap();
        assert_eq!((saved.n_averaged, saved.latest_update_epoch), (2, Some(4)));
        assert_eq!(saved.scheduler.unwrap(), swa);

        let bad = |v| field_of(Saved::read(&v).unwrap_err());
        let name = "callbacks.StochasticWeightAveraging";
        let field = bad(json!({"n_averaged": -1, "latest_update_epoch": null, "scheduler": null}));
        assert_eq!(field, format!("{name}.n_averaged"));
        let field = bad(json!({"n_averaged": 2, "latest_update_epoch": null, "scheduler": null}));
        assert_eq!(field, format!("{name}.latest_update_epoch"));
        let mut v = Saved::of(1, Some(0), Some(&swa));
        v["scheduler"]["lrs"] = json!([0.1]);
        assert_eq!(bad(v), format!("{name}.scheduler"));
        let mut v = Saved::of(1, Some(0), Some(&swa));
        v["scheduler"]["strategy"] = json!("Cosh");
        assert_eq!(bad(v), format!("{name}.scheduler.strategy"));
    }

    #[test]
    fn averages_must_match_the_weights() {
        let w = Var::zeros((2, 3), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let ok =
            BTreeMap::from([("w".to_string(), Tensor::ones((2, 3), candle_core::DType::F64, w.device()).unwrap())]);
        let avg = averages(&[("w", &w)], &ok).unwrap();
        assert_eq!(avg["w"].dtype(), candle_core::DType::F32, "in the weight's dtype");
        let wrong = BTreeMap::from([("w".to_string(), Tensor::ones(3, candle_core::DType::F32, w.device()).unwrap())]);
        assert_eq!(field_of(averages(&[("w", &w)], &wrong).unwrap_err()), "tensors.swa/w");
        assert_eq!(field_of(averages(&[("w", &w)], &BTreeMap::new()).unwrap_err()), "tensors.swa/w");
    }
}
