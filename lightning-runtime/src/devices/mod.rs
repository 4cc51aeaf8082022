//! Where tensors live: accelerators, moving a module's parameters and a batch to a device,
//! and the training precision.

pub(crate) mod batch;
pub(crate) mod device;
pub(crate) mod grad_scaler;
pub(crate) mod precision;
pub(crate) mod relocate;
pub(crate) mod stats;
