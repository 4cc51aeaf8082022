//! Data-parallel training: a process group ([`Collective`]) and the operations DDP needs on
//! top of it — broadcasting the parameters from rank 0 and averaging gradients — done on one
//! flat bucket in a fixed order (by variable name: a `VarMap` is a `HashMap`, whose order
//! differs between processes).
//!
//! Backends: [`SingleProcess`] (world size 1, every operation a no-op); with the `mpi`
//! feature, [`Mpi`] (rsmpi over the system's MPI, for CPU clusters and for testing
//! multi-process training on one machine); with the `nccl` feature, `Nccl` (GPUs).
//!
//! Launching: [`WorldEnv`] reads what `mpirun` or a torchrun-style launcher set,
//! [`Rendezvous`] shares NCCL's id between the ranks, [`Workers`] is `devices(N)`'s
//! launcher, and [`connect`] joins the job the environment describes (what the trainer's
//! `strategy`/`devices` flags do).
//!
//! ```
//! use lightning::dist::{Collective, SingleProcess};
//! let world = SingleProcess;
//! let mut buf = [1.0f32, 2.0];
//! world.all_reduce_sum(lightning::dist::Buf::F32(&mut buf))?;
//! assert_eq!((world.rank(), world.world_size(), buf), (0, 1, [1.0, 2.0]));
//! # Ok::<(), lightning::Error>(())
//! ```

mod collectives;
mod env;
mod launch;
#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "nccl")]
mod nccl;
mod rank_zero;
mod rendezvous;
mod world;

use candle_core::{DType, Device, Tensor, Var};

pub(crate) use self::collectives::sync_metric;
pub use self::collectives::{all_gather, all_reduce, broadcast, reduce_boolean_decision};
pub use self::env::{Launcher, WorldEnv, RENDEZVOUS_VAR};
pub(crate) use self::launch::mark_started;
pub use self::launch::{Spawn, Workers};
#[cfg(feature = "mpi")]
pub use self::mpi::Mpi;
#[cfg(feature = "nccl")]
pub use self::nccl::Nccl;
pub(crate) use self::rank_zero::set_global_rank;
pub use self::rank_zero::{global_rank, rank_zero_only, rank_zero_warn};
pub use self::rendezvous::Rendezvous;
pub use self::world::{connect, RENDEZVOUS_TIMEOUT};
pub(crate) use self::world::{rank_device, wants_cuda};
use crate::{Error, Gradients, Result};

/// Whether a distributed runtime (MPI) has started in this process: from then on its own
/// threads may read the environment, which must then not change.
pub(crate) fn runtime_started() -> bool {
    #[cfg(feature = "mpi")]
    if ::mpi::environment::is_initialized() {
        return true;
    }
    false
}

