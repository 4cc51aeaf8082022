//! Callbacks: the `Callback` trait (one callback) and `CallbackList` (tuples of them),
//! both generated from the hook catalogue.

use std::collections::BTreeMap;

use crate::{LightningModule, Result, TrainerState};

/// A callback: PyTorch Lightning's `Callback`, for modules of type `M`.
///
/// Write `#[callback]` on the callback's inherent impl and the hook methods there; a
/// hook method takes any subset of its hook's arguments by name, plus `trainer` and
/// `module`. Every method below is a hook; the defaults do nothing.
///
/// ```
/// use lightning::prelude::*;
///
/// struct CountEpochs(usize);
///
/// #[callback]
/// impl CountEpochs {
///     fn on_train_epoch_end(&mut self, trainer: &TrainerState) {
///         self.0 = trainer.current_epoch + 1;
///     }
/// }
/// ```
pub trait Callback<M: LightningModule> {
    /// The key of this callback's `state_dict` in checkpoints (default: the type's name).
    const STATE_KEY: &'static str;
    /// Monitoring callbacks (checkpoints, early stopping) run after the module in
    /// `on_train_epoch_end`, so they see what it logged (Lightning PR #16567).
    const MONITORING: bool = false;

    lightning_macros::__callback_items!();
}

/// An ordered, statically typed list of callbacks: `()`, `(A,)`, `(A, B)`, … up to 12.
/// Each hook calls the callbacks in list order; a hook no callback implements is skipped
/// at compile time.
pub trait CallbackList<M: LightningModule> {
    /// Appends the `(state_key, state)` of every stateful callback (`state_dict`).
    fn collect_state(
        &mut self,
        trainer: &mut TrainerState,
        module: &mut M,
        out: &mut Vec<(&'static str, serde_json::Value)>,
    ) -> Result<()>;
    /// Gives every stateful callback its saved state (`load_state_dict`), when present.
    fn restore_state(
        &mut self,
        trainer: &mut TrainerState,
        module: &mut M,
        states: &BTreeMap<String, serde_json::Value>,
    ) -> Result<()>;
    /// The state keys of the stateful callbacks.
    fn state_keys(out: &mut Vec<&'static str>);

    lightning_macros::__callback_list_items!();
}

/// Two callback lists run one after the other (the trainer's, then the module's own).
pub struct Chain<'a, A, B>(pub &'a mut A, pub &'a mut B);

lightning_macros::__callback_list_impls!();
