//! The hook dispatcher: one function per hook, generated from the hook catalogue
//! (`lightning-macros/src/dispatch.rs`). The trainer calls every hook through it: it runs
//! the datamodule, the callbacks and the module in Lightning's order and keeps the running
//! hook's name in the state, restoring the outer one after a nested hook.

lightning_macros::__dispatch_items!();
