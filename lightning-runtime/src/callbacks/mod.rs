//! Built-in callbacks, written with the same `#[callback]` as users' callbacks.

mod model_checkpoint;

pub use model_checkpoint::ModelCheckpoint;
