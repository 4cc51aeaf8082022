//! `BackboneFinetuning`: Lightning's schedule for a pretrained backbone.

use serde_json::{json, Value};

use super::base::{self, BaseFinetuning, Finetuner};
use crate::{HasParameters, Optimizer, Optimizers, Result, TrainerState};

/// Lightning's default `lambda_func`: the backbone's rate doubles each epoch (its
/// `multiplicative` returns 2.0 whatever the epoch).
pub fn multiplicative(epoch: usize) -> f64 {
    let _ = epoch;
    2.0
}

/// Lightning's `BackboneFinetuning`: the parameters under `"backbone."` are frozen until
/// epoch `unfreeze_backbone_at_epoch` (10), then added to the optimizer as a new group at
/// `backbone_initial_lr`, or the first group's rate × `backbone_initial_ratio_lr` (0.1).
/// At each later epoch `e` the backbone's rate becomes `lambda_func(e + 1)` × its previous
/// rate, capped at the first group's current rate when `should_align` (true). Lightning's
/// arithmetic, tested in `tests/finetune.rs`.
///
/// ```
/// use lightning::finetune::BackboneFinetuning;
/// let finetuning = BackboneFinetuning::new()
///     .unfreeze_backbone_at_epoch(2)
///     .lambda_func(|_epoch| 1.5)
///     .prefix("features.");
/// // Trainer::builder().callbacks((finetuning,))
/// # let _ = finetuning;
/// ```
///
/// As in Lightning, `initial_denom_lr` has no effect here (the backbone's rate is always
/// given to `unfreeze_and_add_param_group`, which divides only a rate it picks itself),
/// `train_bn` applies to the unfreezing only (freezing keeps batch-norm layers trainable),
/// and the schedule is for the first parameter group's rate as it is at each epoch's start.
#[derive(Debug, Clone)]
pub struct BackboneFinetuning<L = fn(usize) -> f64> {
    unfreeze_at: usize,
    lambda_func: L,
    initial_ratio_lr: f64,
    initial_lr: Option<f64>,
    should_align: bool,
    initial_denom_lr: f64,
    train_bn: bool,
    verbose: bool,
    prefix: String,
    previous_backbone_lr: Option<f64>,
}

impl Default for BackboneFinetuning {
    fn default() -> Self {
        Self::new()
    }
}

impl BackboneFinetuning {
    /// Lightning's defaults.
    pub fn new() -> Self {
        BackboneFinetuning {
            unfreeze_at: 10,
            lambda_func: multiplicative,
            initial_ratio_lr: 0.1,
            initial_lr: None,
            should_align: true,
            initial_denom_lr: 10.0,
            train_bn: true,
            verbose: false,
            prefix: "backbone.".into(),
            previous_backbone_lr: None,
        }
    }
}

