//! Re-creating, on resume, the parameter groups a run added while it trained
//! ([`Optimizer::add_param_group`]): `configure_optimizers` returns the optimizer of the
//! run's start, the checkpoint's state has the groups added since.

use candle_nn::VarMap;

use super::{Optimizer, OptimizerState, ParamGroup};
use crate::{Error, Result};

/// Adds to `optimizer` the groups `saved` has beyond its own, taking their variables from
/// the module's `vars` by name. Nothing is added unless the groups the optimizer has are the
/// saved state's first ones, name for name (else the state's check reports the mismatch),
/// and every added name is a module variable (else an error naming it, before any is added).
pub(crate) fn restore<O: Optimizer>(optimizer: &mut O, saved: &OptimizerState, vars: &VarMap) -> Result<()> {
    let (have, want) = (optimizer.num_groups(), &saved.meta.groups);
    if want.len() <= have {
        return Ok(());
    }
    let own = optimizer.state_dict()?.meta.groups;
    if own.len() != have || own[..] != want[..have] {
        return Ok(());
    }
    let groups = {
        let data = vars.data().lock().unwrap_or_else(|p| p.into_inner());
        let mut groups = Vec::new();
        for (g, names) in want.iter().enumerate().skip(have) {
            let params = names
                .iter()
                .map(|n| match data.get(n) {
                    Some(v) => Ok((n.clone(), v.clone())),
                    None => Err(Error::config(
                        "optimizer state",
                        format!(
                            "parameter group {g}, added during the run, holds `{n}`, which the module does not have"
                        ),
                    )),
                })
                .collect::<Result<Vec<_>>>()?;
            groups.push(ParamGroup { params, lr: saved.meta.lr.get(g).copied() });
        }
        groups
    };
    groups.into_iter().try_for_each(|g| optimizer.add_param_group(g))
}
