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

/// Applies a thread count for the rest of the process, through the one setting candle
/// reads. Rust's environment functions share one lock, so this is safe against candle's and
/// rayon's own reads; it is not against C code reading the environment on its own threads,
/// so once a distributed runtime has started (`foreign`: MPI's progress threads call
/// `getenv`) the environment is left alone: `Mpi::init` sets the count before MPI starts,
/// and an explicit `Trainer::threads(n)` that cannot apply says so.
pub(crate) fn apply(n: Option<usize>, foreign: bool) {
    let Some(n) = n else { return };
    let want = n.to_string();
    if std::env::var(VAR).ok().as_deref() == Some(want.as_str()) {
        return;
    }
    if foreign {
        crate::dist::rank_zero_warn(format_args!(
            "`threads({n})` is not applied: the environment must not change once MPI runs (its threads read it); set {VAR}={n} in the job's environment instead (`mpirun -x {VAR}={n}`)"
        ));
        return;
    }
    std::env::set_var(VAR, want);
}

/// Before a distributed runtime starts: one share of the cores per process of this node
/// (`local_world_size` of them), unless the user set the count.
#[cfg(feature = "mpi")]
pub(crate) fn share_cores(local_world_size: usize) {
    if std::env::var_os(VAR).is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var(VAR, (cores / local_world_size.max(1)).max(1).to_string());
    }
}
