//! `BaseFinetuning`: your own freeze/unfreeze schedule, run as a callback by [`Finetuning`].

use candle_nn::VarMap;

use super::frozen::matching;
use crate::optim::ParamGroup;
use crate::{HasParameters, Optimizer, Optimizers, Result, TrainerState};

/// Lightning's `BaseFinetuning`: freeze parameters before training, unfreeze them at the
/// epochs you choose. Run it with [`Finetuning`] (`.callbacks((Finetuning(MySchedule),))`).
///
/// `freeze_before_training` runs in `setup` (before `configure_optimizers`: build the
/// optimizer from [`Params::trainable`](crate::optim::Params::trainable)), and
/// `finetune_function` at the start of every training epoch, once per optimizer.
///
/// ```
/// use lightning::finetune::{BaseFinetuning, Finetuner, Finetuning};
/// use lightning::Optimizer;
///
/// struct FeatureExtractorFreezeUnfreeze { unfreeze_at_epoch: usize }
///
/// impl BaseFinetuning for FeatureExtractorFreezeUnfreeze {
///     fn freeze_before_training(&mut self, ft: &mut Finetuner<'_>) -> lightning::Result<()> {
///         ft.freeze("feature_extractor.")?;
///         Ok(())
///     }
///     fn finetune_function<O: Optimizer>(
///         &mut self,
///         ft: &mut Finetuner<'_>,
///         epoch: usize,
///         optimizer: &mut O,
///     ) -> lightning::Result<()> {
///         if epoch == self.unfreeze_at_epoch {
///             // the first group's rate / 10, as Lightning's default `initial_denom_lr`
///             ft.unfreeze_and_add_param_group(optimizer, "feature_extractor.", None, 10.0, true)?;
///         }
///         Ok(())
///     }
/// }
/// let callback = Finetuning(FeatureExtractorFreezeUnfreeze { unfreeze_at_epoch: 10 });
/// # let _ = callback;
/// ```
pub trait BaseFinetuning {
    /// Freezes parameters before training (Lightning calls it from `setup`).
    fn freeze_before_training(&mut self, ft: &mut Finetuner<'_>) -> Result<()>;
    /// At the start of every training epoch, for each optimizer: unfreeze and add groups.
    fn finetune_function<O: Optimizer>(
        &mut self,
        ft: &mut Finetuner<'_>,
        epoch: usize,
        optimizer: &mut O,
    ) -> Result<()>;
    /// The state to checkpoint (`Null`: none).
    fn state_dict(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Restores what `state_dict` saved.
    fn load_state_dict(&mut self, state: &serde_json::Value) -> Result<()> {
        let _ = state;
        Ok(())
    }
}

/// What a [`BaseFinetuning`] works with: the trainer's frozen set and the module's variables,
/// with Lightning's helpers `freeze` and `unfreeze_and_add_param_group`.
pub struct Finetuner<'a> {
    trainer: &'a mut TrainerState,
    vars: &'a VarMap,
    optimizer_index: usize,
}

impl<'a> Finetuner<'a> {
    /// A finetuner over the module's variables (the callbacks make it; for your own hooks).
    pub fn new(trainer: &'a mut TrainerState, vars: &'a VarMap) -> Self {
        Finetuner { trainer, vars, optimizer_index: 0 }
    }

    /// The trainer's state.
    pub fn trainer(&mut self) -> &mut TrainerState {
        self.trainer
    }

    /// The module's variables.
    pub fn vars(&self) -> &VarMap {
        self.vars
    }

    /// Which optimizer `finetune_function` is called for (Lightning's `opt_idx`).
    pub fn optimizer_index(&self) -> usize {
        self.optimizer_index
    }

    /// Lightning's `freeze(modules)`: freezes the parameters under `prefix`, except those of
    /// batch-norm layers, which stay trainable (`train_bn=True`, Lightning's default).
    pub fn freeze(&mut self, prefix: &str) -> Result<Vec<String>> {
        self.freeze_with(prefix, true)
    }

    /// `freeze(modules, train_bn)`: with `train_bn` false, batch-norm layers are frozen too.
    /// Returns the names frozen.
    pub fn freeze_with(&mut self, prefix: &str, train_bn: bool) -> Result<Vec<String>> {
        let (mut names, mut bn) = (matching(self.vars, prefix)?, Vec::new());
        if train_bn {
            let data = self.vars.data().lock().unwrap_or_else(|p| p.into_inner());
            (bn, names) = names.into_iter().partition(|n| super::is_batch_norm(&data, n));
        }
        self.trainer.frozen.insert(names.iter().cloned(), self.vars);
        // Lightning's `make_trainable` on the batch-norm layers
        self.trainer.frozen.remove(&bn, self.vars);
        Ok(names)
    }

