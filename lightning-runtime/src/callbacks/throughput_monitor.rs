//! `ThroughputMonitor`: training samples, batches and FLOPs per second, logged each step.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use super::throughput::{Rates, Throughput};
use crate::{Log, Result, Stage, TrainerState};

/// The logged keys, in Lightning's names (stage `train`, separator `/`).
mod key {
    pub const TIME: &str = "train/time";
    pub const BATCHES: &str = "train/batches";
    pub const SAMPLES: &str = "train/samples";
    pub const DEVICE_BATCHES_PER_SEC: &str = "train/device/batches_per_sec";
    pub const DEVICE_SAMPLES_PER_SEC: &str = "train/device/samples_per_sec";
    pub const BATCHES_PER_SEC: &str = "train/batches_per_sec";
    pub const SAMPLES_PER_SEC: &str = "train/samples_per_sec";
    pub const FLOPS_PER_SEC: &str = "train/flops_per_sec";
    pub const DEVICE_FLOPS_PER_SEC: &str = "train/device/flops_per_sec";
    pub const DEVICE_MFU: &str = "train/device/mfu";
}

/// Lightning's `ThroughputMonitor` for training: after every optimizer step it logs, as
/// Lightning names them, `train/time` (seconds of training, validation excluded),
/// `train/batches`, `train/samples` and, once `window_size` batches (default 100) have
/// been seen, the rolling rates over the last `window_size`: `train/device/batches_per_sec`,
/// `train/device/samples_per_sec`, with FLOPs per sample `train/device/flops_per_sec`, with
/// the device's peak also `train/device/mfu`; under DDP (several ranks) also the global
/// `train/batches_per_sec`, `train/samples_per_sec` and `train/flops_per_sec` (Lightning
/// logs the global keys only with more than one device). They reach the loggers every
/// `log_every_n_steps` steps, like any step value.
///
/// The batch size comes from your function (Lightning's `batch_size_fn`), a closure, so
/// nothing is boxed.
///
/// ```
/// use candle_core::Tensor;
/// use lightning::callbacks::ThroughputMonitor;
///
/// // an MLP 784-128-10: 2·(784·128 + 128·10) FLOPs forward, about 3× that with backward
/// let monitor = ThroughputMonitor::new(|batch: &(Tensor, Tensor)| batch.0.dims()[0])
///     .flops_per_sample(3.0 * 2.0 * (784.0 * 128.0 + 128.0 * 10.0))
///     .window_size(50);
/// # let _ = monitor;
/// // Trainer::builder().callbacks((monitor,)).build()?
/// ```
#[derive(Debug)]
pub struct ThroughputMonitor<B, F> {
    batch_size_fn: F,
    flops_per_sample: Option<f64>,
    available_flops: Option<f64>,
    window_size: usize,
    throughput: Option<Throughput>,
    /// Training's start, moved later by the time validation took.
    t0: Instant,
    last_update: Option<Instant>,
    batches: usize,
    samples: usize,
    _batch: PhantomData<fn(&B)>,
}

impl<B, F: Fn(&B) -> usize> ThroughputMonitor<B, F> {
    /// Counts each batch's samples with `batch_size_fn`.
    pub fn new(batch_size_fn: F) -> Self {
        ThroughputMonitor {
            batch_size_fn,
            flops_per_sample: None,
            available_flops: None,
            window_size: 100,
            throughput: None,
            t0: Instant::now(),
            last_update: None,
            batches: 0,
            samples: 0,
            _batch: PhantomData,
        }
    }

    /// The model's FLOPs per training sample (forward and backward): FLOP/s are logged only
    /// with it. Lightning reads a `flops_per_batch` attribute of the module instead; here a
    /// batch's FLOPs are this times `batch_size_fn`'s count.
    pub fn flops_per_sample(mut self, flops: f64) -> Self {
        self.flops_per_sample = Some(flops);
        self
    }

    /// The device's peak FLOP/s, for `train/device/mfu` (Lightning looks it up from the
    /// GPU's model; we do not know it for any device, so give it).
    pub fn available_flops(mut self, flops: f64) -> Self {
        self.available_flops = Some(flops);
        self
    }

    /// Batches per rolling window (Lightning's `window_size`, default 100; at least 2,
    /// checked when `fit` starts).
    pub fn window_size(mut self, batches: usize) -> Self {
        self.window_size = batches;
        self
    }

    /// The last rates computed (all `None`/0 before the first step).
    fn rates(&self) -> Rates {
        self.throughput.as_ref().map(Throughput::compute).unwrap_or_default()
    }

    /// Logs the latest totals and whatever rates the window allows.
    fn log(&self, trainer: &mut TrainerState) -> Result<()> {
        let r = self.rates();
        let opts = Log::new().on_step(true).on_epoch(false);
        for (name, v) in [(key::TIME, r.time), (key::BATCHES, r.batches), (key::SAMPLES, r.samples)] {
            trainer.log_with(name, v, opts)?;
        }
        let optional = [
            (key::DEVICE_BATCHES_PER_SEC, r.device_batches_per_sec),
            (key::DEVICE_SAMPLES_PER_SEC, r.device_samples_per_sec),
            (key::BATCHES_PER_SEC, r.batches_per_sec),
            (key::SAMPLES_PER_SEC, r.samples_per_sec),
            (key::FLOPS_PER_SEC, r.flops_per_sec),
            (key::DEVICE_FLOPS_PER_SEC, r.device_flops_per_sec),
            (key::DEVICE_MFU, r.device_mfu),
        ];
        for (name, v) in optional {
            if let Some(v) = v {
                trainer.log_with(name, v, opts)?;
            }
        }
        Ok(())
    }
}

#[lightning_macros::callback]
impl<B, F: Fn(&B) -> usize> ThroughputMonitor<B, F> {
    fn on_train_start(&mut self, trainer: &mut TrainerState) -> Result<()> {
        self.throughput = Some(Throughput::new(self.window_size, trainer.world_size(), self.available_flops)?);
        if self.flops_per_sample.is_none() {
            crate::dist::rank_zero_warn(
                "ThroughputMonitor: no `flops_per_sample(..)` given, so FLOP/s and MFU are not logged",
            );
        }
        (self.t0, self.last_update, self.batches, self.samples) = (Instant::now(), None, 0, 0);
        Ok(())
    }

    fn on_train_batch_end(&mut self, trainer: &mut TrainerState, batch: &B, batch_idx: usize) -> Result<()> {
        let Some(throughput) = self.throughput.as_mut() else { return Ok(()) };
        let now = Instant::now();
        let size = (self.batch_size_fn)(batch);
        self.batches += 1;
        self.samples += size;
        let flops = self.flops_per_sample.map(|f| f * size as f64);
        throughput.update(now.duration_since(self.t0).as_secs_f64(), self.batches, self.samples, flops)?;
        self.last_update = Some(now);
        // as Lightning, only once the accumulated batches are stepped, so the optimizer's
        // time is inside the measured interval
        let k = trainer.accumulate_grad_batches().max(1);
        if (batch_idx + 1).is_multiple_of(k) || batch_idx + 1 == trainer.num_training_batches() {
            self.log(trainer)?;
        }
        Ok(())
    }

    /// Validation inside `fit` does not count as training time (Lightning moves training's
    /// start later by it).
    fn on_validation_end(&mut self, trainer: &mut TrainerState) {
        if trainer.sanity_checking() || trainer.stage() != Stage::Fit {
            return;
        }
        if let Some(last) = self.last_update {
            let paused: Duration = last.elapsed();
            self.t0 += paused;
            self.last_update = Some(last + paused);
        }
    }
}
