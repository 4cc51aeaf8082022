//! The machinery every optimizer shares: groups, per-parameter state, and saving it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use candle_core::{Tensor, TensorId, Var};
use serde::{Deserialize, Serialize};

use super::{Optimizer, Params};
use crate::{Error, Gradients, Result};

/// An update rule: torch's per-parameter step, with its settings.
pub trait Rule {
    /// The optimizer's name, as `LearningRateMonitor` logs it (`lr-Adam`).
    const NAME: &'static str;
    /// Names of the per-parameter state tensors (torch's state keys).
    const BUFFERS: &'static [&'static str];
    /// The learning rate the settings hold.
    fn lr(&self) -> f64;
    /// Rejects settings torch would reject.
    fn validate(&self) -> Result<()>;
    /// One step for one parameter: returns the new value. `step` counts from 1.
    fn update(&self, lr: f64, step: u64, p: &Tensor, g: &Tensor, state: &mut [Option<Tensor>]) -> Result<Tensor>;
    /// The momentum `OneCycleLR` cycles: SGD's and RMSprop's `momentum`, Adam's β1; `None`
    /// for rules without one.
    fn momentum(&self) -> Option<f64> {
        None
    }
    /// Sets that momentum (rules without one ignore it).
    fn set_momentum(&mut self, momentum: f64) {
        let _ = momentum;
    }
    /// The same step done in place, fused, where the rule, the device and the dtypes allow it
    /// (`false`, with nothing changed, sends the step to `update`).
    fn update_in_place(
        &self,
        lr: f64,
        step: u64,
        p: &Tensor,
        g: &Tensor,
        state: &mut [Option<Tensor>],
    ) -> Result<bool> {
        let _ = (lr, step, p, g, state);
        Ok(false)
    }
}

#[derive(Debug)]
struct Slot {
    name: String,
    var: Var,
    /// Higher-precision copy the updates apply to (mixed precision), if any.
    master: Option<Var>,
    step: u64,
    state: Vec<Option<Tensor>>,
}

#[derive(Debug)]
struct Group {
    lr: f64,
    initial_lr: f64,
    slots: Vec<Slot>,
}

/// An optimizer made of a [`Rule`] and its parameters; `Sgd`, `Adam`, `AdamW`, `RmsProp` and
/// `Adagrad` are this type with their rules.
#[derive(Debug)]
pub struct Optim<R> {
    rule: R,
    groups: Vec<Group>,
    /// Under mixed precision: the master dtype and the module's master weights, so that a
    /// group added later updates the same masters the checkpoints save.
    masters: Option<(candle_core::DType, HashMap<TensorId, Var>)>,
}

/// An optimizer's state: tensors by `"{param}.{buffer}"`, and counters and rates.
#[derive(Debug, Clone, Default)]
pub struct OptimizerState {
    /// The per-parameter buffers (and master copies), by `"{param}.{buffer}"`.
    pub tensors: BTreeMap<String, Tensor>,
    /// Step counts and learning rates.
    pub meta: OptimizerMeta,
}

