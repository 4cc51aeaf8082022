//! The hook catalogue: every hook's name, side, arguments and return type, defined once,
//! with how the trainer calls it (order, log scope, the datamodule's version).
//!
//! The attribute macros check user methods against this table, and the hidden
//! `__*_items!` macros generate from it the runtime's `LightningModule`, `Callback`,
//! `CallbackList` and `DataModule` traits, the entry points' marker traits, and the
//! trainer's hook dispatcher, so the checks, the traits and the calls cannot drift.
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
    /// Both; callbacks run first unless the hook's [`Order`] says otherwise.
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

/// In what order the dispatcher calls the callbacks and the module (Lightning's
/// `_call_callback_hooks` / `_call_lightning_module_hook` pairs).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Order {
    /// The callbacks, then the module.
    CallbacksFirst,
    /// The module, then the callbacks (`on_load_checkpoint`: the module edits the dict first).
    ModuleFirst,
    /// The callbacks that do not monitor, the module, then the monitoring callbacks, so that
    /// checkpoints and early stopping see what the module logged (Lightning PR #16567).
    MonitoringSplit,
}

/// Where a hook may call `trainer.log` (reference §4.10): the runtime's `LogScope` variant
/// the dispatcher sets while the hook runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scope {
    /// Training step and batch hooks: per step by default.
    TrainStep,
    /// Evaluation step and batch hooks: per epoch by default.
    EvalStep,
    /// Loop and epoch boundaries: per epoch only.
    EpochOnly,
    /// Lightning raises "You can't `self.log()` inside ...".
    Forbidden,
}

/// An entry point of the trainer that needs the module to have a hook: `#[lightning_module]`
/// implements the marker trait `Has<Hook>` when it does, and the entry point requires it.
#[derive(Clone, Copy)]
pub struct Needs {
    /// The `Trainer` method (`fit`, `validate`, ...).
    pub entry: &'static str,
    /// Needed only with `Data::module()` (`Data::loader` and `Data::datamodule` bring loaders).
    pub unless_given: bool,
    /// A hook the module must then have too (an error at its impl), and how to write it.
    pub with: Option<(&'static str, &'static str)>,
}

/// Where the `DataModule`'s version of a hook runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DataOrder {
    /// Before the callbacks and the module.
    First,
    /// After the callbacks, whatever they returned (the datamodule's hook cannot fail).
    Last,
    /// Instead of the module's, when the datamodule writes it (Lightning's `_DataHookSelector`).
    Replaces,
    /// First; the module's runs only when the datamodule's returns `None` (the loaders).
    Fallback,
    /// On its own: checkpoints save and restore the datamodule between the other parts.
    Apart,
}

/// The `DataModule`'s version of a hook: it takes the hook's arguments (no `trainer`, no
/// module) and returns `Result<ret>` (or `ret` itself when it cannot fail).
#[derive(Clone, Copy)]
pub struct DataHook {
    pub order: DataOrder,
    pub ret: &'static str,
    pub fallible: bool,
    pub default: &'static str,
    pub doc: &'static str,
}

/// One documented argument of a hook.
#[derive(Clone, Copy)]
pub struct Arg {
    pub name: &'static str,
    pub ty: &'static str,
}

/// One hook.
#[derive(Clone, Copy)]
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
    /// For a hook not offered `trainer`: the expression that reaches the trainer's state
    /// through an argument, for the dispatcher's record of the running hook.
    pub state_via: Option<&'static str>,
    pub order: Order,
    /// The trainer acts between the two sides (writes the checkpoints the callbacks asked
    /// for, checks a loaded checkpoint): the dispatcher runs a closure there.
    pub between: bool,
    pub scope: Scope,
    /// Receives the batch by value and returns the batch later hooks see.
    pub maps_batch: bool,
    /// A callback's state: lists collect it by `STATE_KEY` instead of calling each callback.
    pub state: bool,
    pub needs: Option<Needs>,
    pub data: Option<DataHook>,
    pub doc: &'static str,
}

impl Hook {
    /// Where the hook may log.
    const fn logs(self, scope: Scope) -> Hook {
        Hook { scope, ..self }
    }

    /// Required by `entry` (see [`Needs`]).
    const fn needed_by(self, entry: &'static str, unless_given: bool) -> Hook {
        Hook { needs: Some(Needs { entry, unless_given, with: None }), ..self }
    }

    /// The datamodule's version of the hook.
    const fn datamodule(self, order: DataOrder, ret: &'static str, default: &'static str, doc: &'static str) -> Hook {
        Hook { data: Some(DataHook { order, ret, fallible: true, default, doc }), ..self }
    }

