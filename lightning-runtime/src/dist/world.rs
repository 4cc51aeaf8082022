//! Joining the job a launcher started: the backend chosen by device and launcher, once
//! per process.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use candle_core::Device;

use super::{Collective, Launcher, WorldEnv};
use crate::{Accelerator, Error, Result};

/// How long ranks wait for each other at the start (`LIGHTNING_RENDEZVOUS_TIMEOUT`, in
/// seconds, overrides it).
pub const RENDEZVOUS_TIMEOUT: Duration = Duration::from_secs(300);

fn timeout() -> Duration {
    super::env::duration_var("LIGHTNING_RENDEZVOUS_TIMEOUT", RENDEZVOUS_TIMEOUT)
}

/// Joins the job `env` describes and opens this rank's device: NCCL on GPU `local_rank`
/// (feature `nccl`), MPI on CPUs under `mpirun` (feature `mpi`; also GPUs without NCCL,
/// through host memory). Once per process: later calls return the same world and device.
pub fn connect(env: &WorldEnv, accelerator: Accelerator) -> Result<(Arc<dyn Collective>, Device)> {
    static JOINED: Mutex<Option<(Arc<dyn Collective>, Device)>> = Mutex::new(None);
    let mut joined = JOINED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((world, device)) = &*joined {
        return Ok((world.clone(), device.clone()));
    }
    let device = rank_device(accelerator, env.local_rank)?;
    let world = backend(env, &device)?;
    if world.world_size() != env.world_size || world.rank() != env.rank {
        return Err(Error::Device(format!(
            "the launcher says rank {} of {}, the backend says rank {} of {}: were the ranks started by one launcher?",
            env.rank,
            env.world_size,
            world.rank(),
            world.world_size()
        )));
    }
    *joined = Some((world.clone(), device.clone()));
    Ok((world, device))
}

/// The device of the rank with node-local rank `local_rank`: on CUDA, one GPU per rank,
/// picked by the local rank; else the accelerator's device.
pub(crate) fn rank_device(accelerator: Accelerator, local_rank: usize) -> Result<Device> {
    if wants_cuda(accelerator) {
        Accelerator::Cuda(local_rank).device()
    } else {
        accelerator.device()
    }
}

/// Whether `accelerator` means CUDA here: asked for, or `Auto` in a CUDA build that finds a GPU.
pub(crate) fn wants_cuda(accelerator: Accelerator) -> bool {
    match accelerator {
        Accelerator::Cuda(_) => true,
        // candle's `cuda_is_available` only says whether CUDA was compiled in
        Accelerator::Auto => cfg!(feature = "cuda") && Device::new_cuda(0).is_ok(),
        _ => false,
    }
}

fn backend(env: &WorldEnv, device: &Device) -> Result<Arc<dyn Collective>> {
    #[cfg(feature = "nccl")]
    if device.is_cuda() {
        return Ok(Arc::new(super::Nccl::connect(env, device, timeout())?));
    }
    let _ = timeout;
    match env.launcher {
        #[cfg(feature = "mpi")]
        Launcher::Mpirun => Ok(super::Mpi::init()?),
        #[cfg(not(feature = "mpi"))]
        Launcher::Mpirun => Err(Error::Device(
            "started by mpirun, but this build has no MPI backend: rebuild with `--features mpi`".into(),
        )),
        Launcher::Torchrun if device.is_cuda() => Err(Error::Device(
            "RANK/WORLD_SIZE are set for data-parallel training on CUDA, which runs over NCCL: rebuild with `--features nccl`".into(),
        )),
        Launcher::Torchrun => Err(Error::Device(format!(
            "RANK/WORLD_SIZE are set, but data-parallel training on {:?} runs over MPI: start the ranks with `mpirun -np N` (feature `mpi`), or use `devices(N)`, which does",
            device.location()
        ))),
    }
}
