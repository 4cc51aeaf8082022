//! The two ways a metric's state crosses the ranks: summed, or gathered.

use crate::dist::{Buf, Collective};
use crate::Result;

/// Sums `state` element-wise over the ranks, in place.
pub(crate) fn sum(world: &dyn Collective, state: &mut [f64]) -> Result<()> {
    if world.world_size() > 1 {
        world.all_reduce_sum(Buf::F64(state))?;
    }
    Ok(())
}

/// Every rank's `local` values, concatenated in rank order. Built from sums, which the
/// process group has: the lengths first, then each rank's values at its own offset in a
/// buffer of zeros (adding zeros is exact, so the values arrive unchanged).
pub(crate) fn gather(world: &dyn Collective, local: &[f64]) -> Result<Vec<f64>> {
    let (rank, size) = (world.rank(), world.world_size());
    if size <= 1 {
        return Ok(local.to_vec());
    }
    let mut lens = vec![0.0; size];
    lens[rank] = local.len() as f64;
    sum(world, &mut lens)?;
    let offset: f64 = lens[..rank].iter().sum();
    let total: f64 = lens.iter().sum();
    let mut all = vec![0.0; total as usize];
    all[offset as usize..offset as usize + local.len()].copy_from_slice(local);
    sum(world, &mut all)?;
    Ok(all)
}