    /// Lightning's `unfreeze_and_add_param_group`: unfreezes the parameters under `prefix`
    /// and adds those the optimizer does not hold yet as a new group, at `lr`, or at the first
    /// group's rate divided by `initial_denom_lr` when `lr` is `None`. Without `train_bn`
    /// batch-norm layers stay frozen and out of the group. Parameters already in the optimizer
    /// are skipped with Lightning's warning. Returns the names added.
    pub fn unfreeze_and_add_param_group<O: Optimizer>(
        &mut self,
        optimizer: &mut O,
        prefix: &str,
        lr: Option<f64>,
        initial_denom_lr: f64,
        train_bn: bool,
    ) -> Result<Vec<String>> {
        let names = matching(self.vars, prefix)?;
        let lr = match lr {
            Some(lr) => lr,
            None => optimizer.learning_rate(0) / initial_denom_lr,
        };
        let held: std::collections::HashSet<String> =
            optimizer.named_parameters().into_iter().map(|(n, _)| n.to_string()).collect();
        let mut params = Vec::new();
        let mut skipped = Vec::new();
        {
            let data = self.vars.data().lock().unwrap_or_else(|p| p.into_inner());
            for n in names {
                if super::is_running_stat(&n) || (!train_bn && super::is_batch_norm(&data, &n)) {
                    continue;
                }
                if held.contains(&n) {
                    skipped.push(n);
                } else if let Some(v) = data.get(&n) {
                    params.push((n, v.clone()));
                }
            }
        }
        if !skipped.is_empty() {
            crate::dist::rank_zero_warn(format!(
                "the parameters to unfreeze under `{prefix}` already exist within another group of this optimizer ({}); they are skipped. Did you build the optimizer from `Params::trainable(&vars, trainer)`?",
                skipped.join(", ")
            ));
        }
        // unfreeze what the group holds (and what an optimizer already held)
        let unfrozen: Vec<String> = params.iter().map(|(n, _)| n.clone()).chain(skipped).collect();
        self.trainer.frozen.remove(&unfrozen, self.vars);
        let added: Vec<String> = params.iter().map(|(n, _)| n.clone()).collect();
        if !params.is_empty() {
            optimizer.add_param_group(ParamGroup { params, lr: Some(lr) })?;
        }
        Ok(added)
    }
}

/// Runs a [`BaseFinetuning`] as a callback: `freeze_before_training` in `setup`,
/// `finetune_function` at each training epoch's start, its state in checkpoints.
#[derive(Debug, Clone, Default)]
pub struct Finetuning<F>(pub F);

/// `setup`: `freeze_before_training`.
pub(crate) fn setup<F: BaseFinetuning>(f: &mut F, trainer: &mut TrainerState, vars: &VarMap) -> Result<()> {
    f.freeze_before_training(&mut Finetuner::new(trainer, vars))
}

/// `on_train_epoch_start`: `finetune_function` for each optimizer (Lightning's loop over
/// `trainer.optimizers`).
pub(crate) fn epoch_start<F: BaseFinetuning, O: Optimizers>(
    f: &mut F,
    trainer: &mut TrainerState,
    vars: &VarMap,
    optimizers: &mut O,
) -> Result<()> {
    let epoch = trainer.current_epoch;
    for i in 0..optimizers.count() {
        if let Some(o) = optimizers.get(i) {
            let mut ft = Finetuner { trainer: &mut *trainer, vars, optimizer_index: i };
            f.finetune_function(&mut ft, epoch, o)?;
        }
    }
    Ok(())
}

#[lightning_macros::callback]
impl<F: BaseFinetuning> Finetuning<F> {
    fn setup(&mut self, trainer: &mut TrainerState, module: &mut impl HasParameters) -> Result<()> {
        setup(&mut self.0, trainer, module.parameters())
    }

    fn on_train_epoch_start(
        &mut self,
        trainer: &mut TrainerState,
        module: &mut impl HasParameters,
        optimizers: &mut impl Optimizers,
    ) -> Result<()> {
        epoch_start(&mut self.0, trainer, module.parameters(), optimizers)
    }

    fn state_dict(&mut self) -> serde_json::Value {
        self.0.state_dict()
    }

    fn load_state_dict(&mut self, state_dict: &serde_json::Value) -> Result<()> {
        self.0.load_state_dict(state_dict)
    }
}
