//! Collective operations on tensors for code that runs in hooks (Lightning's
//! `self.all_gather`, `trainer.strategy.reduce`, `barrier`, `reduce_boolean_decision`):
//! free functions over a [`Collective`], and the same on [`TrainerState`], where they are
//! no-ops in one process. Every rank must call them in the same order, as with torch.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

use super::{through_host, Buf, Collective};
use crate::logging::{MetricValue, Reduce};
use crate::{Error, Result, TrainerState};

/// Dimensions compared between the ranks before a gather (more are folded into the last).
const SHAPE_SLOTS: usize = 8;

/// The dtype a collective runs in: f32, f64 and u8 as they are, half floats in f32, integers
/// in f64 (exact up to 2^53).
fn wire_dtype(dtype: DType) -> DType {
    match dtype {
        DType::F32 | DType::F64 | DType::U8 => dtype,
        DType::BF16 | DType::F16 => DType::F32,
        _ => DType::F64,
    }
}

/// Fails on every rank alike when the ranks' tensors differ in shape or dtype (a gather of
/// unequal tensors would mix up their elements).
fn check_same_layout(world: &dyn Collective, t: &Tensor, what: &str) -> Result<()> {
    let dims = t.dims();
    let mut layout = [0f64; SHAPE_SLOTS + 2];
    layout[0] = dims.len() as f64;
    layout[1] = t.dtype() as u8 as f64;
    for (i, d) in dims.iter().enumerate() {
        let slot = 2 + i.min(SHAPE_SLOTS - 1);
        layout[slot] = if i < SHAPE_SLOTS { *d as f64 } else { layout[slot] * *d as f64 };
    }
    // the max of each entry and of its negation: equal on all ranks iff max == min
    let mut both: Vec<f64> = layout.iter().copied().chain(layout.iter().map(|v| -v)).collect();
    world.all_reduce_max(Buf::F64(&mut both))?;
    let (max, neg_min) = both.split_at(layout.len());
    if max.iter().zip(neg_min).any(|(hi, lo)| *hi != -*lo) {
        return Err(Error::msg(format!(
            "{what}: the ranks passed tensors of different shapes or dtypes (this rank: {:?} {:?}); \
             every rank must pass the same shape and dtype: pad to a common size first",
            t.dims(),
            t.dtype()
        )));
    }
    Ok(())
}

/// Every rank's `t`, stacked along a new first dimension of size `world_size` in rank order
/// (Lightning's `all_gather`). The tensors must have the same shape and dtype on every rank;
/// otherwise every rank returns an error. In a world of one, `t` itself, without a new
/// dimension (as Lightning).
pub fn all_gather(world: &dyn Collective, t: &Tensor) -> Result<Tensor> {
    let n = world.world_size();
    if n == 1 {
        return Ok(t.clone());
    }
    check_same_layout(world, t, "all_gather")?;
    let wide = t.to_dtype(wire_dtype(t.dtype()))?.contiguous()?;
    // each rank fills its own slot and leaves zeros elsewhere: the sum is the gather
    let zeros = wide.zeros_like()?;
    let slots: Vec<&Tensor> = (0..n).map(|r| if r == world.rank() { &wide } else { &zeros }).collect();
    let gathered = world.all_reduce_sum_tensor(&Tensor::stack(&slots, 0)?)?;
    Ok(gathered.to_dtype(t.dtype())?)
}

