//! The unused-parameter guard: parameters an optimizer holds that got no gradient from
//! the first backward of a fit would silently never train (candle-nn's `no_bwd` layers,
//! a branch the loss skips), so that is an error, checked once per optimizer.

use crate::finetune::frozen::Frozen;
use crate::{Error, Gradients, Optimizer, Result};

/// Which optimizers are still to be checked: bit `i` for optimizer `i` (at most 8 exist).
/// After its first check the per-step cost is one bit test.
#[derive(Debug)]
pub(crate) struct UnusedGuard {
    pending: u16,
}

impl UnusedGuard {
    /// Checks `count` optimizers, or none if the user allowed unused parameters.
    pub fn new(allow_unused: bool, count: usize) -> Self {
        let all = if count >= 16 { u16::MAX } else { (1u16 << count) - 1 };
        UnusedGuard { pending: if allow_unused { 0 } else { all } }
    }

    /// On optimizer `index`'s first step: `Error::UnusedParameters` naming each of its
    /// parameters without a gradient in `grads`.
    #[inline]
    /// Frozen parameters (fine-tuning) get no gradient on purpose and are not reported.
    pub fn check<O: Optimizer>(
        &mut self,
        index: usize,
        optimizer: &O,
        grads: &Gradients,
        frozen: &Frozen,
    ) -> Result<()> {
        let bit = 1u16.checked_shl(index as u32).unwrap_or(0);
        if self.pending & bit == 0 {
            return Ok(());
        }
        self.pending &= !bit;
        let names: Vec<String> = optimizer
            .named_parameters()
            .into_iter()
            .filter(|(name, var)| grads.get(var.as_tensor()).is_none() && !frozen.contains(name))
            .map(|(name, _)| name.to_string())
            .collect();
        if names.is_empty() {
            Ok(())
        } else {
            Err(Error::UnusedParameters { names })
        }
    }
}
