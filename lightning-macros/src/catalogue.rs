//! The hook catalogue: every hook's name, side, arguments and return type, defined once.
//!
//! The attribute macros check user methods against this table, and the hidden
//! `__*_items!` macros generate the runtime's `LightningModule`, `Callback` and
//! `CallbackList` traits from it, so the checks and the traits cannot drift.
//!
//! Types are written as Rust source with placeholders that each side resolves:
//! `$Batch`, `$Prediction`, `$Loader`, `$Callbacks`, `$Optimizer`, `$Scheduler`, `$Optim`.
//! Order follows Lightning's hook-order test (reference §2.3).

/// Which side may implement a hook.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    /// `LightningModule` only.
    Module,
    /// `Callback` only.
    Callback,
    /// Both; callbacks run first unless the loop says otherwise.
    Both,
}

impl Side {
    pub fn module(self) -> bool {
        matches!(self, Side::Module | Side::Both)
    }
    pub fn callback(self) -> bool {
        matches!(self, Side::Callback | Side::Both)
    }
}

/// One documented argument of a hook.
pub struct Arg {
    pub name: &'static str,
    pub ty: &'static str,
}

/// One hook.
pub struct Hook {
    pub name: &'static str,
    pub side: Side,
    pub args: &'static [Arg],
    /// Return type of the module's hook (inside `Result`).
    pub module_ret: &'static str,
    /// Return type of a callback's hook (inside `Result`).
    pub callback_ret: &'static str,
    /// Body of the module side's default (what Lightning does when not overridden).
    pub module_default: &'static str,
    /// Body of the callback side's default.
    pub callback_default: &'static str,
    /// Whether the hook is offered the `trainer: &mut TrainerState` argument.
    pub trainer: bool,
    /// Whether callback lists call monitoring callbacks separately (after the module).
    pub monitoring_split: bool,
    pub doc: &'static str,
}

macro_rules! args {
    ($($n:ident : $t:literal),* $(,)?) => { &[$(Arg { name: stringify!($n), ty: $t }),*] };
}

const UNIT: &str = "()";
const OK: &str = "::core::result::Result::Ok(())";

/// A hook with Lightning's common shape: returns nothing, default does nothing.
const fn plain(name: &'static str, side: Side, args: &'static [Arg], doc: &'static str) -> Hook {
    Hook {
        name,
        side,
        args,
        module_ret: UNIT,
        callback_ret: UNIT,
        module_default: OK,
        callback_default: OK,
        trainer: true,
        monitoring_split: false,
        doc,
    }
}

/// A module-only hook whose default is an error: the trainer requires it for some entry point.
const fn required(name: &'static str, args: &'static [Arg], ret: &'static str, doc: &'static str) -> Hook {
    Hook {
        name,
        side: Side::Module,
        args,
        module_ret: ret,
        callback_ret: UNIT,
        module_default:
            "::core::result::Result::Err(::lightning::Error::MissingHook { module: Self::NAME, hook: \"$hook\" })",
        callback_default: OK,
        trainer: true,
        monitoring_split: false,
        doc,
    }
}

/// A hook that receives the batch by value and returns the batch later hooks see.
const fn batch_map(
    name: &'static str,
    side: Side,
    args: &'static [Arg],
    default: &'static str,
    doc: &'static str,
) -> Hook {
    Hook {
        name,
        side,
        args,
        module_ret: "$Batch",
        callback_ret: "$Batch",
        module_default: default,
        callback_default: default,
        trainer: true,
        monitoring_split: false,
        doc,
    }
}

use Side::{Both, Callback as Cb, Module as Md};

