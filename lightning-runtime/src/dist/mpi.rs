//! The MPI backend (feature `mpi`): rsmpi over the system's MPI library (OpenMPI here).

use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};

use std::sync::{Arc, Mutex};

use super::{Buf, Collective};
use crate::{Error, Result};

/// MPI's world communicator, one per process: [`Mpi::init`] initialises MPI on its first call
/// and returns the same world after; MPI is finalised when the process exits (as mpi4py
/// does), so trainers can come and go. Run the program under `mpirun -np N`; started alone
/// it is a world of one.
pub struct Mpi {
    world: SimpleCommunicator,
    local_rank: usize,
    _universe: Universe,
}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mpi").field("rank", &self.rank()).field("world_size", &self.world_size()).finish()
    }
}

// SAFETY: the communicator is used from the training thread only; the trainer holds it behind
// `&dyn Collective` and never calls it from two threads at once (MPI is initialised with the
// default threading level, which requires exactly that).
unsafe impl Send for Mpi {}
unsafe impl Sync for Mpi {}

impl Mpi {
    /// The process's MPI world, initialising MPI on the first call.
    pub fn init() -> Result<Arc<Self>> {
        static WORLD: Mutex<Option<Arc<Mpi>>> = Mutex::new(None);
        let mut world = WORLD.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = &*world {
            return Ok(w.clone());
        }
        let w = Arc::new(Self::initialize()?);
        // SAFETY: registers a plain `extern "C"` function; it runs once, at exit
        if unsafe { libc::atexit(finalize) } != 0 {
            return Err(Error::Device("cannot register MPI's finalisation at exit".into()));
        }
        *world = Some(w.clone());
        Ok(w)
    }

    fn initialize() -> Result<Self> {
        let universe = mpi::initialize().ok_or_else(|| {
            Error::Device("MPI was initialised in this process by other code: use `Mpi::init()` only".into())
        })?;
        let world = universe.world();
        // OpenMPI and MPICH name the node-local rank in the environment
        let local_rank = ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "LOCAL_RANK"]
            .iter()
            .find_map(|k| std::env::var(k).ok()?.parse().ok())
            .unwrap_or(world.rank() as usize);
        Ok(Mpi { world, local_rank, _universe: universe })
    }
}

impl Mpi {
    fn all_reduce(&self, buf: Buf<'_>, op: SystemOperation) -> Result<()> {
        match buf {
            Buf::F32(v) => {
                let local = v.to_vec();
                self.world.all_reduce_into(&local[..], v, op);
            }
            Buf::F64(v) => {
                let local = v.to_vec();
                self.world.all_reduce_into(&local[..], v, op);
            }
        }
        Ok(())
    }
}

/// Finalises MPI at process exit; the world lives in a static that is never dropped.
extern "C" fn finalize() {
    if mpi::environment::is_initialized() && !mpi::environment::is_finalized() {
        // SAFETY: MPI is initialised and not finalised; no communication runs at exit
        unsafe {
            mpi::ffi::MPI_Finalize();
        }
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn world_size(&self) -> usize {
        self.world.size() as usize
    }
    fn local_rank(&self) -> usize {
        self.local_rank
    }
    fn barrier(&self) -> Result<()> {
        self.world.barrier();
        Ok(())
    }
    fn all_reduce_sum(&self, buf: Buf<'_>) -> Result<()> {
        self.all_reduce(buf, SystemOperation::sum())
    }
    fn all_reduce_max(&self, buf: Buf<'_>) -> Result<()> {
        self.all_reduce(buf, SystemOperation::max())
    }
    fn abort(&self, code: i32) {
        self.world.abort(code)
    }
    fn broadcast(&self, buf: Buf<'_>, root: usize) -> Result<()> {
        let root = self.world.process_at_rank(root as i32);
        match buf {
            Buf::F32(v) => root.broadcast_into(v),
            Buf::F64(v) => root.broadcast_into(v),
        }
        Ok(())
    }
}