    /// The trainer acts between the callbacks and the module (see [`Hook::between`]).
    const fn trainer_between(self) -> Hook {
        Hook { between: true, ..self }
    }

    /// Whether the module's default does the trainer's work (backward, zeroing, clipping,
    /// the device move, the scheduler step), so a profiler times the hook even unwritten.
    pub fn default_works(&self) -> bool {
        let trivial =
            [OK, NONE, "::core::result::Result::Ok(::lightning::Flow::Continue)", "::core::result::Result::Ok(batch)"];
        self.side.module() && !trivial.contains(&self.module_default) && !self.module_default.contains("MissingHook")
    }

    /// Whether the monitoring callbacks run apart (see [`Order::MonitoringSplit`]).
    pub fn monitoring_split(&self) -> bool {
        self.order == Order::MonitoringSplit
    }
}

macro_rules! args {
    ($($n:ident : $t:literal),* $(,)?) => { &[$(Arg { name: stringify!($n), ty: $t }),*] };
}

/// The unit return type: a hook that returns nothing.
pub const UNIT: &str = "()";
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
        state_via: None,
        order: Order::CallbacksFirst,
        between: false,
        scope: Scope::Forbidden,
        maps_batch: false,
        state: false,
        needs: None,
        data: None,
        doc,
    }
}

/// A module-only hook whose default is an error: the trainer requires it for some entry point.
const fn required(name: &'static str, args: &'static [Arg], ret: &'static str, doc: &'static str) -> Hook {
    Hook {
        module_ret: ret,
        module_default:
            "::core::result::Result::Err(::lightning::Error::MissingHook { module: Self::NAME, hook: \"$hook\" })",
        ..plain(name, Side::Module, args, doc)
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
        module_ret: "$Batch",
        callback_ret: "$Batch",
        module_default: default,
        callback_default: default,
        maps_batch: true,
        ..plain(name, side, args, doc)
    }
}

/// A datamodule loader hook: the module's, when the datamodule has none.
const LOADER: &str = "::core::option::Option<$Loader>";
const NONE: &str = "::core::result::Result::Ok(::core::option::Option::None)";

use DataOrder::{Apart, Fallback, First, Last, Replaces};
use Scope::{EpochOnly, EvalStep, TrainStep};
use Side::{Both, Callback as Cb, Module as Md};

