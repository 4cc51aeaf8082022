//! The MPI backend (feature `mpi`): rsmpi over the system's MPI library (OpenMPI here).

use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};

use super::{Buf, Collective};
use crate::{Error, Result};

/// MPI's world communicator. Create it once, in `main`, and keep it until the program ends:
/// MPI is initialised when it is made and finalised when it is dropped, once per process.
/// Run the program under `mpirun -np N`; started alone it is a world of one.
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
    /// Initialises MPI. Fails if it was initialised before in this process.
    pub fn init() -> Result<Self> {
        let universe = mpi::initialize().ok_or_else(|| {
            Error::Device("MPI is already initialised in this process: create `Mpi` once, in main".into())
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
        match buf {
            Buf::F32(v) => {
                let local = v.to_vec();
                self.world.all_reduce_into(&local[..], v, SystemOperation::sum());
            }
            Buf::F64(v) => {
                let local = v.to_vec();
                self.world.all_reduce_into(&local[..], v, SystemOperation::sum());
            }
        }
        Ok(())
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
