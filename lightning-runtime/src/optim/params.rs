//! Parameters to optimize, by name, in groups with their own learning rates.

use candle_core::Var;
use candle_nn::VarMap;

use crate::{Error, Result};

/// One group of named variables, optionally with its own learning rate.
#[derive(Clone, Debug)]
pub struct ParamGroup {
    /// The variables, with the names their optimizer state is kept under.
    pub params: Vec<(String, Var)>,
    /// `None`: the optimizer's learning rate.
    pub lr: Option<f64>,
}

/// What an optimizer trains: named variables in one or more groups (torch's param groups).
///
/// Names key the optimizer's state, so it survives a reordered `VarMap` and can be saved.
/// `&VarMap` gives its variables sorted by name: prefer it. A `Vec<Var>` names them by
/// position, which is only stable if you build the vector in a fixed order
/// (`VarMap::all_vars()` is not: it follows a `HashMap`).
///
/// ```
/// use candle_nn::{VarMap, VarBuilder};
/// use candle_core::{DType, Device};
/// use lightning::optim::Params;
/// # fn main() -> lightning::Result<()> {
/// let (body, head) = (VarMap::new(), VarMap::new());
/// candle_nn::linear(4, 4, VarBuilder::from_varmap(&body, DType::F32, &Device::Cpu).pp("body"))?;
/// candle_nn::linear(4, 2, VarBuilder::from_varmap(&head, DType::F32, &Device::Cpu).pp("head"))?;
/// let params = Params::from(&body).with_lr(1e-4).group(&head, 1e-2);
/// let adam = lightning::optim::Adam::new(params, Default::default())?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Params {
    /// The groups, in order (torch's `param_groups`).
    pub groups: Vec<ParamGroup>,
}

impl Params {
    /// Sets the learning rate of every group so far.
    pub fn with_lr(mut self, lr: f64) -> Self {
        self.groups.iter_mut().for_each(|g| g.lr = Some(lr));
        self
    }

    /// Adds another group with its own learning rate.
    pub fn group(mut self, params: impl Into<Params>, lr: f64) -> Self {
        for mut g in params.into().groups {
            g.lr = Some(lr);
            self.groups.push(g);
        }
        self
    }

    /// The variables of `vars` whose names start with `prefix` (e.g. `"generator."`),
    /// sorted by name: one optimizer per part of a model.
    pub fn with_prefix(vars: &VarMap, prefix: &str) -> Self {
        let mut p = Params::from(vars);
        p.groups.iter_mut().for_each(|g| g.params.retain(|(n, _)| n.starts_with(prefix)));
        p
    }

    /// The variables of `vars` that are not frozen ([`TrainerState::freeze`](crate::TrainerState::freeze),
    /// fine-tuning), sorted by name: torch's `filter(lambda p: p.requires_grad, model.parameters())`.
    /// Build the optimizer from it in `configure_optimizers` (which runs after the callbacks'
    /// `setup` froze the backbone):
    /// `AdamW::with_lr(Params::trainable(&self.vars, trainer), 1e-3)`.
    pub fn trainable(vars: &VarMap, trainer: &crate::TrainerState) -> Self {
        let mut p = Params::from(vars);
        p.groups.iter_mut().for_each(|g| g.params.retain(|(n, _)| !trainer.is_frozen(n)));
        p
    }

    /// Checks the names are unique and there is something to train.
    pub(crate) fn check(&self) -> Result<()> {
        let mut names: Vec<&str> = self.groups.iter().flat_map(|g| g.params.iter().map(|(n, _)| n.as_str())).collect();
        if names.is_empty() {
            return Err(Error::config("params", "the optimizer was given no parameters"));
        }
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::config("params", format!("parameter `{}` is listed twice", w[0])));
        }
        Ok(())
    }
}

impl From<&VarMap> for Params {
    fn from(vars: &VarMap) -> Self {
        let data = vars.data().lock().unwrap_or_else(|p| p.into_inner());
        let mut params: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Params { groups: vec![ParamGroup { params, lr: None }] }
    }
}

impl From<Vec<(String, Var)>> for Params {
    fn from(params: Vec<(String, Var)>) -> Self {
        Params { groups: vec![ParamGroup { params, lr: None }] }
    }
}

impl From<Vec<Var>> for Params {
    fn from(vars: Vec<Var>) -> Self {
        vars.into_iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect::<Vec<_>>().into()
    }
}
