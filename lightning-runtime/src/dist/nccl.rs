//! The NCCL backend (feature `nccl`): one process per GPU, collective operations on candle's
//! own CUDA stream (so they are ordered with its kernels without extra synchronisation).
//! The ranks meet once, through a [`Rendezvous`], to share NCCL's unique id.

use std::time::Duration;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle_core::cuda_backend::{CudaStorage, CudaStorageSlice};
use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Tensor};

use super::{Buf, Collective, Rendezvous, WorldEnv};
use crate::{Error, Result};

/// An NCCL communicator over the job's GPUs, on the stream of `device` (GPU `local_rank`).
pub struct Nccl {
    /// The only way to the communicator: one operation at a time, from any thread.
    comm: std::sync::Mutex<Handle>,
    rank: usize,
    world_size: usize,
    device: Device,
    local_rank: usize,
}

/// NCCL's communicator, reachable only through [`Nccl`]'s lock.
struct Handle(Comm);

impl std::fmt::Debug for Nccl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nccl").field("rank", &self.rank).field("world_size", &self.world_size).finish()
    }
}

// SAFETY: `Comm` holds NCCL's communicator handle, which NCCL allows to be used from any
// thread but not from two at once; it is reached only through `Nccl::comm`, a mutex, so
// operations never overlap. `Nccl` is then `Sync` by the mutex, with no `unsafe impl Sync`.
unsafe impl Send for Handle {}

fn nccl_err(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::Device(format!("NCCL {what} failed: {e:?}"))
}

impl Nccl {
    /// Joins the job `env` describes on `device` (a CUDA device; GPU `env.local_rank`):
    /// rank 0 makes the NCCL id and publishes it at the rendezvous, the others fetch it,
    /// then every rank builds its communicator.
    pub fn connect(env: &WorldEnv, device: &Device, timeout: Duration) -> Result<Self> {
        let stream = device
            .as_cuda_device()
            .map_err(|_| Error::Device("the NCCL backend needs a CUDA device: use accelerator(Cuda(..))".into()))?
            .cuda_stream();
        let point = env.rendezvous_point()?;
        let id = if env.rank == 0 {
            let id = Id::new().map_err(|e| nccl_err("ncclGetUniqueId", e))?;
            let bytes: Vec<u8> = id.internal().iter().map(|&c| c as u8).collect();
            point.publish(env.world_size, &bytes, timeout)?;
            id
        } else {
            let bytes = point.fetch(env.rank, env.world_size, timeout)?;
            let mut internal = [0 as std::ffi::c_char; 128];
            if bytes.len() != internal.len() {
                return Err(Error::Rendezvous {
                    at: format!("{point:?}"),
                    reason: format!("rank 0 sent {} bytes, an NCCL id has 128", bytes.len()),
                });
            }
            for (d, s) in internal.iter_mut().zip(bytes) {
                *d = s as std::ffi::c_char;
            }
            Id::uninit(internal)
        };
        let comm =
            Comm::from_rank(stream, env.rank, env.world_size, id).map_err(|e| nccl_err("ncclCommInitRank", e))?;
        if env.rank == 0 {
            // every rank is in: the id has served
            Rendezvous::finish(&point);
        }
        let (rank, world_size) = (comm.rank(), comm.world_size());
        Ok(Nccl {
            comm: std::sync::Mutex::new(Handle(comm)),
            rank,
            world_size,
            device: device.clone(),
            local_rank: env.local_rank,
        })
    }

