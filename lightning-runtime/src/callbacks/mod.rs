//! Built-in callbacks, written with the same `#[callback]` as users' callbacks.

mod early_stopping;
mod model_checkpoint;

pub use early_stopping::{EarlyStopping, Mode};
pub use model_checkpoint::ModelCheckpoint;
