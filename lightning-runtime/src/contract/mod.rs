//! The hook contract between the trainer and user code: the module and callback traits the
//! macros implement, the datamodule, the state hooks read and write, what a step and a hook
//! return.

pub(crate) mod callback;
pub(crate) mod datamodule;
pub(crate) mod hook_return;
pub(crate) mod module;
pub(crate) mod state;
mod state_read;
pub(crate) mod step;
