//! `LambdaCallback`: closures as hooks, for one-off behaviour without a callback type.

use candle_core::Tensor;

use crate::{Checkpoint, Error, Result, Stage, TrainerState};

/// Declares the callback from one line per hook: the hook, the inherent method that
/// `#[callback]` binds to it (a builder method already has the hook's name), and the
/// arguments the closure gets after the trainer state.
macro_rules! lambda_callback {
    ($( $hook:ident => $call:ident ( $($arg:ident : $ty:ty),* ); )*) => {
        /// Lightning's `LambdaCallback`: each hook runs the closure given for it, if any.
        /// Every closure gets the trainer state, then the hook's batch index, stage,
        /// checkpoint, loss or error where the hook has one.
        ///
        /// The closures are boxed (a closure type per hook would make the callback's type
        /// unwritable); write a `#[callback]` type for hooks on the hot path. Hooks without a
        /// closure still cost a branch per call.
        ///
        /// ```
        /// use lightning::callbacks::LambdaCallback;
        /// let cb = LambdaCallback::new()
        ///     .on_train_epoch_end(|t| {
        ///         println!("epoch {} done at step {}", t.current_epoch(), t.global_step());
        ///         Ok(())
        ///     })
        ///     .on_train_batch_end(|t, batch_idx| {
        ///         if batch_idx == 100 {
        ///             t.should_stop = true;
        ///         }
        ///         Ok(())
        ///     })
        ///     .setup(|_, stage| {
        ///         println!("setting up {stage:?}");
        ///         Ok(())
        ///     });
        /// ```
        #[derive(Default)]
        pub struct LambdaCallback {
            $( $hook: Option<Box<dyn FnMut(&mut TrainerState $(, $ty)*) -> Result<()> + Send>>, )*
        }

        impl LambdaCallback {
            pub fn new() -> Self {
                Self::default()
            }
            $(
                #[doc = concat!("Runs `f` in `", stringify!($hook), "`.")]
                pub fn $hook(mut self, f: impl FnMut(&mut TrainerState $(, $ty)*) -> Result<()> + Send + 'static) -> Self {
                    self.$hook = Some(Box::new(f));
                    self
                }
            )*
            /// The hooks that have a closure.
            pub fn hooks(&self) -> Vec<&'static str> {
                let mut set = Vec::new();
                $( if self.$hook.is_some() { set.push(stringify!($hook)); } )*
                set
            }
        }

        #[lightning_macros::callback]
        impl LambdaCallback {
            $(
                #[hook($hook)]
                fn $call(&mut self, trainer: &mut TrainerState $(, $arg: $ty)*) -> Result<()> {
                    match &mut self.$hook {
                        Some(f) => f(trainer $(, $arg)*),
                        None => Ok(()),
                    }
                }
            )*
        }
    };
}

lambda_callback! {
    setup => call_setup(stage: Stage);
    teardown => call_teardown(stage: Stage);
    on_fit_start => call_fit_start();
    on_fit_end => call_fit_end();
    on_sanity_check_start => call_sanity_check_start();
    on_sanity_check_end => call_sanity_check_end();
    on_train_start => call_train_start();
    on_train_end => call_train_end();
    on_validation_start => call_validation_start();
    on_validation_end => call_validation_end();
    on_test_start => call_test_start();
    on_test_end => call_test_end();
    on_predict_start => call_predict_start();
    on_predict_end => call_predict_end();
    on_train_epoch_start => call_train_epoch_start();
    on_train_epoch_end => call_train_epoch_end();
    on_validation_epoch_start => call_validation_epoch_start();
    on_validation_epoch_end => call_validation_epoch_end();
    on_test_epoch_start => call_test_epoch_start();
    on_test_epoch_end => call_test_epoch_end();
    on_predict_epoch_start => call_predict_epoch_start();
    on_predict_epoch_end => call_predict_epoch_end();
    on_train_batch_start => call_train_batch_start(batch_idx: usize);
    on_train_batch_end => call_train_batch_end(batch_idx: usize);
    on_validation_batch_start => call_validation_batch_start(batch_idx: usize);
    on_validation_batch_end => call_validation_batch_end(batch_idx: usize);
    on_test_batch_start => call_test_batch_start(batch_idx: usize);
    on_test_batch_end => call_test_batch_end(batch_idx: usize);
    on_predict_batch_start => call_predict_batch_start(batch_idx: usize);
    on_predict_batch_end => call_predict_batch_end(batch_idx: usize);
    on_before_backward => call_before_backward(loss: &Tensor);
    on_after_backward => call_after_backward();
    on_before_optimizer_step => call_before_optimizer_step();
    on_before_zero_grad => call_before_zero_grad();
    on_save_checkpoint => call_save_checkpoint(checkpoint: &mut Checkpoint);
    on_load_checkpoint => call_load_checkpoint(checkpoint: &mut Checkpoint);
    on_exception => call_exception(exception: &Error);
}

impl std::fmt::Debug for LambdaCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaCallback").field("hooks", &self.hooks()).finish()
    }
}
