//! What a user's hook method may return for each hook's return type.
//!
//! The generated hook impls convert the user's value with `HookReturn`, so a wrong return
//! type is reported at the user's return type with the hook's expected type.

use candle_core::Tensor;

use crate::{Flow, StepOutput};

#[diagnostic::on_unimplemented(
    message = "this hook returns `{Self}`, but the trainer needs `{T}` from it",
    label = "return `{T}` here (or `Result<{T}, E>`)"
)]
// the note names hooks, so it is written from the hook catalogue
#[lightning_macros::__hook_note(hook_return)]
/// A user's hook return value that converts to `T`, the return type the trainer needs from
/// the hook (used by the code `#[lightning_module]` and `#[callback]` generate).
pub trait HookReturn<T> {
    /// The value as the trainer takes it.
    fn into_hook_return(self) -> T;
}

impl<T> HookReturn<T> for T {
    #[inline(always)]
    fn into_hook_return(self) -> T {
        self
    }
}

/// `configure_callbacks` returns the callbacks; the trainer holds them as an `Option`.
impl<T> HookReturn<Option<T>> for T {
    #[inline(always)]
    fn into_hook_return(self) -> Option<T> {
        Some(self)
    }
}

/// `on_train_batch_start` returning nothing continues.
impl HookReturn<Flow> for () {
    #[inline(always)]
    fn into_hook_return(self) -> Flow {
        Flow::Continue
    }
}

/// A step returning its loss.
impl HookReturn<StepOutput> for Tensor {
    #[inline(always)]
    fn into_hook_return(self) -> StepOutput {
        StepOutput::new(self)
    }
}

/// A step returning `None` skips backward (training) or returns nothing (evaluation).
impl HookReturn<StepOutput> for Option<Tensor> {
    #[inline(always)]
    fn into_hook_return(self) -> StepOutput {
        StepOutput::from(self)
    }
}

/// A step that only logs.
impl HookReturn<StepOutput> for () {
    #[inline(always)]
    fn into_hook_return(self) -> StepOutput {
        StepOutput::default()
    }
}
