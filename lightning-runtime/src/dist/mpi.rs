//! The MPI backend (feature `mpi`): rsmpi over the system's MPI library (OpenMPI here).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::datatype::Equivalence;
use mpi::environment::{Threading, Universe};
use mpi::point_to_point::{Destination, Source};
use mpi::request::{Request, Scope, StaticScope};
use mpi::topology::{Communicator, SimpleCommunicator};

use super::env::duration_var;
use super::{Buf, Collective, WorldEnv};
use crate::{Error, Result};

/// MPI's world communicator, one per process: [`Mpi::init`] initialises MPI on its first call
/// and returns the same world after; MPI is finalised when the process exits (as mpi4py
/// does), so trainers can come and go. Run the program under `mpirun -np N`; started alone
/// it is a world of one.
///
/// Every collective operation waits at most a timeout (30 minutes, as torch's; the variable
/// `LIGHTNING_COLLECTIVE_TIMEOUT` in seconds or [`Mpi::set_timeout`] changes it). Then the
/// ranks that did arrive find out which did not, print it, and end the job.
pub struct Mpi {
    /// The only way to MPI: one call at a time, from any thread.
    handles: Mutex<Handles>,
    rank: usize,
    world_size: usize,
    local_rank: usize,
    timeout_ms: AtomicU64,
}

/// MPI's handles, reachable only through [`Mpi`]'s lock.
struct Handles {
    world: SimpleCommunicator,
    _universe: Universe,
}

/// torch.distributed's default collective timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long a rank that timed out listens for the others' "I am here".
const ROLL_CALL: Duration = Duration::from_secs(3);
/// The tag of the roll-call messages (user code does not share this communicator's tags).
const TAG_HERE: i32 = 0x4c54;

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mpi").field("rank", &self.rank()).field("world_size", &self.world_size()).finish()
    }
}