/// `t` reduced element-wise over the ranks with `op` (sum, mean, max or min), on every rank.
/// The shape and dtype must agree between the ranks. Integer tensors are reduced in f64; a
/// mean of integers is rounded towards zero back into their dtype.
pub fn all_reduce(world: &dyn Collective, t: &Tensor, op: Reduce) -> Result<Tensor> {
    let n = world.world_size();
    if n == 1 {
        return Ok(t.clone());
    }
    check_same_layout(world, t, "all_reduce")?;
    let mut wide = t.to_dtype(wire_dtype(t.dtype()))?.contiguous()?;
    if wide.dtype() == DType::U8 {
        // a sum of bytes overflows: reduce them as f64 like other integers
        wide = wide.to_dtype(DType::F64)?;
    }
    let out = match op {
        Reduce::Sum => world.all_reduce_sum_tensor(&wide)?,
        Reduce::Mean => (world.all_reduce_sum_tensor(&wide)? / n as f64)?,
        Reduce::Max => through_host(&wide, |b| world.all_reduce_max(b))?,
        Reduce::Min => through_host(&wide.neg()?, |b| world.all_reduce_max(b))?.neg()?,
    };
    Ok(out.to_dtype(t.dtype())?)
}

/// `root`'s `t` on every rank (Lightning's `strategy.broadcast`). The shape and dtype must
/// agree between the ranks; otherwise every rank returns an error.
pub fn broadcast(world: &dyn Collective, t: &Tensor, root: usize) -> Result<Tensor> {
    if world.world_size() == 1 {
        return Ok(t.clone());
    }
    if root >= world.world_size() {
        return Err(Error::msg(format!("broadcast from rank {root}, but the world has {} ranks", world.world_size())));
    }
    check_same_layout(world, t, "broadcast")?;
    let wide = t.to_dtype(wire_dtype(t.dtype()))?.contiguous()?;
    Ok(world.broadcast_tensor(&wide, root)?.to_dtype(t.dtype())?)
}

/// Lightning's `strategy.reduce_boolean_decision`: `true` when every rank decided `true`
/// (`all`), or when any rank did (`!all`). The same answer on every rank.
pub fn reduce_boolean_decision(world: &dyn Collective, decision: bool, all: bool) -> Result<bool> {
    let n = world.world_size();
    if n == 1 {
        return Ok(decision);
    }
    let mut votes = [f64::from(u8::from(decision))];
    world.all_reduce_sum(Buf::F64(&mut votes))?;
    Ok(if all { votes[0] as usize == n } else { votes[0] > 0.0 })
}

/// A logged value reduced over the ranks with `op` (`Log::sync_dist`); a device value stays on
/// its device.
pub(crate) fn sync_metric(world: &dyn Collective, v: &MetricValue, op: Reduce) -> Result<MetricValue> {
    Ok(match v {
        MetricValue::Host(x) => {
            let t = Tensor::new(&[*x], &candle_core::Device::Cpu)?;
            MetricValue::Host(all_reduce(world, &t, op)?.to_vec1::<f64>()?[0])
        }
        MetricValue::Device(t) => MetricValue::Device(all_reduce(world, t, op)?),
    })
}

/// Rank 0's `bytes` on every rank (any length: the length goes first).
pub(crate) fn broadcast_bytes(world: &dyn Collective, mut bytes: Vec<u8>) -> Result<Vec<u8>> {
    if world.world_size() == 1 {
        return Ok(bytes);
    }
    let mut len = [bytes.len() as f64];
    world.broadcast(Buf::F64(&mut len), 0)?;
    bytes.resize(len[0] as usize, 0);
    world.broadcast(Buf::U8(&mut bytes), 0)?;
    Ok(bytes)
}

/// Rank 0's name → value map on every rank (what rank 0's callbacks decide from).
pub(crate) fn broadcast_metrics(
    world: &dyn Collective,
    metrics: BTreeMap<String, f64>,
) -> Result<BTreeMap<String, f64>> {
    if world.world_size() == 1 {
        return Ok(metrics);
    }
    Ok(decode_metrics(&broadcast_bytes(world, encode_metrics(&metrics))?))
}

/// Each entry as the name's length (u32), the name, the value (f64), little-endian.
fn encode_metrics(metrics: &BTreeMap<String, f64>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (name, value) in metrics {
        bytes.extend((name.len() as u32).to_le_bytes());
        bytes.extend(name.as_bytes());
        bytes.extend(value.to_le_bytes());
    }
    bytes
}

