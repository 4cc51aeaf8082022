//! `LambdaCallback`: closures as hooks, for one-off behaviour without a callback type.

use crate::{Result, TrainerState};

type Hook = Box<dyn FnMut(&mut TrainerState) -> Result<()> + Send>;
type BatchHook = Box<dyn FnMut(&mut TrainerState, usize) -> Result<()> + Send>;

/// Lightning's `LambdaCallback`: each hook runs the closure given for it, if any.
///
/// The closures are boxed (a closure type per hook would make the callback's type unwritable);
/// write a `#[callback]` type for hooks on the hot path.
///
/// ```
/// use lightning::callbacks::LambdaCallback;
/// let cb = LambdaCallback::new()
///     .on_train_epoch_end(|t| {
///         println!("epoch {} done at step {}", t.current_epoch, t.global_step);
///         Ok(())
///     })
///     .on_train_batch_end(|t, batch_idx| {
///         if batch_idx == 100 {
///             t.should_stop = true;
///         }
///         Ok(())
///     });
/// ```
#[derive(Default)]
pub struct LambdaCallback {
    fit_start: Option<Hook>,
    fit_end: Option<Hook>,
    train_epoch_start: Option<Hook>,
    train_epoch_end: Option<Hook>,
    train_batch_end: Option<BatchHook>,
    validation_end: Option<Hook>,
    test_end: Option<Hook>,
}

impl std::fmt::Debug for LambdaCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LambdaCallback")
    }
}

fn run(hook: &mut Option<Hook>, t: &mut TrainerState) -> Result<()> {
    match hook {
        Some(f) => f(t),
        None => Ok(()),
    }
}

impl LambdaCallback {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn on_fit_start(mut self, f: impl FnMut(&mut TrainerState) -> Result<()> + Send + 'static) -> Self {
        self.fit_start = Some(Box::new(f));
        self
    }
    pub fn on_fit_end(mut self, f: impl FnMut(&mut TrainerState) -> Result<()> + Send + 'static) -> Self {
        self.fit_end = Some(Box::new(f));
        self
    }
    pub fn on_train_epoch_start(mut self, f: impl FnMut(&mut TrainerState) -> Result<()> + Send + 'static) -> Self {
        self.train_epoch_start = Some(Box::new(f));
        self
    }
    pub fn on_train_epoch_end(mut self, f: impl FnMut(&mut TrainerState) -> Result<()> + Send + 'static) -> Self {
        self.train_epoch_end = Some(Box::new(f));
        self
    }
    /// The closure gets the batch index.
    pub fn on_train_batch_end(
        mut self,
        f: impl FnMut(&mut TrainerState, usize) -> Result<()> + Send + 'static,
    ) -> Self {
        self.train_batch_end = Some(Box::new(f));
        self
    }
    pub fn on_validation_end(mut self, f: impl FnMut(&mut TrainerState) -> Result<()> + Send + 'static) -> Self {
        self.validation_end = Some(Box::new(f));
        self
    }
    pub fn on_test_end(mut self, f: impl FnMut(&mut TrainerState) -> Result<()> + Send + 'static) -> Self {
        self.test_end = Some(Box::new(f));
        self
    }
}

#[lightning_macros::callback]
impl LambdaCallback {
    #[hook(on_fit_start)]
    fn call_fit_start(&mut self, trainer: &mut TrainerState) -> Result<()> {
        run(&mut self.fit_start, trainer)
    }
    #[hook(on_fit_end)]
    fn call_fit_end(&mut self, trainer: &mut TrainerState) -> Result<()> {
        run(&mut self.fit_end, trainer)
    }
    #[hook(on_train_epoch_start)]
    fn call_train_epoch_start(&mut self, trainer: &mut TrainerState) -> Result<()> {
        run(&mut self.train_epoch_start, trainer)
    }
    #[hook(on_train_epoch_end)]
    fn call_train_epoch_end(&mut self, trainer: &mut TrainerState) -> Result<()> {
        run(&mut self.train_epoch_end, trainer)
    }
    #[hook(on_train_batch_end)]
    fn call_train_batch_end(&mut self, trainer: &mut TrainerState, batch_idx: usize) -> Result<()> {
        match &mut self.train_batch_end {
            Some(f) => f(trainer, batch_idx),
            None => Ok(()),
        }
    }
    #[hook(on_validation_end)]
    fn call_validation_end(&mut self, trainer: &mut TrainerState) -> Result<()> {
        run(&mut self.validation_end, trainer)
    }
    #[hook(on_test_end)]
    fn call_test_end(&mut self, trainer: &mut TrainerState) -> Result<()> {
        run(&mut self.test_end, trainer)
    }
}
