//! [`Dropout`] and the counter-based generator behind it and behind attention's dropout.
//!
//! candle-nn's `Dropout` draws its mask from an unseeded generator, so a run cannot be
//! repeated nor resumed exactly. Here a mask bit is a hash of the generator's seed and a
//! counter (SplitMix64 at position `counter + index`): the whole state is two integers,
//! which the trainer seeds from `Trainer::builder().seed(..)` and saves in every
//! checkpoint, so a resumed fit draws the very masks an uninterrupted one would. The
//! backward pass recomputes the mask from the same two integers instead of keeping it.
//!
//! Whether a layer is training is one flag per thread: the trainer sets it while it runs
//! training batches and clears it for validation, testing and prediction (Lightning's
//! `model.train()` / `model.eval()`). Outside a trainer it is off; [`set_training`] or
//! [`Dropout::forward_t`] say otherwise.

use std::cell::Cell;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, WithDType};
use serde::{Deserialize, Serialize};

use super::op::contiguous;

/// The dropout generator's state: a mask bit is a hash of `seed` and `counter + index`, and
/// each draw advances `counter` by the number of bits it used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DropoutState {
    /// The seed the mask bits are hashed with.
    pub seed: u64,
    /// The position of the next mask bit: the bits drawn so far.
    pub counter: u64,
}

thread_local! {
    static STATE: Cell<DropoutState> = const { Cell::new(DropoutState { seed: 0, counter: 0 }) };
    static TRAINING: Cell<bool> = const { Cell::new(false) };
}

/// This thread's dropout generator state (what checkpoints save).
pub fn dropout_state() -> DropoutState {
    STATE.with(Cell::get)
}

/// Sets this thread's dropout generator state (the trainer does at the start of a fit, from
/// its seed, and when it restores a checkpoint).
pub fn set_dropout_state(state: DropoutState) {
    STATE.with(|s| s.set(state))
}

/// Whether dropout layers on this thread are training (the trainer sets it).
pub fn is_training() -> bool {
    TRAINING.with(Cell::get)
}

/// Sets this thread's training flag and returns the previous one.
///
/// ```
/// use lightning::candle::{Device, Tensor};
/// let drop = lightning::nn::Dropout::new(0.5);
/// let x = Tensor::ones((4, 8), lightning::candle::DType::F32, &Device::Cpu)?;
/// assert_eq!(drop.forward(&x)?.to_vec2::<f32>()?, x.to_vec2::<f32>()?); // evaluation: identity
/// let was = lightning::nn::set_training(true);
/// let y = drop.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
/// assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
/// lightning::nn::set_training(was);
/// # Ok::<(), lightning::candle::Error>(())
/// ```
pub fn set_training(training: bool) -> bool {
    TRAINING.with(|t| t.replace(training))
}

/// Sets this thread's training flag for as long as it lives, then puts the previous one back.
pub(crate) struct TrainingFlag(bool);

impl TrainingFlag {
    pub(crate) fn set(training: bool) -> TrainingFlag {
        TrainingFlag(set_training(training))
    }
}

impl Drop for TrainingFlag {
    fn drop(&mut self) {
        set_training(self.0);
    }
}

/// Reserves `n` mask bits: returns the state to draw them from and advances the counter.
pub(crate) fn reserve(n: u64) -> DropoutState {
    STATE.with(|s| {
        let now = s.get();
        s.set(DropoutState { counter: now.counter.wrapping_add(n), ..now });
        now
    })
}

/// The keep/drop decision of bit `index` of a draw: `p` is the drop probability.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mask {
    state: DropoutState,
    /// A bit is dropped when its hash is below this.
    threshold: u64,
}

impl Mask {
    /// Reserves `n` bits of this thread's generator for a drop probability `p` in [0, 1).
    pub(crate) fn draw(p: f64, n: usize) -> Mask {
        // p·2⁶⁴, exact to the 2⁻⁶⁴ step (p < 1 keeps it below u64::MAX)
        let threshold = (p * 18_446_744_073_709_551_616.0) as u64;
        Mask { state: reserve(n as u64), threshold }
    }

    /// Whether bit `index` is kept.
    #[inline(always)]
    pub(crate) fn keep(&self, index: usize) -> bool {
        splitmix64(self.state.seed, self.state.counter.wrapping_add(index as u64)) >= self.threshold
    }