// SAFETY: MPI is initialised at `MPI_THREAD_SERIALIZED` or above (checked in `initialize`),
// under which any thread may call MPI as long as no two do at once; the handles are reached
// only through `Mpi::handles`, a mutex, so calls never overlap. `Mpi` is then `Sync` by the
// mutex, with no `unsafe impl Sync`.
unsafe impl Send for Handles {}

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
        // candle's thread count lives in the environment, which must not change once MPI's
        // threads run: give each process of the node its share of the cores now
        let local_size = WorldEnv::detect().ok().flatten().and_then(|e| e.local_world_size).unwrap_or(1);
        crate::trainer::share_cores(local_size);
        let (universe, level) = mpi::initialize_with_threading(Threading::Serialized).ok_or_else(|| {
            Error::Device("MPI was initialised in this process by other code: use `Mpi::init()` only".into())
        })?;
        if level < Threading::Serialized {
            return Err(Error::Device(format!(
                "this MPI library provides thread support {level:?}; candle-lightning needs MPI_THREAD_SERIALIZED (build MPI with thread support, as OpenMPI and MPICH are by default)"
            )));
        }
        let world = universe.world();
        let (rank, world_size) = (world.rank() as usize, world.size() as usize);
        // the launcher names the node-local rank (OpenMPI, MPICH); started alone, it is the rank
        let local_rank = WorldEnv::detect().ok().flatten().map_or(rank, |e| e.local_rank);
        let timeout = duration_var("LIGHTNING_COLLECTIVE_TIMEOUT", DEFAULT_TIMEOUT);
        Ok(Mpi {
            handles: Mutex::new(Handles { world, _universe: universe }),
            rank,
            world_size,
            local_rank,
            timeout_ms: AtomicU64::new(timeout.as_millis() as u64),
        })
    }

    /// How long a collective operation may wait for the other ranks.
    pub fn set_timeout(&self, timeout: Duration) {
        self.timeout_ms.store(timeout.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    fn all_reduce(&self, buf: Buf<'_>, op: SystemOperation) -> Result<()> {
        match buf {
            Buf::F32(v) => self.all_reduce_slice(v, op),
            Buf::F64(v) => self.all_reduce_slice(v, op),
            Buf::U8(v) => self.all_reduce_slice(v, op),
        }
    }

    /// The handles, for one MPI call or operation (a poisoned lock only means another
    /// thread panicked between calls: the handles themselves are intact).
    fn lock(&self) -> std::sync::MutexGuard<'_, Handles> {
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn all_reduce_slice<T: Equivalence + Clone>(&self, v: &mut [T], op: SystemOperation) -> Result<()> {
        let local = v.to_vec();
        let h = self.lock();
        mpi::request::scope(|s| self.finish(&h, h.world.immediate_all_reduce_into(s, &local[..], v, op), "all-reduce"))
    }

    fn broadcast_slice<T: Equivalence>(&self, v: &mut [T], root: usize) -> Result<()> {
        let h = self.lock();
        let root = h.world.process_at_rank(root as i32);
        mpi::request::scope(|s| self.finish(&h, root.immediate_broadcast_into(s, v), "broadcast"))
    }

    /// Waits for a non-blocking collective operation, answering other ranks' roll calls;
    /// past the timeout, names the missing ranks and ends the job.
    fn finish<'a, D: ?Sized, S: Scope<'a>>(&self, h: &Handles, mut req: Request<'a, D, S>, what: &str) -> Result<()> {
        let timeout = Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed));
        let start = Instant::now();
        let mut answered = false;
        let mut polls = 0u32;
        loop {
            req = match req.test() {
                Ok(_) => return Ok(()),
                Err(req) => req,
            };
            polls = polls.wrapping_add(1);
            // leave the core to the other ranks when there are more ranks than cores
            std::thread::yield_now();
            if polls.is_multiple_of(64) {
                // another rank timed out and calls the roll: say this one is here
                if !answered && h.world.any_process().immediate_probe_with_tag(TAG_HERE).is_some() {
                    self.say_here(h);
                    answered = true;
                }
                if start.elapsed() >= timeout {
                    let missing = self.roll_call(h, answered);
                    let e = Error::CollectiveTimeout {
                        op: what.to_string(),
                        rank: self.rank(),
                        world: self.world_size(),
                        waited: timeout,
                        missing,
                    };
                    // one write, so that the ranks' lines don't interleave in mpirun's stderr
                    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{e}\n").as_bytes());
                    // the operation's buffers stay with MPI: end the job without returning
                    h.world.abort(1)
                }
            }
        }
    }

    /// Tells every other rank "here" (a message of one byte, never completed: the job ends).
    fn say_here(&self, h: &Handles) {
        static HERE: [u8; 1] = [1];
        for r in (0..self.world_size()).filter(|&r| r != self.rank()) {
            let req = h.world.process_at_rank(r as i32).immediate_send_with_tag(StaticScope, &HERE[..], TAG_HERE);
            std::mem::forget(req);
        }
    }

    /// The ranks that did not answer "here" within [`ROLL_CALL`].
    fn roll_call(&self, h: &Handles, answered: bool) -> Vec<usize> {
        if !answered {
            self.say_here(h);
        }
        let n = self.world_size();
        let mut heard = vec![false; n];
        heard[self.rank()] = true;
        let until = Instant::now() + ROLL_CALL;
        while heard.contains(&false) && Instant::now() < until {
            for (r, heard_r) in heard.iter_mut().enumerate().filter(|(_, h)| !**h) {
                *heard_r = h.world.process_at_rank(r as i32).immediate_probe_with_tag(TAG_HERE).is_some();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        (0..n).filter(|&r| !heard[r]).collect()
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
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world_size
    }
    fn local_rank(&self) -> usize {
        self.local_rank
    }
    fn barrier(&self) -> Result<()> {
        let h = self.lock();
        self.finish(&h, h.world.immediate_barrier(), "barrier")
    }
    fn all_reduce_sum(&self, buf: Buf<'_>) -> Result<()> {
        self.all_reduce(buf, SystemOperation::sum())
    }
    fn all_reduce_max(&self, buf: Buf<'_>) -> Result<()> {
        self.all_reduce(buf, SystemOperation::max())
    }
    fn abort(&self, code: i32) {
        self.lock().world.abort(code)
    }
    fn broadcast(&self, buf: Buf<'_>, root: usize) -> Result<()> {
        match buf {
            Buf::F32(v) => self.broadcast_slice(v, root),
            Buf::F64(v) => self.broadcast_slice(v, root),
            Buf::U8(v) => self.broadcast_slice(v, root),
        }
    }
}