pub const HOOKS: &[Hook] = &[
    // ---- set-up, configuration, data (reference §4.1) ----
    Hook {
        module_ret: "::core::option::Option<$Callbacks>",
        module_default: "::core::result::Result::Ok(::core::option::Option::None)",
        ..plain(
            "configure_callbacks",
            Md,
            args!(),
            "Returns extra callbacks; they run after the trainer's own (first call of every stage).",
        )
    },
    plain("prepare_data", Md, args!(), "Downloads or prepares data once, before `setup`.").datamodule(
        First,
        UNIT,
        OK,
        "Downloads or prepares data once, before `setup`.",
    ),
    plain("setup", Both, args!(stage: "::lightning::Stage"), "Start of every stage: fit, validate, test or predict.")
        .datamodule(First, UNIT, OK, "Start of every stage."),
    plain("configure_model", Md, args!(), "Builds layers lazily, after `setup` and before the optimizers."),
    Hook {
        needs: Some(Needs { entry: "fit", unless_given: false, with: None }),
        ..required(
            "configure_optimizers",
            args!(),
            "$Optim",
            "Returns the optimizer, or `(optimizer, scheduler)` or `(optimizer, SchedulerConfig)`. Required by `fit`.",
        )
    },
    required("train_dataloader", args!(), "$Loader", "The training batches, when `fit` is not given a loader.")
        .needed_by("fit", true)
        .datamodule(Fallback, LOADER, NONE, "The training loader (`None`: the module's)."),
    required("val_dataloader", args!(), "$Loader", "The validation batches, when not given a loader.")
        .needed_by("validate", true)
        .datamodule(Fallback, LOADER, NONE, "The validation loader."),
    required("test_dataloader", args!(), "$Loader", "The test batches, when not given a loader.")
        .needed_by("test", true)
        .datamodule(Fallback, LOADER, NONE, "The test loader."),
    required("predict_dataloader", args!(), "$Loader", "The prediction batches, when not given a loader.")
        .needed_by("predict", true)
        .datamodule(Fallback, LOADER, NONE, "The prediction loader."),
    plain("teardown", Both, args!(stage: "::lightning::Stage"), "End of every stage that did not fail.").datamodule(
        First,
        UNIT,
        OK,
        "End of every stage that did not fail.",
    ),
    // ---- stage and epoch boundaries (§4.2) ----
    plain("on_fit_start", Both, args!(), "Start of `fit`, after `configure_optimizers`."),
    plain("on_fit_end", Both, args!(), "End of `fit`, before `teardown`."),
    plain("on_sanity_check_start", Cb, args!(), "Before the sanity-check validation batches."),
    plain("on_sanity_check_end", Cb, args!(), "After the sanity-check validation batches."),
    plain("on_train_start", Both, args!(), "Start of training, after the sanity check.").logs(EpochOnly),
    plain("on_train_end", Both, args!(), "End of training."),
    plain("on_validation_start", Both, args!(), "Start of a validation run.").logs(EpochOnly),
    plain("on_validation_end", Both, args!(), "End of a validation run. The checkpoints the callbacks asked for are written before the module's hook.")
        .trainer_between(),
    plain("on_test_start", Both, args!(), "Start of `test`.").logs(EpochOnly),
    plain("on_test_end", Both, args!(), "End of `test`. The checkpoints the callbacks asked for are written before the module's hook.")
        .trainer_between(),
    plain("on_predict_start", Both, args!(), "Start of `predict`."),
    plain("on_predict_end", Both, args!(), "End of `predict`."),
    plain(
        "on_train_epoch_start",
        Both,
        args!(optimizers: "&mut $Optim"),
        "Start of a training epoch. `optimizers` is what `configure_optimizers` returned (Lightning's \
         `trainer.optimizers`): fine-tuning adds parameter groups and sets their rates here.",
    )
    .logs(EpochOnly),
    Hook {
        order: Order::MonitoringSplit,
        ..plain(
            "on_train_epoch_end",
            Both,
            args!(),
            "End of a training epoch. Monitoring callbacks (checkpoints, early stopping) run after the module.",
        )
        .logs(EpochOnly)
    },
    plain("on_validation_epoch_start", Both, args!(), "Start of a validation epoch.").logs(EpochOnly),
    plain("on_validation_epoch_end", Both, args!(), "End of a validation epoch.").logs(EpochOnly),
    plain("on_test_epoch_start", Both, args!(), "Start of the test epoch.").logs(EpochOnly),
    plain("on_test_epoch_end", Both, args!(), "End of the test epoch.").logs(EpochOnly),
    plain("on_predict_epoch_start", Both, args!(), "Start of the predict epoch."),
    plain("on_predict_epoch_end", Both, args!(), "End of the predict epoch."),
    // ---- batch transfer (§4.4) ----
    batch_map(
        "on_before_batch_transfer",
        Md,
        args!(batch: "$Batch", dataloader_idx: "usize"),
        "::core::result::Result::Ok(batch)",
        "Edits a batch before it moves to the device.",
    )
    .datamodule(
        Replaces,
        "$Batch",
        "::core::result::Result::Ok(batch)",
        "Alters a batch before it moves to the device; replaces the module's when written.",
    ),
    batch_map(
        "transfer_batch_to_device",
        Md,
        args!(batch: "$Batch", device: "&::lightning::candle::Device", dataloader_idx: "usize"),
        "::lightning::TransferBatch::to_device(batch, device)",
        "Moves a batch to the device (default: every tensor in it).",
    )
    .datamodule(
        Replaces,
        "$Batch",
        "::lightning::TransferBatch::to_device(batch, device)",
        "Moves a batch to the device; replaces the module's when written.",
    ),
    batch_map(
        "on_after_batch_transfer",
        Md,
        args!(batch: "$Batch", dataloader_idx: "usize"),
        "::core::result::Result::Ok(batch)",
        "Edits a batch after it moved to the device.",
    )
    .datamodule(
        Replaces,
        "$Batch",
        "::core::result::Result::Ok(batch)",
        "Alters a batch on the device; replaces the module's when written.",
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
        .logs(TrainStep)
    },
    batch_map(
        "on_batch_begin",
        Both,
        args!(batch: "$Batch", batch_idx: "usize"),
        "::core::result::Result::Ok(batch)",
        "candle-lightning's own: right after `on_train_batch_start`, each callback then the module gets the batch and returns the batch `training_step` sees.",
    )
    .logs(TrainStep),
    plain(
        "on_train_batch_end",
        Both,
        args!(outputs: "&::lightning::StepOutput", batch: "&$Batch", batch_idx: "usize"),
        "After a training batch; `outputs.loss` is already divided by `accumulate_grad_batches`. \
         The checkpoints the callbacks asked for are written before the module's hook.",
    )
    .logs(TrainStep)
    .trainer_between(),
    plain(
        "on_validation_batch_start",
        Both,
        args!(batch: "&$Batch", batch_idx: "usize", dataloader_idx: "usize"),
        "Before a validation batch.",
    )
    .logs(EvalStep),
    plain(
        "on_validation_batch_end",
        Both,
        args!(outputs: "&::lightning::StepOutput", batch: "&$Batch", batch_idx: "usize", dataloader_idx: "usize"),
        "After a validation batch.",
    )
    .logs(EvalStep),
    plain(
        "on_test_batch_start",
        Both,
        args!(batch: "&$Batch", batch_idx: "usize", dataloader_idx: "usize"),
        "Before a test batch.",
    )
    .logs(EvalStep),
    plain(
        "on_test_batch_end",
        Both,
        args!(outputs: "&::lightning::StepOutput", batch: "&$Batch", batch_idx: "usize", dataloader_idx: "usize"),
        "After a test batch.",
    )
    .logs(EvalStep),
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
    Hook {
        needs: Some(Needs {
            entry: "fit",
            unless_given: false,
            with: Some((
                "configure_optimizers",
                "`fn configure_optimizers(&mut self) -> lightning::Result<AdamW>` (or another optimizer)",
            )),
        }),
        ..required(
            "training_step",
            args!(batch: "&$Batch", batch_idx: "usize", manual: "&mut impl ::lightning::ManualOptimization<Self>"),
            "::lightning::StepOutput",
            "Computes the loss of one batch: return a `Tensor`, a `StepOutput`, or `None` to skip backward. \
             With `#[lightning_module(manual_optimization)]` it drives the optimizers itself through `manual`.",
        )
        .logs(TrainStep)
    },
    required(
        "validation_step",
        args!(batch: "&$Batch", batch_idx: "usize", dataloader_idx: "usize"),
        "::lightning::StepOutput",
        "One validation batch. Required by `validate`; enables validation in `fit`.",
    )
    .logs(EvalStep)
    .needed_by("validate", false),
    required(
        "test_step",
        args!(batch: "&$Batch", batch_idx: "usize", dataloader_idx: "usize"),
        "::lightning::StepOutput",
        "One test batch. Required by `test`.",
    )
    .logs(EvalStep)
    .needed_by("test", false),
    required(
        "predict_step",
        args!(batch: "&$Batch", batch_idx: "usize", dataloader_idx: "usize"),
        "$Prediction",
        "One prediction; `predict` collects and returns them. Required by `predict`.",
    )
    .needed_by("predict", false),
    // ---- optimization (§4.6), in call order ----
    Hook {
        trainer: false,
        state_via: Some("optimizer_closure.trainer()"),
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
        .logs(TrainStep)
    },
    plain(
        "on_before_zero_grad",
        Both,
        args!(optimizer: "&mut $Optimizer"),
        "After `training_step`, before `optimizer_zero_grad`, on the first batch of each accumulation window.",
    )
    .logs(TrainStep),
    Hook {
        module_default: "{ grads.clear(); ::core::result::Result::Ok(()) }",
        ..plain(
            "optimizer_zero_grad",
            Md,
            args!(epoch: "usize", batch_idx: "usize", optimizer: "&mut $Optimizer", grads: "&mut ::lightning::Gradients"),
            "Clears the accumulated gradients (default: `grads.clear()`).",
        )
        .logs(TrainStep)
    },
    plain(
        "on_before_backward",
        Both,
        args!(loss: "&::lightning::candle::Tensor"),
        "Before backward; the loss is already divided by `accumulate_grad_batches` (and multiplied by the loss scale under `16-mixed`, as in Lightning).",
    )
    .logs(TrainStep),
    Hook {
        module_ret: "::lightning::candle::backprop::GradStore",
        module_default: "::core::result::Result::Ok(loss.backward()?)",
        ..plain(
            "backward",
            Md,
            args!(loss: "&::lightning::candle::Tensor"),
            "Computes the gradients of the loss (default: `loss.backward()`); the trainer accumulates them.",
        )
        .logs(TrainStep)
    },
    plain(
        "on_after_backward",
        Both,
        args!(grads: "&::lightning::Gradients"),
        "After backward, with the gradients accumulated so far (still scaled under `16-mixed`).",
    )
    .logs(TrainStep),
    plain(
        "on_before_optimizer_step",
        Both,
        args!(optimizer: "&mut $Optimizer", grads: "&::lightning::Gradients"),
        "Before clipping and the parameter update, once per accumulation window (the gradients unscaled under `16-mixed`).",
    )
    .logs(TrainStep),
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
        .logs(TrainStep)
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
    Hook {
        order: Order::ModuleFirst,
        ..plain(
            "on_load_checkpoint",
            Both,
            args!(checkpoint: "&mut ::lightning::Checkpoint"),
            "Sees a loaded checkpoint: the module first (before its weights load), then the callbacks.",
        )
        .trainer_between()
    },
    Hook {
        callback_ret: "::lightning::serde_json::Value",
        callback_default: "::core::result::Result::Ok(::lightning::serde_json::Value::Null)",
        state: true,
        ..plain("state_dict", Cb, args!(), "The callback's state, saved in checkpoints under its `STATE_KEY`.")
    }
    .datamodule(
        Apart,
        "::lightning::serde_json::Value",
        "::core::result::Result::Ok(::lightning::serde_json::Value::Null)",
        "Its state in checkpoints (`Null`: nothing saved).",
    ),
    Hook {
        state: true,
        ..plain(
            "load_state_dict",
            Cb,
            args!(state_dict: "&::lightning::serde_json::Value"),
            "Restores the callback's state from a checkpoint.",
        )
    }
    .datamodule(Apart, UNIT, OK, "Restores what `state_dict` saved, on resume."),
    Hook {
        data: Some(DataHook {
            order: Last,
            ret: UNIT,
            fallible: false,
            default: "{}",
            doc: "The run failed; called after the callbacks' `on_exception`.",
        }),
        ..plain(
            "on_exception",
            Cb,
            args!(exception: "&::lightning::Error"),
            "A hook or the trainer failed; no end or teardown hooks run after this.",
        )
    },
];

