//! CPU threads for candle's kernels.
//!
//! candle reads `RAYON_NUM_THREADS` at every matmul. On small models a second thread
//! costs more in hand-offs than it gains: `cargo bench --bench threads` on a 2-vCPU machine
//! (MLP 784-H-10, batch 64, Adam) measured 2 threads against 1 at 0.59× the speed for
//! 25k parameters, 0.68× for 100k, 0.90× for 400k and 0.96× for 1.6M. So by default a model
//! of up to 4M parameters trains on one thread, a larger one on every core. An explicit
//! `Trainer::threads(n)` or a `RAYON_NUM_THREADS` set by the user wins.

use candle_core::Device;
use candle_nn::VarMap;

/// Models up to this many parameters default to one thread.
pub const SMALL_MODEL_PARAMS: usize = 4_000_000;

const VAR: &str = "RAYON_NUM_THREADS";

/// The thread count to use, or `None` to leave candle's setting alone.
pub(crate) fn choose(requested: Option<usize>, device: &Device, params: &VarMap) -> Option<usize> {
    if !device.is_cpu() {
        return None;
    }
    if let Some(n) = requested {
        return Some(n.max(1));
    }
    if std::env::var_os(VAR).is_some() {
        return None;
    }
    let count: usize = params.all_vars().iter().map(|v| v.elem_count()).sum();
    if count <= SMALL_MODEL_PARAMS {
        Some(1)
    } else {
        Some(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

/// Applies a thread count for the rest of the process. Rust's environment functions share
/// one lock, so this is safe against candle's and rayon's own reads.
pub(crate) fn apply(n: Option<usize>) {
    if let Some(n) = n {
        let want = n.to_string();
        if std::env::var(VAR).ok().as_deref() != Some(want.as_str()) {
            std::env::set_var(VAR, want);
        }
    }
}
