//! The trainer's set of frozen parameters (torch's `requires_grad = False`): their gradients
//! are dropped right after backward, so no hook, clipping, DDP mean or optimizer sees one.

use std::collections::BTreeSet;

use candle_core::{backprop::GradStore, Var};
use candle_nn::VarMap;

use crate::{Error, Result};

/// Frozen parameters by `VarMap` name, with their variables resolved for the per-step filter.
#[derive(Debug, Default, Clone)]
pub(crate) struct Frozen {
    names: BTreeSet<String>,
    /// The module's variables of `names`, resolved at fit start and at every change (a
    /// device move replaces the variables, so names are the truth).
    vars: Vec<Var>,
    /// Something was frozen in this run (or restored): checkpoints then record the set, even
    /// empty, so a resume after the unfreeze does not keep what `setup` froze again.
    used: bool,
}

/// The names in `vars` that start with `prefix`, sorted; an error when there are none, naming
/// a few of the names there are (a misspelt prefix would freeze nothing).
pub(crate) fn matching(vars: &VarMap, prefix: &str) -> Result<Vec<String>> {
    let data = vars.data().lock().unwrap_or_else(|p| p.into_inner());
    let mut names: Vec<String> = data.keys().filter(|n| n.starts_with(prefix)).cloned().collect();
    if names.is_empty() {
        let mut all: Vec<&String> = data.keys().collect();
        all.sort();
        let shown: Vec<&str> = all.iter().take(6).map(|s| s.as_str()).collect();
        return Err(Error::config(
            "finetuning",
            format!(
                "no parameter of the module starts with `{prefix}` (its names: {}{}): check the prefix, e.g. `backbone.`",
                shown.join(", "),
                if all.len() > shown.len() { ", …" } else { "" }
            ),
        ));
    }
    names.sort();
    Ok(names)
}

impl Frozen {
    /// Whether nothing is frozen (the per-step filter is then one branch).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    pub fn names(&self) -> &BTreeSet<String> {
        &self.names
    }

    /// What a checkpoint records: the names, once anything was frozen in the run.
    pub fn saved(&self) -> Option<Vec<String>> {
        self.used.then(|| self.names.iter().cloned().collect())
    }

    /// Adds `names` and resolves the variables again.
    pub fn insert(&mut self, names: impl IntoIterator<Item = String>, vars: &VarMap) {
        self.names.extend(names);
        self.used |= !self.names.is_empty();
        self.resolve(vars);
    }

    /// Removes the names that start with `prefix`; returns them.
    pub fn remove_prefix(&mut self, prefix: &str, vars: &VarMap) -> Vec<String> {
        let gone: Vec<String> = self.names.iter().filter(|n| n.starts_with(prefix)).cloned().collect();
        gone.iter().for_each(|n| {
            self.names.remove(n);
        });
        self.resolve(vars);
        gone
    }

    /// Removes these names.
    pub fn remove(&mut self, names: &[String], vars: &VarMap) {
        names.iter().for_each(|n| {
            self.names.remove(n);
        });
        self.resolve(vars);
    }

    /// Replaces the whole set (a resume restores the checkpoint's).
    pub fn set(&mut self, names: impl IntoIterator<Item = String>) {
        self.names = names.into_iter().collect();
        self.vars.clear();
        self.used = true;
    }

    /// Finds the module's variables of the frozen names (after a device move or a resume).
    pub fn resolve(&mut self, vars: &VarMap) {
        let data = vars.data().lock().unwrap_or_else(|p| p.into_inner());
        self.vars = self.names.iter().filter_map(|n| data.get(n).cloned()).collect();
    }

    /// Drops the frozen variables' gradients from the accumulated ones (the DDP mean gives
    /// every variable one, zeros where a rank had none).
    pub fn drop_accumulated(&self, grads: &mut crate::Gradients) {
        for v in &self.vars {
            grads.remove(v.as_tensor());
        }
    }

    /// Drops the frozen variables' gradients from a backward's store.
    #[inline]
    pub fn drop_grads(&self, store: &mut GradStore) {
        for v in &self.vars {
            store.remove(v.as_tensor());
        }
    }
}