/// A host buffer for a collective operation.
pub enum Buf<'a> {
    /// `f32` values.
    F32(&'a mut [f32]),
    /// `f64` values.
    F64(&'a mut [f64]),
    /// Bytes (paths, names): broadcast only.
    U8(&'a mut [u8]),
}

/// A process group: this process's rank among `world_size` processes, and the collective
/// operations on host buffers that every rank calls in the same order.
pub trait Collective: Send + Sync + std::fmt::Debug {
    /// This process's global rank, from 0.
    fn rank(&self) -> usize;
    /// The number of processes in the group.
    fn world_size(&self) -> usize;
    /// The rank among the processes of this node.
    fn local_rank(&self) -> usize {
        self.rank()
    }
    /// Returns once every rank has reached it.
    fn barrier(&self) -> Result<()>;
    /// Element-wise sum over all ranks, in place.
    fn all_reduce_sum(&self, buf: Buf<'_>) -> Result<()>;
    /// Element-wise maximum over all ranks, in place (max/min metrics).
    fn all_reduce_max(&self, buf: Buf<'_>) -> Result<()>;
    /// `root`'s buffer, copied into every rank's.
    fn broadcast(&self, buf: Buf<'_>, root: usize) -> Result<()>;
    /// Element-wise sum over all ranks of an f32 or f64 tensor. The default copies it
    /// through host memory; a GPU backend does it on the device.
    fn all_reduce_sum_tensor(&self, t: &Tensor) -> Result<Tensor> {
        through_host(t, |b| self.all_reduce_sum(b))
    }
    /// `root`'s tensor on every rank (same shape and dtype everywhere).
    fn broadcast_tensor(&self, t: &Tensor, root: usize) -> Result<Tensor> {
        through_host(t, |b| self.broadcast(b, root))
    }
    /// Ends every rank of the job with exit status `code`: what a rank whose training failed
    /// does, so that the others don't wait forever in their next collective operation.
    /// A single process returns (its error goes back to the caller).
    fn abort(&self, code: i32) {
        let _ = code;
    }
}

/// One process: rank 0 of 1; the collective operations change nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn all_reduce_sum(&self, _: Buf<'_>) -> Result<()> {
        Ok(())
    }
    fn all_reduce_max(&self, _: Buf<'_>) -> Result<()> {
        Ok(())
    }
    fn broadcast(&self, _: Buf<'_>, _: usize) -> Result<()> {
        Ok(())
    }
}

/// `op` on a host copy of `t` (f32 or f64), back on `t`'s device.
fn through_host(t: &Tensor, op: impl FnOnce(Buf<'_>) -> Result<()>) -> Result<Tensor> {
    let host = t.to_device(&Device::Cpu)?.flatten_all()?;
    let out = match t.dtype() {
        DType::F64 => {
            let mut v = host.to_vec1::<f64>()?;
            op(Buf::F64(&mut v))?;
            Tensor::from_vec(v, t.shape(), &Device::Cpu)?
        }
        DType::F32 => {
            let mut v = host.to_vec1::<f32>()?;
            op(Buf::F32(&mut v))?;
            Tensor::from_vec(v, t.shape(), &Device::Cpu)?
        }
        DType::U8 => {
            let mut v = host.to_vec1::<u8>()?;
            op(Buf::U8(&mut v))?;
            Tensor::from_vec(v, t.shape(), &Device::Cpu)?
        }
        other => {
            return Err(Error::Device(format!("collective operations take f32, f64 or u8 buffers, not {other:?}")))
        }
    };
    Ok(out.to_device(t.device())?)
}

/// The tensors as one flat bucket on their device, in their widest dtype (f64 when any is
/// f64, else f32), `op` applied to it, and the result split back into tensors of the
/// original shapes and dtypes: one collective operation for all of them.
fn with_bucket(tensors: &[Tensor], op: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Vec<Tensor>> {
    if tensors.is_empty() {
        return Ok(Vec::new());
    }
    let dtype = if tensors.iter().any(|t| t.dtype() == DType::F64) { DType::F64 } else { DType::F32 };
    let flat: Vec<Tensor> =
        tensors.iter().map(|t| t.to_dtype(dtype)?.flatten_all()).collect::<candle_core::Result<_>>()?;
    let bucket = op(&Tensor::cat(&flat, 0)?)?;
    let mut out = Vec::with_capacity(tensors.len());
    let mut at = 0;
    for t in tensors {
        let n = t.elem_count();
        out.push(bucket.narrow(0, at, n)?.reshape(t.shape())?.to_dtype(t.dtype())?);
        at += n;
    }
    Ok(out)
}

/// Copies rank 0's values of `vars` into every rank's (DDP's start: all replicas begin equal).
/// `vars` must be in the same order on every rank (sorted by name).
pub fn broadcast_parameters(world: &dyn Collective, vars: &[Var]) -> Result<()> {
    if world.world_size() == 1 {
        return Ok(());
    }
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    for (v, t) in vars.iter().zip(with_bucket(&tensors, |b| world.broadcast_tensor(b, 0))?) {
        v.set(&t)?;
    }
    Ok(())
}

/// Replaces every gradient by its mean over the ranks, as one bucket in `grads`' variable
/// order (sorted by name in the trainer). A variable without a gradient on this rank takes
/// part with zeros, so that all ranks send buckets of one layout.
pub fn average_gradients(world: &dyn Collective, grads: &mut Gradients) -> Result<()> {
    let n = world.world_size();
    if n == 1 {
        return Ok(());
    }
    let entries: Vec<(Tensor, Tensor)> = grads
        .iter()
        .map(|(v, g)| Ok((v.as_tensor().clone(), g.cloned().map_or_else(|| v.as_tensor().zeros_like(), Ok)?)))
        .collect::<candle_core::Result<_>>()?;
    let tensors: Vec<Tensor> = entries.iter().map(|(_, g)| g.clone()).collect();
    let summed = with_bucket(&tensors, |b| world.all_reduce_sum_tensor(b))?;
    for ((var, _), g) in entries.iter().zip(summed) {
        grads.set(var, (g / n as f64)?);
    }
    Ok(())
}

/// Sums `values` over the ranks (metric sums, counts).
pub fn all_reduce_sum(world: &dyn Collective, values: &mut [f64]) -> Result<()> {
    world.all_reduce_sum(Buf::F64(values))
}

/// Rank 0's `path` on every rank (where rank 0's logs and checkpoints go, for the ranks
/// that do not write them).
pub fn broadcast_path(world: &dyn Collective, path: Option<std::path::PathBuf>) -> Result<Option<std::path::PathBuf>> {
    if world.world_size() == 1 {
        return Ok(path);
    }
    let mut bytes = path.as_ref().map(|p| p.to_string_lossy().into_owned().into_bytes()).unwrap_or_default();
    let mut len = [path.as_ref().map_or(-1.0, |_| bytes.len() as f64)];
    world.broadcast(Buf::F64(&mut len), 0)?;
    if len[0] < 0.0 {
        return Ok(None);
    }
    bytes.resize(len[0] as usize, 0);
    world.broadcast(Buf::U8(&mut bytes), 0)?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned().into()))
}

/// One rank's share of a loader's epoch (torch's `DistributedSampler` with
/// `drop_last=False`): positions `rank, rank + world, …` of the epoch's order, padded to a
/// multiple of `world` by repeating its first indices, so every rank gets `ceil(len / world)`
/// samples. Made only for a rank inside its world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    rank: usize,
    world: usize,
}

impl Shard {
    /// `rank`'s share of `world`; an error unless `rank < world`.
    pub fn new(rank: usize, world: usize) -> Result<Self> {
        if world == 0 || rank >= world {
            return Err(Error::Config { flag: "shard", reason: format!("rank {rank} is not in a world of {world}") });
        }
        Ok(Shard { rank, world })
    }

    /// What a loader keeps for `rank` of `world`: `None` in a world of one (nothing to split).
    pub fn of(rank: usize, world: usize) -> Result<Option<Self>> {
        let shard = Shard::new(rank, world)?;
        Ok((world > 1).then_some(shard))
    }

    /// The rank whose share this is.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of ranks sharing the data.
    pub fn world(&self) -> usize {
        self.world
    }

    /// Samples this rank reads of `len`.
    pub fn samples(&self, len: usize) -> usize {
        len.div_ceil(self.world)
    }

    /// This rank's indices of an epoch's `order`.
    pub fn indices<T: Copy>(&self, order: &[T]) -> Vec<T> {
        if order.is_empty() {
            return Vec::new();
        }
        let total = self.samples(order.len()) * self.world;
        (self.rank..total).step_by(self.world).map(|i| order[i % order.len()]).collect()
    }
}

/// [`Shard::indices`] for `rank` of `world`.
pub fn shard_indices<T: Copy>(order: &[T], rank: usize, world: usize) -> Result<Vec<T>> {
    Ok(Shard::new(rank, world)?.indices(order))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_data_and_pad_like_torch() {
        let order: Vec<u32> = (0..10).collect();
        assert_eq!(shard_indices(&order, 0, 3).unwrap(), [0, 3, 6, 9]);
        assert_eq!(shard_indices(&order, 1, 3).unwrap(), [1, 4, 7, 0]);
        assert_eq!(shard_indices(&order, 2, 3).unwrap(), [2, 5, 8, 1]);
        assert_eq!(shard_indices(&order, 0, 1).unwrap(), order);
        assert!(shard_indices(&order, 3, 3).is_err());
    }

    #[test]
    fn buckets_keep_shapes_dtypes_and_order() {
        let a = Tensor::new(&[[1f32, 2.], [3., 4.]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[5f64, 6.], &Device::Cpu).unwrap();
        let out = with_bucket(&[a.clone(), b.clone()], |bucket| {
            assert_eq!(bucket.dtype(), DType::F64, "an f64 tensor makes the bucket f64");
            through_host(bucket, |buf| {
                match buf {
                    Buf::F64(v) => v.iter_mut().for_each(|x| *x *= 10.0),
                    _ => unreachable!(),
                }
                Ok(())
            })
        })
        .unwrap();
        assert_eq!(out[0].dtype(), DType::F32);
        assert_eq!(out[0].to_vec2::<f32>().unwrap(), [[10., 20.], [30., 40.]]);
        assert_eq!(out[1].to_vec1::<f64>().unwrap(), [50., 60.]);
    }
}
