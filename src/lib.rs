pub use lightning_runtime::*; pub use lightning_macros::*;
