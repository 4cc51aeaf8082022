//! `LambdaCallback`: closures as hooks, for one-off behaviour without a callback type.

use crate::{Result, TrainerState};

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
        ///             t.request_stop();
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
            /// A callback with no hooks yet.
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

// one line per hook, from the hook catalogue
lightning_macros::__lambda_hooks!(lambda_callback);

impl std::fmt::Debug for LambdaCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaCallback").field("hooks", &self.hooks()).finish()
    }
}
