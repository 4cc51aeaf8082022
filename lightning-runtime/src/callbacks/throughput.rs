//! Lightning's `Throughput` (fabric's `utilities/throughput.py`): rolling rates over the last
//! `window` updates of monotonic totals (time, batches, samples, FLOPs).

use std::collections::VecDeque;

use crate::{Error, Result};

/// The rates of one [`Throughput::compute`]; `None` until the window is full (Lightning
/// leaves those keys out until then).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Rates {
    /// Seconds since the stage started (`time`).
    pub time: f64,
    /// Batches seen by this device (`batches`).
    pub batches: f64,
    /// Samples seen by this device (`samples`).
    pub samples: f64,
    /// `device/batches_per_sec`.
    pub device_batches_per_sec: Option<f64>,
    /// `device/samples_per_sec`.
    pub device_samples_per_sec: Option<f64>,
    /// `batches_per_sec`: every device's, only with several (`world_size > 1`).
    pub batches_per_sec: Option<f64>,
    /// `samples_per_sec`, likewise.
    pub samples_per_sec: Option<f64>,
    /// `flops_per_sec`, likewise.
    pub flops_per_sec: Option<f64>,
    /// `device/flops_per_sec`.
    pub device_flops_per_sec: Option<f64>,
    /// `device/mfu`: `device/flops_per_sec` over the device's available FLOP/s.
    pub device_mfu: Option<f64>,
}

/// A window of monotonic totals.
#[derive(Debug, Clone)]
pub(crate) struct Throughput {
    window: usize,
    world_size: usize,
    available_flops: Option<f64>,
    time: VecDeque<f64>,
    batches: VecDeque<usize>,
    samples: VecDeque<usize>,
    /// FLOPs of each batch over all devices.
    flops: VecDeque<f64>,
}

impl Throughput {
    /// At least 2 updates per window: rates are differences between its ends.
    pub fn new(window: usize, world_size: usize, available_flops: Option<f64>) -> Result<Self> {
        if window < 2 {
            return Err(Error::config(
                "ThroughputMonitor::window_size",
                format!("{window}: rates are measured between the first and last of a window, so it needs at least 2"),
            ));
        }
        Ok(Throughput {
            window,
            world_size: world_size.max(1),
            available_flops,
            time: VecDeque::with_capacity(window),
            batches: VecDeque::with_capacity(window),
            samples: VecDeque::with_capacity(window),
            flops: VecDeque::with_capacity(window),
        })
    }

    fn push<T: PartialOrd + Copy + std::fmt::Display>(
        q: &mut VecDeque<T>,
        window: usize,
        what: &str,
        v: T,
    ) -> Result<()> {
        if let Some(&last) = q.back() {
            if last > v {
                return Err(Error::msg(format!(
                    "ThroughputMonitor: {what} must not decrease (last {last}, now {v}); check `batch_size_fn`"
                )));
            }
        }
        if q.len() == window {
            q.pop_front();
        }
        q.push_back(v);
        Ok(())
    }

    /// One update: totals since the stage started, and this batch's FLOPs on this device.
    pub fn update(&mut self, time: f64, batches: usize, samples: usize, flops_per_batch: Option<f64>) -> Result<()> {
        let w = self.window;
        Self::push(&mut self.time, w, "time", time)?;
        Self::push(&mut self.batches, w, "the batch count", batches)?;
        Self::push(&mut self.samples, w, "the sample count", samples)?;
        if let Some(f) = flops_per_batch {
            if self.flops.len() == w {
                self.flops.pop_front();
            }
            self.flops.push_back(f * self.world_size as f64);
        }
        Ok(())
    }

    /// The latest totals and, once the window is full, the rates over it.
    pub fn compute(&self) -> Rates {
        let (Some(&time), Some(&batches), Some(&samples)) =
            (self.time.back(), self.batches.back(), self.samples.back())
        else {
            return Rates::default();
        };
        let mut r = Rates { time, batches: batches as f64, samples: samples as f64, ..Rates::default() };
        let world = self.world_size as f64;
        let global = self.world_size > 1;
        let elapsed = time - self.time[0];
        if elapsed <= 0.0 {
            return r;
        }
        if self.time.len() == self.window {
            let db = (batches - self.batches[0]) as f64 / elapsed;
            let ds = (samples - self.samples[0]) as f64 / elapsed;
            (r.device_batches_per_sec, r.device_samples_per_sec) = (Some(db), Some(ds));
            if global {
                (r.batches_per_sec, r.samples_per_sec) = (Some(db * world), Some(ds * world));
            }
        }
        if self.flops.len() == self.window {
            // the first batch's FLOPs were spent before the window's first time
            let flops: f64 = self.flops.iter().skip(1).sum();
            let per_sec = flops / elapsed;
            let device = per_sec / world;
            r.flops_per_sec = global.then_some(per_sec);
            r.device_flops_per_sec = Some(device);
            r.device_mfu = self.available_flops.filter(|a| *a > 0.0).map(|a| device / a);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_appear_once_the_window_is_full() {
        let mut t = Throughput::new(3, 1, None).unwrap();
        t.update(1.0, 1, 8, Some(100.0)).unwrap();
        t.update(2.0, 2, 16, Some(100.0)).unwrap();
        let r = t.compute();
        assert_eq!((r.time, r.batches, r.samples), (2.0, 2.0, 16.0));
        assert_eq!(r.device_samples_per_sec, None);
        t.update(3.0, 3, 24, Some(100.0)).unwrap();
        let r = t.compute();
        // two batches of 8 in the 2 s between the window's ends
        assert_eq!(r.device_batches_per_sec, Some(1.0));
        assert_eq!(r.device_samples_per_sec, Some(8.0));
        assert_eq!(r.device_flops_per_sec, Some(100.0));
        assert_eq!(
            (r.samples_per_sec, r.flops_per_sec, r.device_mfu),
            (None, None, None),
            "one device: no global keys"
        );
        // the window slides: batches 2..4, 4 s
        t.update(6.0, 4, 32, Some(100.0)).unwrap();
        assert_eq!(t.compute().device_samples_per_sec, Some(4.0));
    }

    #[test]
    fn global_rates_and_mfu_follow_lightning() {
        let mut t = Throughput::new(2, 4, Some(50.0)).unwrap();
        t.update(0.5, 1, 10, Some(100.0)).unwrap();
        t.update(1.5, 2, 20, Some(100.0)).unwrap();
        let r = t.compute();
        assert_eq!(r.device_samples_per_sec, Some(10.0));
        assert_eq!(r.samples_per_sec, Some(40.0));
        assert_eq!(r.batches_per_sec, Some(4.0));
        // 4 devices × 100 FLOPs in 1 s: 100 per device, against 50 available an MFU of 2
        assert_eq!(r.flops_per_sec, Some(400.0));
        assert_eq!(r.device_flops_per_sec, Some(100.0));
        assert_eq!(r.device_mfu, Some(2.0));
    }

    #[test]
    fn a_window_below_two_and_decreasing_totals_are_errors() {
        assert!(Throughput::new(1, 1, None).unwrap_err().to_string().contains("at least 2"));
        let mut t = Throughput::new(2, 1, None).unwrap();
        t.update(1.0, 1, 8, None).unwrap();
        assert!(t.update(2.0, 2, 4, None).unwrap_err().to_string().contains("sample count"));
    }
}
