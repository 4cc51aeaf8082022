//! Lightning's loops as small types over one run context.
//!
//! - [`FitLoop`](fit_loop::FitLoop): set-up (optimizers, resume, sanity check, loaders), then
//!   epochs until [`done`](fit_loop::FitLoop::done);
//! - [`TrainingEpochLoop`](training_epoch::TrainingEpochLoop): one epoch's batches, with
//!   `advance`, `on_advance_end` and `should_check_val` as in Lightning;
//! - [`Optimization`](optimization::Optimization): the optimizers, gradients and schedulers;
//!   one automatic or manual step, `update_lr_schedulers(interval)`, and the one backward
//!   sequence both kinds of optimization share ([`backward`]);
//! - [`EvaluationLoop`](evaluation::EvaluationLoop) for validation and test, and the
//!   [`predict`](evaluation::predict) loop.
//!
//! Every hook is called through the generated dispatcher (`trainer::dispatch`).

pub(crate) mod backward;
pub(crate) mod closure;
pub(crate) mod evaluation;
pub(crate) mod fit_loop;
pub(crate) mod fit_setup;
pub(crate) mod manual;
pub(crate) mod optimization;
pub(crate) mod schedulers;
pub(crate) mod training_epoch;

use crate::trainer::TrainerConfig;
use crate::TrainerState;

/// What every loop works on: the trainer's flags and state, the module, the callbacks and
/// the datamodule (Lightning's `trainer`, `lightning_module`, `callbacks`, `datamodule`).
pub(crate) struct RunCtx<'a, M, L, DM> {
    pub cfg: &'a TrainerConfig,
    pub state: &'a mut TrainerState,
    pub model: &'a mut M,
    pub cbs: &'a mut L,
    pub dm: &'a mut DM,
}