pub const HOOKS: &[Hook] = &[
    // ---- set-up, configuration, data (reference §4.1) ----
    Hook {
        name: "configure_callbacks",
        side: Md,
        args: args!(),
        module_ret: "::core::option::Option<$Callbacks>",
        callback_ret: UNIT,
        module_default: "::core::result::Result::Ok(::core::option::Option::None)",
        callback_default: OK,
        trainer: true,
        monitoring_split: false,
        doc: "Returns extra callbacks; they run after the trainer's own (first call of every stage).",
    },
    plain("prepare_data", Md, args!(), "Downloads or prepares data once, before `setup`."),
    plain("setup", Both, args!(stage: "::lightning::Stage"), "Start of every stage: fit, validate, test or predict."),
    plain("configure_model", Md, args!(), "Builds layers lazily, after `setup` and before the optimizers."),
    required(
        "configure_optimizers",
        args!(),
        "$Optim",
        "Returns the optimizer, or `(optimizer, scheduler)` or `(optimizer, SchedulerConfig)`. Required by `fit`.",
    ),
    required("train_dataloader", args!(), "$Loader", "The training batches, when `fit` is not given a loader."),
    required("val_dataloader", args!(), "$Loader", "The validation batches, when not given a loader."),
    required("test_dataloader", args!(), "$Loader", "The test batches, when not given a loader."),
    required("predict_dataloader", args!(), "$Loader", "The prediction batches, when not given a loader."),
    plain("teardown", Both, args!(stage: "::lightning::Stage"), "End of every stage that did not fail."),
    // ---- stage and epoch boundaries (§4.2) ----
    plain("on_fit_start", Both, args!(), "Start of `fit`, after `configure_optimizers`."),
    plain("on_fit_end", Both, args!(), "End of `fit`, before `teardown`."),
    plain("on_sanity_check_start", Cb, args!(), "Before the sanity-check validation batches."),
    plain("on_sanity_check_end", Cb, args!(), "After the sanity-check validation batches."),
    plain("on_train_start", Both, args!(), "Start of training, after the sanity check."),
    plain("on_train_end", Both, args!(), "End of training."),
    plain("on_validation_start", Both, args!(), "Start of a validation run."),
    plain("on_validation_end", Both, args!(), "End of a validation run."),
    plain("on_test_start", Both, args!(), "Start of `test`."),
    plain("on_test_end", Both, args!(), "End of `test`."),
    plain("on_predict_start", Both, args!(), "Start of `predict`."),
    plain("on_predict_end", Both, args!(), "End of `predict`."),
    plain("on_train_epoch_start", Both, args!(), "Start of a training epoch."),
    Hook {
        monitoring_split: true,
        ..plain(
            "on_train_epoch_end",
            Both,
            args!(),
            "End of a training epoch. Monitoring callbacks (checkpoints, early stopping) run after the module.",
        )
    },
    plain("on_validation_epoch_start", Both, args!(), "Start of a validation epoch."),
    plain("on_validation_epoch_end", Both, args!(), "End of a validation epoch."),
    plain("on_test_epoch_start", Both, args!(), "Start of the test epoch."),
    plain("on_test_epoch_end", Both, args!(), "End of the test epoch."),
    plain("on_predict_epoch_start", Both, args!(), "Start of the predict epoch."),
    plain("on_predict_epoch_end", Both, args!(), "End of the predict epoch."),
    // ---- batch transfer (§4.4) ----
    batch_map(
        "on_before_batch_transfer",
        Md,
        args!(batch: "$Batch", dataloader_idx: "usize"),
        "::core::result::Result::Ok(batch)",
        "Edits a batch before it moves to the device.",
    ),
    batch_map(
        "transfer_batch_to_device",
        Md,
        args!(batch: "$Batch", device: "&::lightning::candle::Device", dataloader_idx: "usize"),
        "::lightning::TransferBatch::to_device(batch, device)",
        "Moves a batch to the device (default: every tensor in it).",
    ),
    batch_map(
        "on_after_batch_transfer",
        Md,
        args!(batch: "$Batch", dataloader_idx: "usize"),
        "::core::result::Result::Ok(batch)",
        "Edits a batch after it moved to the device.",
    ),
    // ---- batch hooks (§4.3) ----
    Hook {
        module_ret: "::lightning::Flow",
        module_default: "::core::result::Result::Ok(::lightning::Flow::Continue)",
        ..plain(
            "on_train_batch_start",
            Both,
            args!(batch: "&$Batch", batch_idx: "usize"),
            "Before a training batch. The module may return `Flow::SkipEpoch` (Lightning's -1); a callback's return is ignored.",
        )
    },
    batch_map(
        "on_batch_begin",
        Both,
        args!(batch: "$Batch", batch_idx: "usize"),
        "::core::result::Result::Ok(batch)",
        "candle-lightning's own: right after `on_train_batch_start`, each callback then the module gets the batch and returns the batch `training_step` sees.",
    ),
    plain(
        "on_train_batch_end",
        Both,
        args!(outputs: "&::lightning::StepOutput", batch: "&$Batch", batch_idx: "usize"),
        "After a training batch; `outputs.loss` is already divided by `accumulate_grad_batches`.",
    ),
    plain(
        "on_validation_batch_start",
        Both,
        args!(batch: "&$Batch", batch_idx: "usize", dataloader_idx: "usize"),
        "Before a validation batch.",
    ),
    plain(
        "on_validation_batch_end",
        Both,
        args!(outputs: "&::lightning::StepOutput", batch: "&$Batch", batch_idx: "usize", dataloader_idx: "usize"),
        "After a validation batch.",
    ),
    plain(
        "on_test_batch_start",
        Both,
        args!(batch: "&$Batch", batch_idx: "usize", dataloader_idx: "usize"),
        "Before a test batch.",
    ),
    plain(
        "on_test_batch_end",
        Both,
        args!(outputs: "&::lightning::StepOutput", batch: "&$Batch", batch_idx: "usize", dataloader_idx: "usize"),
        "After a test batch.",
    ),
    plain(
        "on_predict_batch_start",
        Both,
        args!(batch: "&$Batch", batch_idx: "usize", dataloader_idx: "usize"),
        "Before a predict batch.",
    ),
    plain(
        "on_predict_batch_end",
        Both,
        args!(outputs: "&$Prediction", batch: "&$Batch", batch_idx: "usize", dataloader_idx: "usize"),
        "After a predict batch.",
    ),
    // ---- steps (§4.5) ----
    required(
        "training_step",
        args!(batch: "&$Batch", batch_idx: "usize", manual: "&mut impl ::lightning::ManualOptimization<Self>"),
        "::lightning::StepOutput",
        "Computes the loss of one batch: return a `Tensor`, a `StepOutput`, or `None` to skip backward. \
         With `#[lightning_module(manual_optimization)]` it drives the optimizers itself through `manual`.",
    ),
    required(
        "validation_step",
        args!(batch: "&$Batch", batch_idx: "usize", dataloader_idx: "usize"),
        "::lightning::StepOutput",
        "One validation batch. Required by `validate`; enables validation in `fit`.",
    ),
    required(
        "test_step",
        args!(batch: "&$Batch", batch_idx: "usize", dataloader_idx: "usize"),
        "::lightning::StepOutput",
        "One test batch. Required by `test`.",
    ),
    required(
        "predict_step",
        args!(batch: "&$Batch", batch_idx: "usize", dataloader_idx: "usize"),
        "$Prediction",
        "One prediction; `predict` collects and returns them. Required by `predict`.",
    ),
    // ---- optimization (§4.6), in call order ----
    Hook {
        trainer: false,
        module_default: "optimizer_closure.step(self, optimizer)",
        ..plain(
            "optimizer_step",
            Md,
            args!(
                epoch: "usize",
                batch_idx: "usize",
                optimizer: "&mut $Optimizer",
                optimizer_closure: "&mut impl ::lightning::OptimizerClosure<Self>"
            ),
            "Once per accumulation window. The default runs `optimizer_closure.step(self, optimizer)`: \
             the closure runs `training_step`, zero-grad and backward, then the gradients are clipped and applied.",
        )
    },
    plain(
        "on_before_zero_grad",
        Both,
        args!(optimizer: "&mut $Optimizer"),
        "After `training_step`, before `optimizer_zero_grad`, on the first batch of each accumulation window.",
    ),
    Hook {
        module_default: "{ grads.clear(); ::core::result::Result::Ok(()) }",
        ..plain(
            "optimizer_zero_grad",
            Md,
            args!(epoch: "usize", batch_idx: "usize", optimizer: "&mut $Optimizer", grads: "&mut ::lightning::Gradients"),
            "Clears the accumulated gradients (default: `grads.clear()`).",
        )
    },
    plain(
        "on_before_backward",
        Both,
        args!(loss: "&::lightning::candle::Tensor"),
        "Before backward; the loss is already divided by `accumulate_grad_batches`.",
    ),
    Hook {
        module_ret: "::lightning::candle::backprop::GradStore",
        module_default: "::core::result::Result::Ok(loss.backward()?)",
        ..plain(
            "backward",
            Md,
            args!(loss: "&::lightning::candle::Tensor"),
            "Computes the gradients of the loss (default: `loss.backward()`); the trainer accumulates them.",
        )
    },
    plain(
        "on_after_backward",
        Both,
        args!(grads: "&::lightning::Gradients"),
        "After backward, with the gradients accumulated so far.",
    ),
    plain(
        "on_before_optimizer_step",
        Both,
        args!(optimizer: "&mut $Optimizer", grads: "&::lightning::Gradients"),
        "Before clipping and the parameter update, once per accumulation window.",
    ),
    Hook {
        module_default: "grads.clip(gradient_clip_val, gradient_clip_algorithm)",
        ..plain(
            "configure_gradient_clipping",
            Md,
            args!(
                optimizer: "&mut $Optimizer",
                gradient_clip_val: "::core::option::Option<f64>",
                gradient_clip_algorithm: "::lightning::GradientClipAlgorithm",
                grads: "&mut ::lightning::Gradients"
            ),
            "Clips the gradients (default: by the trainer's `gradient_clip_val` and algorithm).",
        )
    },
    Hook {
        module_default: "{ ::lightning::LrScheduler::step(scheduler, metric); ::core::result::Result::Ok(()) }",
        ..plain(
            "lr_scheduler_step",
            Md,
            args!(scheduler: "&mut $Scheduler", metric: "::core::option::Option<f64>"),
            "Steps a learning-rate scheduler (default: `scheduler.step(metric)`).",
        )
    },
    plain("on_validation_model_zero_grad", Md, args!(), "Before each validation run inside `fit`."),
    plain("on_validation_model_eval", Md, args!(), "Before validation; the trainer has set `trainer.training = false`."),
    plain("on_validation_model_train", Md, args!(), "After validation; called only if implemented."),
    plain("on_test_model_eval", Md, args!(), "Before testing."),
    plain("on_test_model_train", Md, args!(), "After testing; called only if implemented."),
    plain("on_predict_model_eval", Md, args!(), "Before predicting."),
    // ---- checkpoints (§4.8) ----
    plain(
        "on_save_checkpoint",
        Both,
        args!(checkpoint: "&mut ::lightning::Checkpoint"),
        "Edits a checkpoint before it is written: callbacks first, then the module.",
    ),
    plain(
        "on_load_checkpoint",
        Both,
        args!(checkpoint: "&mut ::lightning::Checkpoint"),
        "Sees a loaded checkpoint: the module first (before its weights load), then the callbacks.",
    ),
    Hook {
        callback_ret: "::lightning::serde_json::Value",
        callback_default: "::core::result::Result::Ok(::lightning::serde_json::Value::Null)",
        ..plain("state_dict", Cb, args!(), "The callback's state, saved in checkpoints under its `STATE_KEY`.")
    },
    plain(
        "load_state_dict",
        Cb,
        args!(state_dict: "&::lightning::serde_json::Value"),
        "Restores the callback's state from a checkpoint.",
    ),
    plain(
        "on_exception",
        Cb,
        args!(exception: "&::lightning::Error"),
        "A hook or the trainer failed; no end or teardown hooks run after this.",
    ),
];