/// The arguments `LambdaCallback`'s closures get after the trainer state, where the hook has
/// them (the ones that do not depend on the module's types, less the indexes Lightning's
/// examples never read).
pub const LAMBDA_ARGS: &[&str] = &["stage", "batch_idx", "loss", "checkpoint", "exception"];

/// The hooks `LambdaCallback` offers: Lightning's 37 callback hooks.
pub fn lambda_hooks() -> impl Iterator<Item = &'static Hook> {
    HOOKS.iter().filter(|h| h.side.callback() && !h.state && !h.maps_batch)
}

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

/// The hook that messages show as an example of a hook name; `find` checks it is one.
pub fn example_hook() -> &'static str {
    find("on_train_batch_end").expect("catalogue: the example names a hook").name
}

/// The hook that messages show in an example callback impl; checked to be a callback hook.
pub fn example_callback_hook() -> &'static str {
    let hook = find("on_train_epoch_end").filter(|h| h.side.callback());
    hook.expect("catalogue: the example names a callback hook").name
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(name: &str) -> Scope {
        find(name).map(|h| h.scope).unwrap_or_else(|| panic!("{name} is not a hook"))
    }

    #[test]
    fn log_scopes() {
        assert_eq!(HOOKS.iter().filter(|h| h.scope == TrainStep).count(), 12);
        assert_eq!(HOOKS.iter().filter(|h| h.scope == EvalStep).count(), 6);
        assert_eq!(HOOKS.iter().filter(|h| h.scope == EpochOnly).count(), 9);
        assert_eq!(scope("optimizer_step"), TrainStep);
        assert_eq!(scope("test_step"), EvalStep);
        assert_eq!(scope("on_validation_epoch_end"), EpochOnly);
        assert_eq!(scope("on_fit_start"), Scope::Forbidden);
        assert_eq!(scope("on_validation_end"), Scope::Forbidden);
    }

    #[test]
    fn dispatch_shapes() {
        for h in HOOKS {
            // the dispatcher reborrows the arguments it hands to the trainer's closure
            if h.between {
                assert!(!h.maps_batch && h.side == Side::Both, "{}", h.name);
            }
            assert_eq!(h.trainer, h.state_via.is_none(), "{}", h.name);
            if let Some(d) = h.data {
                assert_eq!(d.fallible, d.order != Last, "{}", h.name);
                if d.order == Fallback {
                    assert_eq!(d.ret, format!("::core::option::Option<{}>", h.module_ret), "{}", h.name);
                }
                if d.order == Replaces {
                    assert!(h.maps_batch && h.side == Side::Module, "{}", h.name);
                }
            }
            if let Some((with, _)) = h.needs.and_then(|n| n.with) {
                assert!(find(with).is_some_and(|w| w.needs.is_some()), "{}", h.name);
            }
        }
        assert_eq!(HOOKS.iter().filter(|h| h.needs.is_some()).count(), 9);
        assert_eq!(lambda_hooks().count(), 37);
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