/// The entries of [`encode_metrics`]' bytes (a truncated tail is dropped).
fn decode_metrics(mut rest: &[u8]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        let Some((value, tail)) = tail.get(len..).and_then(|t| t.split_first_chunk::<8>()) else {
            break;
        };
        out.insert(String::from_utf8_lossy(&rest[4..4 + len]).into_owned(), f64::from_le_bytes(*value));
        rest = tail;
    }
    out
}

/// Collectives in hooks: no-ops in one process.
impl TrainerState {
    /// The process group when more than one process trains.
    pub(crate) fn group(&self) -> Option<&dyn Collective> {
        self.world.as_deref().filter(|w| w.world_size() > 1)
    }

    /// Every rank's `tensor`, stacked along a new first dimension of size `world_size`
    /// (Lightning's `self.all_gather`); in one process, `tensor` itself. Shapes and dtypes
    /// must agree between the ranks. Every rank must call it.
    ///
    /// ```
    /// # use lightning::TrainerState;
    /// # fn hook(trainer: &mut TrainerState, preds: &candle_core::Tensor) -> lightning::Result<()> {
    /// let all = trainer.all_gather(preds)?; // (world_size, batch, ..) under DDP
    /// # Ok(()) }
    /// ```
    pub fn all_gather(&self, tensor: &Tensor) -> Result<Tensor> {
        self.group().map_or_else(|| Ok(tensor.clone()), |w| all_gather(w, tensor))
    }

    /// `tensor` reduced over the ranks with `op` (Lightning's `trainer.strategy.reduce`,
    /// whose default is the mean); in one process, `tensor` itself. Every rank must call it.
    ///
    /// ```
    /// # use lightning::{Reduce, TrainerState};
    /// # fn hook(trainer: &mut TrainerState, correct: &candle_core::Tensor) -> lightning::Result<()> {
    /// let total = trainer.all_reduce(correct, Reduce::Sum)?;
    /// # Ok(()) }
    /// ```
    pub fn all_reduce(&self, tensor: &Tensor, op: Reduce) -> Result<Tensor> {
        self.group().map_or_else(|| Ok(tensor.clone()), |w| all_reduce(w, tensor, op))
    }

    /// Rank `root`'s `tensor` on every rank (Lightning's `trainer.strategy.broadcast`); in
    /// one process, `tensor` itself. Every rank must call it.
    pub fn broadcast(&self, tensor: &Tensor, root: usize) -> Result<Tensor> {
        self.group().map_or_else(|| Ok(tensor.clone()), |w| broadcast(w, tensor, root))
    }

    /// Waits until every rank has reached it (Lightning's `trainer.strategy.barrier()`).
    pub fn barrier(&self) -> Result<()> {
        self.group().map_or(Ok(()), |w| w.barrier())
    }

    /// Lightning's `trainer.strategy.reduce_boolean_decision`: whether all ranks (`all`) or
    /// any rank decided `true`, the same on every rank; in one process, `decision`.
    pub fn reduce_boolean_decision(&self, decision: bool, all: bool) -> Result<bool> {
        self.group().map_or(Ok(decision), |w| reduce_boolean_decision(w, decision, all))
    }

    /// Under DDP, `should_stop` becomes true on every rank when any rank set it (Lightning's
    /// `reduce_boolean_decision(should_stop, all=False)`), so that all ranks stop together.
    pub(crate) fn sync_should_stop(&mut self) -> Result<()> {
        if let Some(w) = self.group() {
            self.should_stop = reduce_boolean_decision(w, self.should_stop, false)?;
        }
        Ok(())
    }

