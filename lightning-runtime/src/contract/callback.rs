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
///         self.0 = trainer.current_epoch() + 1;
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a callback for `{M}`",
    label = "not a callback for `{M}`",
    note = "a `#[callback]` impl whose hooks take `module: &mut SomeModel` is a callback for that model only"
)]
pub trait Callback<M: LightningModule>: IsCallback<Callback = Self> {
    /// The key of this callback's `state_dict` in checkpoints (default: the type's name).
    const STATE_KEY: &'static str;
    /// Monitoring callbacks (checkpoints, early stopping) run after the module in
    /// `on_train_epoch_end`, so they see what it logged (Lightning PR #16567).
    const MONITORING: bool = false;
    /// Whether this callback tunes the run before `fit` starts (the finder callbacks,
    /// [`LearningRateFinder`](crate::tuner::LearningRateFinder) and
    /// [`BatchSizeFinder`](crate::tuner::BatchSizeFinder)).
    #[doc(hidden)]
    const __TUNES: bool = false;
    /// Runs the callback's sweep on the fit about to start (only when `__TUNES`).
    #[doc(hidden)]
    fn __tune<X: crate::tuner::TuneFit<M>>(&mut self, fit: &mut X) -> Result<()> {
        let _ = fit;
        Ok(())
    }

    lightning_macros::__callback_items!();
}

/// Implemented by `#[callback]` for the callback's type, whatever the module: lets
/// `.callbacks(..)` check its tuple before any module is known, so a missing `#[callback]`
/// is one error at `.callbacks(..)` instead of one at every `fit`/`test` call.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a callback: add `#[callback]` to `impl {Self}`",
    label = "`{Self}` has no `#[callback]` impl"
)]
// the note names hooks, so it is written from the hook catalogue
#[lightning_macros::__hook_note(is_callback)]
pub trait IsCallback {
    /// `Self`. `CallbackTuple` names each member through this projection, so that a type
    /// without `#[callback]` leaves the trainer's callback type unknown and the compiler
    /// reports only the error at `.callbacks(..)`, not one more at every `fit` call.
    type Callback;
    /// `self`.
    fn into_callback(self) -> Self::Callback;
}

/// What `Trainer::builder().callbacks(..)` takes: a tuple of callbacks, `()`, `(A,)`,
/// `(A, B)`, … up to 32 (or a [`Chain`] or `Option` of such lists). A member may itself be
/// a tuple of callbacks, so there is no limit: `((a, b, c), (d, e))` calls `a` to `e` in
/// that order; it becomes a [`Nested`] member of the trainer's list.
#[diagnostic::on_unimplemented(
    message = "`.callbacks(..)` takes a tuple of up to 32 callbacks, not `{Self}`",
    label = "`(cb,)` for one callback, `(a, b)` for two, nested `((a, ..), (b, ..))` past 32",
    note = "a tuple even for one callback; each member's type has a `#[callback]` impl",
    note = "a tuple holds at most 32 callbacks; for more, nest tuples: `.callbacks(((a, b, ..), (c, d, ..)))` calls them in order"
)]
pub trait CallbackTuple {
    /// The list the trainer keeps: the tuple itself. A projection, so that a wrong argument
    /// to `.callbacks(..)` leaves the trainer's callback type unknown and the compiler
    /// reports the one error instead of one per `fit` call.
    type List;
    /// The tuple, as the trainer keeps it.
    fn into_list(self) -> Self::List;
}

/// An ordered, statically typed list of callbacks: `()`, `(A,)`, `(A, B)`, … up to 32,
/// whose members may be [`Nested`] lists. Each hook calls the callbacks in list order; a
/// hook no callback implements is skipped at compile time.
pub trait CallbackList<M: LightningModule>: CallbackTuple<List = Self> {
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
    /// Whether a member tunes the run before `fit` (see [`Callback::__TUNES`]).
    #[doc(hidden)]
    const __TUNES: bool;
    /// Runs every tuning member's sweep, in list order.
    #[doc(hidden)]
    fn __tune<X: crate::tuner::TuneFit<M>>(&mut self, fit: &mut X) -> Result<()>;

    /// Whether the list carries the trainer's profiler (see [`Profiler`](crate::Profiler)):
    /// a constant, so that without one every profiled region compiles away.
    #[doc(hidden)]
    const __PROFILED: bool = false;
    /// Starts (`start`) or stops timing `action` in the list's profiler, if any.
    #[doc(hidden)]
    #[inline(always)]
    fn __profile(&mut self, action: &'static str, start: bool) {
        let _ = (action, start);
    }

    lightning_macros::__callback_list_items!();
}

/// Two borrowed callback lists run one after the other: how the trainer runs its own list,
/// then the module's `configure_callbacks`, then the progress bar and checkpoint callback,
/// without moving them. To give the trainer more than 32 callbacks, nest tuples instead
/// (see [`Nested`]): a `Chain` borrows its lists, so it suits a list you call yourself.
///
/// ```
/// use lightning::prelude::*;
/// use lightning::{CallbackList, Chain};
///
/// struct Count(usize);
/// #[callback]
/// impl Count {
///     fn on_fit_start(&mut self) { self.0 += 1; }
/// }
///
/// let (mut first, mut second) = ((Count(0),), (Count(10), Count(20)));
/// let chain = Chain(&mut first, &mut second);
/// # let _ = chain;
/// ```
pub struct Chain<'a, A, B>(pub &'a mut A, pub &'a mut B);

/// A tuple of callbacks inside a callback tuple: `.callbacks(((a, b), c))` keeps
/// `Nested((a, b))` as the first member of the trainer's list, and every hook calls `a`,
/// `b`, then `c`. Nesting lifts the 32-callback limit of one tuple; reach a nested callback
/// with `trainer.callbacks().0 .0 .1`. State is saved under each member's own key.
///
/// ```
/// use lightning::prelude::*;
///
/// struct Tag(&'static str);
/// #[callback]
/// impl Tag {
///     fn on_fit_start(&mut self) {}
/// }
///
/// # fn main() -> lightning::Result<()> {
/// let trainer = Trainer::builder().callbacks(((Tag("a"), Tag("b")), Tag("c"))).build()?;
/// let mut trainer = trainer;
/// assert_eq!(trainer.callbacks().0 .0 .1 .0, "b");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Nested<L>(pub L);

lightning_macros::__callback_list_impls!();