    /// The mask as multipliers `1/(1-p)` or 0, for candle's ops on other devices.
    pub(crate) fn tensor(&self, p: f64, shape: &Shape, dtype: DType, device: &candle_core::Device) -> Result<Tensor> {
        let keep = 1.0 / (1.0 - p);
        // built in f64: an f32 `1/(1-p)` would differ from the CPU kernels' f64 one
        let m: Vec<f64> = (0..shape.elem_count()).map(|i| if self.keep(i) { keep } else { 0.0 }).collect();
        Tensor::from_vec(m, shape, device)?.to_dtype(dtype)
    }
}

/// SplitMix64's output at position `n` of the stream seeded with `seed`.
#[inline(always)]
fn splitmix64(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Inverted dropout: while training, each element is zeroed with probability `p` and the
/// rest are scaled by `1/(1-p)`; in evaluation it is the identity. Its masks come from the
/// trainer's seeded generator (see the module docs), so runs repeat and resume exactly.
///
/// ```
/// use lightning::candle::{DType, Device, Tensor};
/// use lightning::candle_nn::ModuleT;
/// let drop = lightning::nn::Dropout::new(0.25);
/// let x = Tensor::ones(1000, DType::F32, &Device::Cpu)?;
/// let kept = drop.forward_t(&x, true)?.ne(0f32)?.to_dtype(DType::F32)?.mean_all()?.to_scalar::<f32>()?;
/// assert!((kept - 0.75).abs() < 0.05);
/// # Ok::<(), lightning::candle::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    p: f64,
}

impl Dropout {
    /// A dropout of probability `p`; a value outside [0, 1) is an error when it is applied
    /// ([`Dropout::try_new`] checks it at once).
    pub fn new(p: f64) -> Self {
        Dropout { p }
    }

    /// [`Dropout::new`], refusing a probability outside [0, 1).
    pub fn try_new(p: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            candle_core::bail!("dropout: the probability must be in [0, 1), got {p}")
        }
        Ok(Dropout { p })
    }

    /// The probability of zeroing an element.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// Applies the dropout while the trainer runs training batches ([`is_training`]);
    /// `forward_t` (candle-nn's `ModuleT`) takes the flag as an argument instead.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        dropout(x, self.p, is_training())
    }
}

/// candle-nn's `ModuleT`: applies the dropout when `train` is true, whatever this
/// thread's training flag.
impl candle_nn::ModuleT for Dropout {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        dropout(x, self.p, train)
    }
}

/// Inverted dropout of `x` with probability `p` when `train`; the identity otherwise.
pub fn dropout(x: &Tensor, p: f64, train: bool) -> Result<Tensor> {
    if !(0.0..1.0).contains(&p) {
        candle_core::bail!("dropout: the probability must be in [0, 1), got {p}")
    }
    if !train || p == 0.0 || x.elem_count() == 0 {
        return Ok(x.clone());
    }
    let mask = Mask::draw(p, x.elem_count());
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        return x.contiguous()?.apply_op1(DropoutOp { mask, p });
    }
    x * mask.tensor(p, x.shape(), x.dtype(), x.device())?
}

/// `y = x · keep / (1 - p)`; its backward is the same map of the output gradient.
struct DropoutOp {
    mask: Mask,
    p: f64,
}

impl DropoutOp {
    fn apply<T: WithDType>(&self, x: &[T], shape: &Shape) -> (CpuStorage, Shape) {
        let scale = T::from_f64(1.0 / (1.0 - self.p));
        let zero = T::from_f64(0.0);
        let y: Vec<T> = x.iter().enumerate().map(|(i, &v)| if self.mask.keep(i) { v * scale } else { zero }).collect();
        (T::to_cpu_storage_owned(y), shape.clone())
    }
}

impl CustomOp1 for DropoutOp {
    fn name(&self) -> &'static str {
        "lightning-dropout"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        match s {
            CpuStorage::F32(_) => Ok(self.apply(contiguous::<f32>(s, l, "input")?, l.shape())),
            CpuStorage::F64(_) => Ok(self.apply(contiguous::<f64>(s, l, "input")?, l.shape())),
            other => Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), "lightning-dropout")),
        }
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let grad = DropoutOp { mask: self.mask, p: self.p };
        Ok(Some(dy.contiguous()?.apply_op1_no_bwd(&grad)?))
    }
}

/// No tensors: nothing to move (so `#[derive(Relocate)]` takes a dropout field).
impl crate::Relocate for Dropout {
    fn relocate(&mut self, _: &crate::Relocation) -> crate::Result<()> {
        Ok(())
    }
}