impl OptimizerState {
    /// Checks that every tensor belongs to a parameter it counts steps for, and that every
    /// parameter that has taken a step has the same buffers (an update rule makes the same
    /// ones for each), so a tensor missing from a damaged file is found.
    pub fn check_buffers(&self) -> std::result::Result<(), String> {
        let mut sets: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for key in self.tensors.keys() {
            let Some((param, buf)) = key.rsplit_once('.').filter(|(p, _)| self.meta.steps.contains_key(*p)) else {
                return Err(format!("the tensor `{key}` belongs to no parameter of the optimizer"));
            };
            // master copies exist only for parameters of a lower precision: not compared
            if buf != MASTER {
                sets.entry(param).or_default().insert(buf);
            }
        }
        let stepped = self.meta.steps.iter().filter(|(_, &n)| n > 0).map(|(p, _)| p.as_str());
        let mut first: Option<(&str, &BTreeSet<&str>)> = None;
        let empty = BTreeSet::new();
        for param in stepped {
            let bufs = sets.get(param).unwrap_or(&empty);
            match first {
                None => first = Some((param, bufs)),
                Some((p, want)) if want != bufs => {
                    let missing: Vec<String> = want.symmetric_difference(bufs).map(|b| b.to_string()).collect();
                    return Err(format!(
                        "`{param}` and `{p}` have different buffers (the difference: {}): a tensor is missing",
                        missing.join(", ")
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// The non-tensor part of [`OptimizerState`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OptimizerMeta {
    /// Steps taken per parameter.
    pub steps: BTreeMap<String, u64>,
    /// Learning rate per group, now.
    pub lr: Vec<f64>,
    /// Learning rate per group at the start (torch's `initial_lr`, which schedulers scale).
    pub initial_lr: Vec<f64>,
    /// The parameter names of each group, so that a resume can re-create groups added during
    /// the run ([`Optimizer::add_param_group`], e.g. by fine-tuning); empty in older checkpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Vec<String>>,
}

/// The state key of a parameter's master copy.
const MASTER: &str = "master";

impl<R: Rule> Optim<R> {
    /// An optimizer over `params` with these settings.
    pub fn with_rule(params: impl Into<Params>, rule: R) -> Result<Self> {
        rule.validate()?;
        let params = params.into();
        params.check()?;
        let groups = params.groups.into_iter().map(|g| Self::group(rule.lr(), g)).collect::<Result<_>>()?;
        Ok(Optim { rule, groups, masters: None })
    }

    fn group(default_lr: f64, g: super::ParamGroup) -> Result<Group> {
        let lr = g.lr.unwrap_or(default_lr);
        super::check_lr(lr)?;
        let slots = g
            .params
            .into_iter()
            .map(|(name, var)| Slot { name, var, master: None, step: 0, state: vec![None; R::BUFFERS.len()] })
            .collect();
        Ok(Group { lr, initial_lr: lr, slots })
    }

    /// The settings.
    pub fn rule(&self) -> &R {
        &self.rule
    }

    /// The master copy of a parameter, under mixed precision.
    pub fn master_weight(&self, name: &str) -> Option<&Var> {
        self.groups.iter().flat_map(|g| &g.slots).find(|s| s.name == name).and_then(|s| s.master.as_ref())
    }
}

impl<R: Rule> Optimizer for Optim<R> {
    fn name(&self) -> &'static str {
        R::NAME
    }
    fn step(&mut self, grads: &Gradients) -> Result<()> {
        for group in &mut self.groups {
            for slot in &mut group.slots {
                let Some(g) = grads.get(slot.var.as_tensor()) else { continue };
                slot.step += 1;
                let (rule, lr, step) = (&self.rule, group.lr, slot.step);
                // the weights the rule updates: the master copy under mixed precision
                let target = slot.master.as_ref().unwrap_or(&slot.var);
                let g = &g.to_dtype(target.dtype())?;
                if !rule.update_in_place(lr, step, target.as_tensor(), g, &mut slot.state)? {
                    let new = rule.update(lr, step, target.as_tensor(), g, &mut slot.state)?;
                    target.set(&new)?;
                }
                if let Some(master) = &slot.master {
                    slot.var.set(&master.as_tensor().to_dtype(slot.var.dtype())?)?;
                }
            }
        }
        Ok(())
    }

    fn named_parameters(&self) -> Vec<(&str, &Var)> {
        self.groups.iter().flat_map(|g| &g.slots).map(|s| (s.name.as_str(), &s.var)).collect()
    }

    fn num_groups(&self) -> usize {
        self.groups.len()
    }

    fn learning_rate(&self, group: usize) -> f64 {
        self.groups.get(group).map_or(0.0, |g| g.lr)
    }

    fn initial_learning_rate(&self, group: usize) -> f64 {
        self.groups.get(group).map_or(0.0, |g| g.initial_lr)
    }

    fn set_learning_rate(&mut self, group: usize, lr: f64) {
        if let Some(g) = self.groups.get_mut(group) {
            g.lr = lr;
        }
    }

    fn momentum(&self) -> Option<f64> {
        self.rule.momentum()
    }

    fn set_momentum(&mut self, momentum: f64) {
        self.rule.set_momentum(momentum);
    }

    fn state_dict(&self) -> Result<OptimizerState> {
        let mut s = OptimizerState::default();
        for group in &self.groups {
            s.meta.lr.push(group.lr);
            s.meta.initial_lr.push(group.initial_lr);
            s.meta.groups.push(group.slots.iter().map(|slot| slot.name.clone()).collect());
            for slot in &group.slots {
                s.meta.steps.insert(slot.name.clone(), slot.step);
                // copies: fused steps update the buffers in place
                if let Some(m) = &slot.master {
                    s.tensors.insert(format!("{}.{MASTER}", slot.name), m.as_tensor().copy()?);
                }
                for (buf, t) in R::BUFFERS.iter().zip(&slot.state) {
                    if let Some(t) = t {
                        s.tensors.insert(format!("{}.{buf}", slot.name), t.copy()?);
                    }
                }
            }
        }
        Ok(s)
    }

    fn use_master_weights(&mut self, dtype: candle_core::DType) -> Result<()> {
        self.use_master_weights_from(dtype, &HashMap::new())
    }

    fn add_param_group(&mut self, group: super::ParamGroup) -> Result<()> {
        let held: BTreeSet<&str> = self.groups.iter().flat_map(|g| &g.slots).map(|s| s.name.as_str()).collect();
        if let Some((name, _)) = group.params.iter().find(|(n, _)| held.contains(n.as_str())) {
            return Err(Error::config(
                "add_param_group",
                format!("parameter `{name}` is already in a group of this optimizer"),
            ));
        }
        Params { groups: vec![group.clone()] }.check()?;
        self.groups.push(Self::group(self.rule.lr(), group)?);
        if let Some((dtype, masters)) = self.masters.take() {
            // the new parameters update the module's own master weights too
            let result = self.use_master_weights_from(dtype, &masters);
            self.masters = Some((dtype, masters));
            result?;
        }
        Ok(())
    }

    fn use_master_weights_from(&mut self, dtype: candle_core::DType, masters: &HashMap<TensorId, Var>) -> Result<()> {
        self.masters = Some((dtype, masters.clone()));
        for slot in self.groups.iter_mut().flat_map(|g| g.slots.iter_mut()) {
            if slot.master.is_none() && slot.var.dtype() != dtype {
                let given = masters.get(&slot.var.id()).filter(|m| m.dtype() == dtype && m.dims() == slot.var.dims());
                slot.master = Some(match given {
                    Some(m) => m.clone(),
                    None => Var::from_tensor(&slot.var.as_tensor().to_dtype(dtype)?)?,
                });
            }
        }
        Ok(())
    }

    fn check_state_dict(&self, state: &OptimizerState) -> Result<()> {
        let bad = |r: String| Error::config("optimizer state", r);
        if state.meta.lr.len() != self.groups.len() || state.meta.initial_lr.len() != self.groups.len() {
            return Err(bad(format!(
                "it has {} parameter groups, the optimizer {}",
                state.meta.lr.len(),
                self.groups.len()
            )));
        }
        let known: usize = self.groups.iter().map(|g| g.slots.len()).sum();
        if state.meta.steps.len() != known {
            return Err(bad(format!("it has {} parameters, the optimizer {known}", state.meta.steps.len())));
        }
        state.check_buffers().map_err(bad)?;
        for slot in self.groups.iter().flat_map(|g| &g.slots) {
            if !state.meta.steps.contains_key(&slot.name) {
                return Err(bad(format!("it has no parameter `{}`", slot.name)));
            }
            for buf in R::BUFFERS.iter().chain([&MASTER]) {
                if let Some(t) = state.tensors.get(&format!("{}.{buf}", slot.name)) {
                    if t.dims() != slot.var.dims() {
                        return Err(bad(format!(
                            "`{}.{buf}` has shape {:?}, the parameter {:?}",
                            slot.name,
                            t.dims(),
                            slot.var.dims()
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()> {
        // check everything before changing anything
        self.check_state_dict(state)?;
        for (i, group) in self.groups.iter_mut().enumerate() {
            group.lr = state.meta.lr[i];
            group.initial_lr = state.meta.initial_lr[i];
            for slot in &mut group.slots {
                slot.step = state.meta.steps[&slot.name];
                if let (Some(m), Some(t)) = (&slot.master, state.tensors.get(&format!("{}.{MASTER}", slot.name))) {
                    m.set(&t.to_device(m.device())?.to_dtype(m.dtype())?)?;
                }
                let dtype = slot.master.as_ref().map_or(slot.var.dtype(), |m| m.dtype());
                for (buf, dst) in R::BUFFERS.iter().zip(slot.state.iter_mut()) {
                    *dst = match state.tensors.get(&format!("{}.{buf}", slot.name)) {
                        // a copy of its own: fused steps update buffers in place
                        Some(t) => Some(t.to_device(slot.var.device())?.to_dtype(dtype)?.copy()?),
                        None => None,
                    };
                }
            }
        }
        Ok(())
    }
}
