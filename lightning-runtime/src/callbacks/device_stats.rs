//! `DeviceStatsMonitor`: the device's and the process's memory and CPU use, logged around
//! every training batch whose values go to the loggers.

use crate::devices::stats;
use crate::{Error, Log, Result, Stage, TrainerState};

/// Lightning's `DeviceStatsMonitor`: at `on_train_batch_start` and `on_train_batch_end` of
/// the batches whose step values reach the loggers (every `log_every_n_steps`), it logs
/// `DeviceStatsMonitor.on_train_batch_start/<stat>` and `DeviceStatsMonitor.on_train_batch_end/<stat>`.
///
/// On the CPU the stats are `process_rss_mb` (this process's resident memory),
/// `process_cpu_time_s` (its user + system CPU time, all threads), and Lightning's
/// `cpu_vm_percent` and `cpu_swap_percent` (the machine's memory and swap in use); read
/// from Linux's `/proc` and `getrusage`, and on other systems whatever of them exists (it
/// says which are missing when `fit` starts). On a CUDA device they are
/// `cuda_memory_used_mb`, `cuda_memory_free_mb` and `cuda_memory_total_mb`, the driver's
/// figures for the whole GPU (candle has no caching allocator whose statistics torch's
/// `memory_stats` would give); the CPU's are added with `cpu_stats(true)`.
///
/// As in Lightning, it needs a logger (`fit` without one is an error) and logs only in
/// training.
///
/// ```
/// use lightning::callbacks::DeviceStatsMonitor;
/// let monitor = DeviceStatsMonitor::new();                 // Lightning's cpu_stats=None
/// let with_cpu = DeviceStatsMonitor::new().cpu_stats(true); // on a GPU, the CPU's too
/// # let _ = (monitor, with_cpu);
/// ```
#[derive(Debug, Clone, Default)]
pub struct DeviceStatsMonitor {
    cpu_stats: Option<bool>,
}

impl DeviceStatsMonitor {
    /// The device's statistics (the CPU's when training on the CPU).
    pub fn new() -> Self {
        Self::default()
    }

    /// Lightning's `cpu_stats`: `true` adds the CPU's statistics on a GPU too, `false` logs
    /// nothing on the CPU (and only the GPU's on a GPU).
    pub fn cpu_stats(mut self, on: bool) -> Self {
        self.cpu_stats = Some(on);
        self
    }

    fn log(&self, trainer: &mut TrainerState, hook: &str) -> Result<()> {
        let device = trainer.device().clone();
        let on_cpu = device.is_cpu();
        if on_cpu && self.cpu_stats == Some(false) {
            return Ok(());
        }
        let mut all = stats::device(&device)?.unwrap_or_default();
        if on_cpu || self.cpu_stats == Some(true) {
            all.extend(stats::cpu());
        }
        let opts = Log::new().on_step(true).on_epoch(false);
        for (stat, value) in all {
            trainer.log_with(&format!("DeviceStatsMonitor.{hook}/{stat}"), value, opts)?;
        }
        Ok(())
    }
}

#[lightning_macros::callback]
impl DeviceStatsMonitor {
    fn setup(&mut self, trainer: &mut TrainerState, stage: Stage) -> Result<()> {
        if stage != Stage::Fit {
            return Ok(());
        }
        if trainer.loggers.is_empty() {
            return Err(Error::config(
                "DeviceStatsMonitor",
                "it logs through the loggers, and this trainer has none (`enable_logger(false)`): \
                 keep a logger or drop the callback",
            ));
        }
        let device = trainer.device().clone();
        if device.is_metal() {
            crate::dist::rank_zero_warn("DeviceStatsMonitor: candle exposes no memory query for Metal devices");
        }
        let cpu_wanted = device.is_cpu() && self.cpu_stats != Some(false) || self.cpu_stats == Some(true);
        let missing = stats::cpu_missing();
        if cpu_wanted && !missing.is_empty() {
            crate::dist::rank_zero_warn(format_args!(
                "DeviceStatsMonitor: this system gives no {} (read from Linux's /proc and getrusage); they are not logged",
                missing.join(", ")
            ));
        }
        Ok(())
    }

    fn on_train_batch_start(&mut self, trainer: &mut TrainerState) -> Result<()> {
        // the step values of this batch reach the loggers after its optimizer step
        if (trainer.global_step() + 1).is_multiple_of(trainer.log_every_n_steps().max(1)) {
            self.log(trainer, "on_train_batch_start")?;
        }
        Ok(())
    }

    fn on_train_batch_end(&mut self, trainer: &mut TrainerState) -> Result<()> {
        if trainer.global_step().is_multiple_of(trainer.log_every_n_steps().max(1)) || trainer.should_stop() {
            self.log(trainer, "on_train_batch_end")?;
        }
        Ok(())
    }
}
