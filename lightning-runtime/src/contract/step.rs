//! What the `*_step` hooks return.

use std::collections::BTreeMap;

use candle_core::Tensor;

/// The result of `training_step`, `validation_step` or `test_step`: Lightning's
/// `{"loss": ..., **extra}`. A step may return a `Tensor` (the loss), an
/// `Option<Tensor>` (`None` skips backward), `()` or a `StepOutput`.
#[derive(Clone, Debug, Default)]
pub struct StepOutput {
    /// The loss; in `on_train_batch_end` already divided by `accumulate_grad_batches`.
    pub loss: Option<Tensor>,
    /// Other values the step wants later hooks to see.
    pub extra: BTreeMap<String, Tensor>,
}

impl StepOutput {
    /// A step output with this loss.
    pub fn new(loss: Tensor) -> Self {
        StepOutput { loss: Some(loss), extra: BTreeMap::new() }
    }

    /// Adds a named value.
    pub fn with(mut self, name: impl Into<String>, value: Tensor) -> Self {
        self.extra.insert(name.into(), value);
        self
    }
}

impl From<Tensor> for StepOutput {
    fn from(loss: Tensor) -> Self {
        StepOutput::new(loss)
    }
}

impl From<Option<Tensor>> for StepOutput {
    fn from(loss: Option<Tensor>) -> Self {
        StepOutput { loss, extra: BTreeMap::new() }
    }
}

impl From<()> for StepOutput {
    fn from(_: ()) -> Self {
        StepOutput::default()
    }
}