    /// The GPU this rank trains on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The communicator, for one operation (a poisoned lock only means another thread
    /// panicked between operations: the communicator itself is intact).
    fn lock(&self) -> std::sync::MutexGuard<'_, Handle> {
        self.comm.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn host_op(&self, buf: Buf<'_>, op: &Op<'_>) -> Result<()> {
        match buf {
            Buf::F32(v) => {
                let t = Tensor::from_slice(v, v.len(), &self.device)?.apply_op1_no_bwd(op)?;
                v.copy_from_slice(&t.to_vec1::<f32>()?);
            }
            Buf::F64(v) => {
                let t = Tensor::from_slice(v, v.len(), &self.device)?.apply_op1_no_bwd(op)?;
                v.copy_from_slice(&t.to_vec1::<f64>()?);
            }
            Buf::U8(v) => {
                let t = Tensor::from_slice(v, v.len(), &self.device)?.apply_op1_no_bwd(op)?;
                v.copy_from_slice(&t.to_vec1::<u8>()?);
            }
        }
        Ok(())
    }
}

/// A collective operation as a candle op on the GPU: the output is a new buffer.
enum Op<'a> {
    Sum(&'a Comm),
    Max(&'a Comm),
    Broadcast(&'a Comm, usize),
}

impl CustomOp1 for Op<'_> {
    fn name(&self) -> &'static str {
        match self {
            Op::Sum(_) => "nccl-all-reduce-sum",
            Op::Max(_) => "nccl-all-reduce-max",
            Op::Broadcast(..) => "nccl-broadcast",
        }
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("{} runs on CUDA tensors only", self.name())
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let Some((start, end)) = l.contiguous_offsets() else {
            candle_core::bail!("{} needs a contiguous tensor", self.name())
        };
        let dev = s.device().clone();
        macro_rules! run {
            ($slice:expr, $t:ty) => {{
                let src = $slice.slice(start..end);
                // SAFETY: NCCL writes all `end - start` elements before anyone reads them
                let mut dst = unsafe { dev.alloc::<$t>(end - start) }?;
                let r = match self {
                    Op::Sum(comm) => comm.all_reduce(&src, &mut dst, &ReduceOp::Sum),
                    Op::Max(comm) => comm.all_reduce(&src, &mut dst, &ReduceOp::Max),
                    Op::Broadcast(comm, root) => comm.broadcast(Some(&src), &mut dst, *root as i32),
                };
                r.map_err(|e| candle_core::Error::Msg(format!("{}: {e:?}", self.name())))?;
                CudaStorage::wrap_cuda_slice(dst, dev)
            }};
        }
        let out = match &s.slice {
            CudaStorageSlice::F32(v) => run!(v, f32),
            CudaStorageSlice::F64(v) => run!(v, f64),
            CudaStorageSlice::U8(v) => run!(v, u8),
            _ => candle_core::bail!("{}: f32, f64 or u8 only, got {:?}", self.name(), s.dtype()),
        };
        Ok((out, l.shape().clone()))
    }
}

impl Collective for Nccl {
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
        // an all-reduce nobody passes before every rank arrives, then wait for it
        let mut one = [1f32];
        self.all_reduce_sum(Buf::F32(&mut one))?;
        self.device.synchronize()?;
        Ok(())
    }
    fn all_reduce_sum(&self, buf: Buf<'_>) -> Result<()> {
        self.host_op(buf, &Op::Sum(&self.lock().0))
    }
    fn all_reduce_max(&self, buf: Buf<'_>) -> Result<()> {
        self.host_op(buf, &Op::Max(&self.lock().0))
    }
    fn broadcast(&self, buf: Buf<'_>, root: usize) -> Result<()> {
        self.host_op(buf, &Op::Broadcast(&self.lock().0, root))
    }
    fn all_reduce_sum_tensor(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.contiguous()?.apply_op1_no_bwd(&Op::Sum(&self.lock().0))?)
    }
    fn broadcast_tensor(&self, t: &Tensor, root: usize) -> Result<Tensor> {
        Ok(t.contiguous()?.apply_op1_no_bwd(&Op::Broadcast(&self.lock().0, root))?)
    }
    fn abort(&self, code: i32) {
        // NCCL has no job-wide abort: exiting ends this rank, and the launcher (devices(N),
        // torchrun) stops the others
        std::process::exit(code)
    }
}