/// Hooks Lightning removed, with what to use instead (reference §6.1–6.2), and known wrong names.
pub const REMOVED: &[(&str, &str, &str)] = &[
    ("training_epoch_end", "on_train_epoch_end", "was removed in Lightning 2.0; keep step outputs on `self`"),
    ("validation_epoch_end", "on_validation_epoch_end", "was removed in Lightning 2.0; keep step outputs on `self`"),
    ("test_epoch_end", "on_test_epoch_end", "was removed in Lightning 2.0; keep step outputs on `self`"),
    ("training_step_end", "on_train_batch_end", "was removed in Lightning 2.0"),
    ("validation_step_end", "on_validation_batch_end", "was removed in Lightning 2.0"),
    ("test_step_end", "on_test_batch_end", "was removed in Lightning 2.0"),
    (
        "on_epoch_start",
        "on_train_epoch_start",
        "was removed in Lightning 1.8 (or use `on_validation_epoch_start` / `on_test_epoch_start`)",
    ),
    (
        "on_epoch_end",
        "on_train_epoch_end",
        "was removed in Lightning 1.8 (or use `on_validation_epoch_end` / `on_test_epoch_end`)",
    ),
    ("on_batch_start", "on_train_batch_start", "was removed in Lightning 1.8"),
    ("on_batch_end", "on_train_batch_end", "was removed in Lightning 1.8"),
    ("on_pretrain_routine_start", "on_fit_start", "was removed in Lightning 1.8"),
    ("on_pretrain_routine_end", "on_fit_start", "was removed in Lightning 1.8"),
    ("on_init_start", "setup", "was removed in Lightning 1.8"),
    ("on_init_end", "setup", "was removed in Lightning 1.8"),
    ("configure_sharded_model", "configure_model", "is deprecated"),
    ("on_configure_sharded_model", "configure_model", "was removed in Lightning 1.8"),
    ("training_batch_end", "on_train_batch_end", "is not a hook (a known mistake, Lightning#17187)"),
];