impl<L: Fn(usize) -> f64> BackboneFinetuning<L> {
    /// The epoch the backbone starts training at (10).
    pub fn unfreeze_backbone_at_epoch(mut self, epoch: usize) -> Self {
        self.unfreeze_at = epoch;
        self
    }
    /// The factor of the backbone's rate at each epoch after unfreezing, given `epoch + 1`.
    pub fn lambda_func<F: Fn(usize) -> f64>(self, f: F) -> BackboneFinetuning<F> {
        let BackboneFinetuning {
            unfreeze_at,
            initial_ratio_lr,
            initial_lr,
            should_align,
            initial_denom_lr,
            train_bn,
            verbose,
            prefix,
            previous_backbone_lr,
            ..
        } = self;
        BackboneFinetuning {
            unfreeze_at,
            lambda_func: f,
            initial_ratio_lr,
            initial_lr,
            should_align,
            initial_denom_lr,
            train_bn,
            verbose,
            prefix,
            previous_backbone_lr,
        }
    }
    /// The backbone's first rate as a fraction of the first group's (0.1).
    pub fn backbone_initial_ratio_lr(mut self, ratio: f64) -> Self {
        self.initial_ratio_lr = ratio;
        self
    }
    /// The backbone's first rate itself (instead of the ratio).
    pub fn backbone_initial_lr(mut self, lr: f64) -> Self {
        self.initial_lr = Some(lr);
        self
    }
    /// Cap the backbone's rate at the first group's (true).
    pub fn should_align(mut self, align: bool) -> Self {
        self.should_align = align;
        self
    }
    /// Lightning's `initial_denom_lr` (10); unused by this schedule, as in Lightning.
    pub fn initial_denom_lr(mut self, denom: f64) -> Self {
        self.initial_denom_lr = denom;
        self
    }
    /// Whether the unfrozen group includes batch-norm layers (true).
    pub fn train_bn(mut self, train_bn: bool) -> Self {
        self.train_bn = train_bn;
        self
    }
    /// Print the rates at each change (rank 0, standard error).
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }
    /// The backbone's name prefix in the `VarMap` (`"backbone."`; Lightning's `pl_module.backbone`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// The backbone's rate last set (`None` before unfreezing).
    pub fn previous_backbone_lr(&self) -> Option<f64> {
        self.previous_backbone_lr
    }

    fn say(&self, current: f64, backbone: f64) {
        if self.verbose {
            crate::dist::rank_zero_only(|| eprintln!("Current lr: {current:e}, Backbone lr: {backbone:e}"));
        }
    }
}

impl<L: Fn(usize) -> f64> BaseFinetuning for BackboneFinetuning<L> {
    fn freeze_before_training(&mut self, ft: &mut Finetuner<'_>) -> Result<()> {
        ft.freeze(&self.prefix).map(|_| ())
    }

    fn finetune_function<O: Optimizer>(
        &mut self,
        ft: &mut Finetuner<'_>,
        epoch: usize,
        optimizer: &mut O,
    ) -> Result<()> {
        let current = optimizer.learning_rate(0);
        if epoch == self.unfreeze_at {
            let initial = self.initial_lr.unwrap_or(current * self.initial_ratio_lr);
            self.previous_backbone_lr = Some(initial);
            let prefix = self.prefix.clone();
            ft.unfreeze_and_add_param_group(optimizer, &prefix, Some(initial), self.initial_denom_lr, self.train_bn)?;
            self.say(current, initial);
        } else if let (true, Some(previous)) = (epoch > self.unfreeze_at, self.previous_backbone_lr) {
            let next = (self.lambda_func)(epoch + 1) * previous;
            let next = if self.should_align && next > current { current } else { next };
            let last = optimizer.num_groups().saturating_sub(1);
            optimizer.set_learning_rate(last, next);
            self.previous_backbone_lr = Some(next);
            self.say(current, next);
        }
        Ok(())
    }

    fn state_dict(&self) -> Value {
        json!({ "previous_backbone_lr": self.previous_backbone_lr })
    }

    fn load_state_dict(&mut self, state: &Value) -> Result<()> {
        self.previous_backbone_lr = match state.get("previous_backbone_lr") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_f64().ok_or_else(|| crate::Error::CheckpointField {
                path: None,
                field: "BackboneFinetuning.previous_backbone_lr".into(),
                reason: format!("is {v}, not a number"),
            })?),
        };
        Ok(())
    }
}

#[lightning_macros::callback]
impl<L: Fn(usize) -> f64> BackboneFinetuning<L> {
    fn setup(&mut self, trainer: &mut TrainerState, module: &mut impl HasParameters) -> Result<()> {
        base::setup(self, trainer, module.parameters())
    }

    fn on_train_epoch_start(
        &mut self,
        trainer: &mut TrainerState,
        module: &mut impl HasParameters,
        optimizers: &mut impl Optimizers,
    ) -> Result<()> {
        base::epoch_start(self, trainer, module.parameters(), optimizers)
    }

    fn state_dict(&mut self) -> Value {
        <Self as BaseFinetuning>::state_dict(self)
    }

    fn load_state_dict(&mut self, state_dict: &Value) -> Result<()> {
        <Self as BaseFinetuning>::load_state_dict(self, state_dict)
    }
}