    /// `sync_should_stop`, and a pending Ctrl-C or preemption signal taken with it, in one
    /// collective: under DDP the highest signal any rank received, so that every rank stops
    /// after the same batch (`mpirun` and schedulers deliver a signal to the ranks at slightly
    /// different times, and a rank that stopped alone would leave the others waiting).
    pub(crate) fn sync_stop_and_signal(&mut self) -> Result<Option<crate::Signal>> {
        let signal = crate::trainer::interrupt::take();
        let Some(w) = self.group() else { return Ok(signal) };
        let mut votes = [f64::from(u8::from(self.should_stop)), signal.map_or(0.0, |s| f64::from(s.number()))];
        w.all_reduce_max(Buf::F64(&mut votes))?;
        self.should_stop = votes[0] > 0.0;
        Ok(crate::Signal::from_number(votes[1] as i32))
    }

    /// The value of `name` a built-in monitor (EarlyStopping, a plateau scheduler) decides
    /// from: under DDP the mean of the ranks' values (the value itself when they agree, as
    /// for every value reduced at an epoch's end), so that a value logged by each rank for
    /// itself cannot make the ranks decide differently. A name logged on some ranks only is
    /// an error on all of them.
    pub(crate) fn monitored_metric(&self, name: &str) -> Result<Option<f64>> {
        let local = self.metric(name)?;
        let Some(w) = self.group() else {
            return Ok(local);
        };
        let (v, present) = local.map_or((0.0, 0.0), |v| (v, 1.0));
        let mut extremes = [v, -v, present, -present];
        w.all_reduce_max(Buf::F64(&mut extremes))?;
        let [hi, neg_lo, logged, neg_unlogged] = extremes;
        if logged == 0.0 {
            return Ok(None);
        }
        if logged != -neg_unlogged {
            let here = if present == 1.0 { "logged" } else { "not logged" };
            return Err(Error::msg(format!(
                "`{name}` was logged on some ranks only (here: {here}); a monitored value must be logged on every rank"
            )));
        }
        if hi == -neg_lo {
            return Ok(Some(hi)); // the ranks agree: the value itself, not a rounded mean
        }
        let mut sum = [v];
        w.all_reduce_sum(Buf::F64(&mut sum))?;
        Ok(Some(sum[0] / w.world_size() as f64))
    }

    /// Rank 0's `callback_metrics` on every rank: what a decision that all ranks must share
    /// (which checkpoint to keep, and its path) is made from.
    pub(crate) fn rank_zero_callback_metrics(&self) -> Result<BTreeMap<String, f64>> {
        let local = self.callback_metrics()?;
        self.group().map_or(Ok(local.clone()), |w| broadcast_metrics(w, local))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::SingleProcess;
    use candle_core::Device;

    #[test]
    fn one_process_leaves_tensors_and_decisions_alone() {
        let t = Tensor::new(&[[1f32, 2.], [3., 4.]], &Device::Cpu).unwrap();
        let w = SingleProcess;
        assert_eq!(all_gather(&w, &t).unwrap().dims(), [2, 2], "no new dimension in a world of one");
        for op in [Reduce::Sum, Reduce::Mean, Reduce::Max, Reduce::Min] {
            assert_eq!(all_reduce(&w, &t, op).unwrap().to_vec2::<f32>().unwrap(), [[1., 2.], [3., 4.]]);
        }
        assert!(reduce_boolean_decision(&w, true, true).unwrap());
        assert!(!reduce_boolean_decision(&w, false, false).unwrap());
    }

    #[test]
    fn metrics_survive_the_byte_encoding() {
        let m: BTreeMap<String, f64> =
            [("val_loss".to_string(), 0.25), ("é".to_string(), f64::INFINITY), (String::new(), -1.0)].into();
        let bytes = encode_metrics(&m);
        assert_eq!(decode_metrics(&bytes), m);
        assert_eq!(decode_metrics(&bytes[..bytes.len() - 1]).len(), 2, "a truncated entry is dropped");
        assert_eq!(broadcast_bytes(&SingleProcess, bytes.clone()).unwrap(), bytes);
    }
}