pub fn find(name: &str) -> Option<&'static Hook> {
    HOOKS.iter().find(|h| h.name == name)
}

pub fn removed(name: &str) -> Option<&'static (&'static str, &'static str, &'static str)> {
    REMOVED.iter().find(|r| r.0 == name)
}

/// The closest hook name available on `side`, if it is close enough to be a likely typo.
pub fn suggest(name: &str, on_module: bool) -> Option<&'static str> {
    HOOKS
        .iter()
        .filter(|h| if on_module { h.side.module() } else { h.side.callback() })
        .map(|h| (h.name, strsim::jaro_winkler(name, h.name), strsim::damerau_levenshtein(name, h.name)))
        .filter(|&(_, jw, dl)| dl <= 3 || jw >= 0.93)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(n, _, _)| n)
}

/// Where a hook may call `trainer.log` (reference §4.10): the variant of the runtime's
/// `LogScope` its wrapper sets before running the user's method.
pub fn log_scope(hook: &str) -> &'static str {
    match hook {
        "training_step"
        | "on_train_batch_start"
        | "on_train_batch_end"
        | "on_batch_begin"
        | "on_before_zero_grad"
        | "optimizer_zero_grad"
        | "on_before_backward"
        | "backward"
        | "on_after_backward"
        | "on_before_optimizer_step"
        | "configure_gradient_clipping"
        | "optimizer_step" => "TrainStep",
        "validation_step"
        | "test_step"
        | "on_validation_batch_start"
        | "on_validation_batch_end"
        | "on_test_batch_start"
        | "on_test_batch_end" => "EvalStep",
        "on_train_start"
        | "on_validation_start"
        | "on_test_start"
        | "on_train_epoch_start"
        | "on_train_epoch_end"
        | "on_validation_epoch_start"
        | "on_validation_epoch_end"
        | "on_test_epoch_start"
        | "on_test_epoch_end" => "EpochOnly",
        _ => "Forbidden",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scoped_hook_is_in_the_catalogue() {
        let scoped = [
            "training_step",
            "on_train_batch_start",
            "on_train_batch_end",
            "on_batch_begin",
            "on_before_zero_grad",
            "optimizer_zero_grad",
            "on_before_backward",
            "backward",
            "on_after_backward",
            "on_before_optimizer_step",
            "configure_gradient_clipping",
            "optimizer_step",
            "validation_step",
            "test_step",
            "on_validation_batch_start",
            "on_validation_batch_end",
            "on_test_batch_start",
            "on_test_batch_end",
            "on_train_start",
            "on_validation_start",
            "on_test_start",
            "on_train_epoch_start",
            "on_train_epoch_end",
            "on_validation_epoch_start",
            "on_validation_epoch_end",
            "on_test_epoch_start",
            "on_test_epoch_end",
        ];
        for h in scoped {
            assert!(HOOKS.iter().any(|k| k.name == h), "{h} is not a hook");
            assert_ne!(log_scope(h), "Forbidden");
        }
        assert_eq!(log_scope("on_fit_start"), "Forbidden");
        assert_eq!(log_scope("on_validation_end"), "Forbidden");
    }

    #[test]
    fn catalogue_size() {
        // Lightning 2.x: 37 callback hooks + state_dict/load_state_dict, the module's hooks;
        // 65 distinct names, plus our on_batch_begin.
        assert_eq!(HOOKS.len(), 66);
        assert_eq!(HOOKS.iter().filter(|h| h.side.callback()).count(), 37 + 2 + 1);
    }

    #[test]
    fn names_are_unique() {
        for (i, h) in HOOKS.iter().enumerate() {
            assert!(HOOKS[i + 1..].iter().all(|o| o.name != h.name), "duplicate {}", h.name);
            assert!(removed(h.name).is_none(), "{} is both live and removed", h.name);
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("on_train_epoch_ned", true), Some("on_train_epoch_end"));
        assert_eq!(suggest("trainig_step", true), Some("training_step"));
        assert_eq!(suggest("compute_accuracy", true), None);
        // a callback cannot be offered a module-only hook
        assert_ne!(suggest("trainig_step", false), Some("training_step"));
    }

    #[test]
    fn every_type_parses() {
        for h in HOOKS {
            for a in h.args {
                let ty = a.ty.replace('$', "");
                syn::parse_str::<syn::Type>(&ty).unwrap_or_else(|e| panic!("{}.{}: {e}", h.name, a.name));
            }
        }
    }
}
