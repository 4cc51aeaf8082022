//! Built-in callbacks, written with the same `#[callback]` as users' callbacks.

mod early_stopping;
mod grad_accum;
mod model_checkpoint;

pub use early_stopping::{EarlyStopping, Mode};
pub use grad_accum::GradientAccumulationScheduler;
pub use model_checkpoint::ModelCheckpoint;
