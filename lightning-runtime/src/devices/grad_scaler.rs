//! Dynamic loss scaling for `16-mixed`: torch's `torch.amp.GradScaler`, step for step.
//!
//! f16 holds numbers down to 6e-8 only: small gradients computed in f16 flush to zero. The
//! loss is multiplied by the scale before backward, so the gradients are computed scaled up;
//! before clipping and the optimizer step they are widened to f32 and divided by the scale.
//! A step whose gradients hold an inf or NaN (the scale was too large) is skipped and the
//! scale backs off; after `growth_interval` good steps in a row it grows.

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::{Error, Gradients, Optimizer, Result};

/// The loss scaler's settings under `precision = "16-mixed"` (torch's
/// `torch.amp.GradScaler(init_scale, growth_factor, backoff_factor, growth_interval)`, with
/// its defaults). Give it to [`crate::TrainerBuilder::grad_scaler`]; without it, `16-mixed`
/// uses the defaults.
///
/// ```
/// use lightning::prelude::*;
/// let trainer = Trainer::builder()
///     .precision(Precision::F16Mixed)
///     .grad_scaler(GradScaler::default().init_scale(1024.0).growth_interval(100))
///     .build()?;
/// # Ok::<(), lightning::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradScaler {
    /// The first scale (default 2^16 = 65536).
    pub init_scale: f64,
    /// The scale's factor after `growth_interval` good steps in a row (default 2.0).
    pub growth_factor: f64,
    /// The scale's factor after a step with inf or NaN gradients (default 0.5).
    pub backoff_factor: f64,
    /// Good steps in a row before the scale grows (default 2000).
    pub growth_interval: u64,
}

impl Default for GradScaler {
    fn default() -> Self {
        GradScaler { init_scale: 65536.0, growth_factor: 2.0, backoff_factor: 0.5, growth_interval: 2000 }
    }
}

impl GradScaler {
    /// The first scale.
    pub fn init_scale(mut self, v: f64) -> Self {
        self.init_scale = v;
        self
    }
    /// The growth factor (> 1).
    pub fn growth_factor(mut self, v: f64) -> Self {
        self.growth_factor = v;
        self
    }
    /// The backoff factor (in (0, 1)).
    pub fn backoff_factor(mut self, v: f64) -> Self {
        self.backoff_factor = v;
        self
    }
    /// Good steps in a row before the scale grows (at least 1).
    pub fn growth_interval(mut self, v: u64) -> Self {
        self.growth_interval = v;
        self
    }

    /// Refuses what torch refuses (a growth factor ≤ 1, a backoff factor ≥ 1) and what cannot
    /// work (a scale that is not a finite positive f32, a backoff ≤ 0, an interval of 0).
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::config("grad_scaler", reason));
        let scale = self.init_scale as f32;
        if !(scale.is_finite() && scale > 0.0) {
            return bad(format!("init_scale must be a finite number > 0 (as an f32), got {}", self.init_scale));
        }
        if !(self.growth_factor.is_finite() && self.growth_factor > 1.0) {
            return bad(format!("growth_factor must be > 1, got {}", self.growth_factor));
        }
        if !(self.backoff_factor > 0.0 && self.backoff_factor < 1.0) {
            return bad(format!("backoff_factor must be in (0, 1), got {}", self.backoff_factor));
        }
        if self.growth_interval == 0 {
            return bad("growth_interval must be at least 1".into());
        }
        Ok(())
    }
}

/// The scaler's state as torch's `GradScaler.state_dict()` names it: the scale now, the
/// settings, and the good steps in a row (`_growth_tracker`). Checkpoints save it in
/// `trainer_state.json` (`grad_scaler`); read it during a fit with
/// [`crate::TrainerState::grad_scaler`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GradScalerState {
    /// The scale the next loss is multiplied by (an f32 value, as torch keeps it).
    pub scale: f64,
    /// See [`GradScaler::growth_factor`].
    pub growth_factor: f64,
    /// See [`GradScaler::backoff_factor`].
    pub backoff_factor: f64,
    /// See [`GradScaler::growth_interval`].
    pub growth_interval: u64,
    /// Good steps since the scale last changed.
    #[serde(rename = "_growth_tracker")]
    pub growth_tracker: u64,
}

impl GradScalerState {
    /// Checks a state read from a checkpoint: the settings as [`GradScaler`] checks them and
    /// a growth tracker under the interval.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        let settings = GradScaler {
            init_scale: self.scale,
            growth_factor: self.growth_factor,
            backoff_factor: self.backoff_factor,
            growth_interval: self.growth_interval,
        };
        settings.validate().map_err(|e| match e {
            Error::Config { reason, .. } => reason.replace("init_scale", "scale"),
            other => other.to_string(),
        })?;
        if self.growth_tracker >= self.growth_interval {
            return Err(format!(
                "_growth_tracker {} must be under growth_interval {}",
                self.growth_tracker, self.growth_interval
            ));
        }
        Ok(())
    }
}

/// The scaler of one fit.
#[derive(Clone, Debug)]
pub(crate) struct Scaler {
    settings: GradScaler,
    /// f32, as torch keeps it: growth stops where the scale would overflow f32.
    scale: f32,
    growth_tracker: u64,
}

impl Scaler {
    pub fn new(settings: GradScaler) -> Self {
        Scaler { settings, scale: settings.init_scale as f32, growth_tracker: 0 }
    }

    /// `loss · scale`, what goes to backward (torch's `scaler.scale(loss)`).
    pub fn scale(&self, loss: &Tensor) -> Result<Tensor> {
        Ok(loss.affine(f64::from(self.scale), 0.0)?)
    }

    /// torch's `unscale_(optimizer)`: the gradients of the optimizer's parameters (of all
    /// parameters when it names none) in f32, times `1 / scale`. Returns whether any holds
    /// an inf or NaN (one read from the device).
    pub fn unscale<O: Optimizer + ?Sized>(&self, grads: &mut Gradients, optimizer: &O) -> Result<bool> {
        // torch: the reciprocal in f64, used as an f32
        let inv = f64::from((1.0 / f64::from(self.scale)) as f32);
        let mut probe: Option<Tensor> = None;
        let mut unscale = |var: &Var, grads: &mut Gradients| -> Result<()> {
            let Some(g) = grads.get(var.as_tensor()) else { return Ok(()) };
            let g = g.to_dtype(DType::F32)?.affine(inv, 0.0)?;
            // 0 · x is 0 for a finite x, NaN for an inf or NaN: the sum is finite iff all are
            let p = g.affine(0.0, 0.0)?.sum_all()?;
            probe = Some(match probe.take() {
                Some(acc) => (acc + p)?,
                None => p,
            });
            grads.set(var.as_tensor(), g);
            Ok(())
        };
        let named = optimizer.named_parameters();
        if named.is_empty() {
            let vars: Vec<Var> = grads.iter().map(|(v, _)| v.clone()).collect();
            for v in &vars {
                unscale(v, grads)?;
            }
        } else {
            for (_, v) in named {
                unscale(v, grads)?;
            }
        }
        Ok(match probe {
            Some(p) => !p.to_scalar::<f32>()?.is_finite(),
            None => false,
        })
    }

    /// torch's `update()` (`_amp_update_scale_`): back off after a step with inf or NaN
    /// gradients, grow after `growth_interval` good ones in a row (unless it would overflow f32).
    pub fn update(&mut self, found_inf: bool) {
        let s = &self.settings;
        if found_inf {
            self.scale = (f64::from(self.scale) * s.backoff_factor) as f32;
            self.growth_tracker = 0;
        } else if self.growth_tracker + 1 == s.growth_interval {
            let grown = (f64::from(self.scale) * s.growth_factor) as f32;
            if grown.is_finite() {
                self.scale = grown;
            }
            self.growth_tracker = 0;
        } else {
            self.growth_tracker += 1;
        }
    }

    /// torch's `state_dict()`.
    pub fn state_dict(&self) -> GradScalerState {
        let s = &self.settings;
        GradScalerState {
            scale: f64::from(self.scale),
            growth_factor: s.growth_factor,
            backoff_factor: s.backoff_factor,
            growth_interval: s.growth_interval,
            growth_tracker: self.growth_tracker,
        }
    }

    /// torch's `load_state_dict()`: the saved scale, tracker and settings (a state checked by
    /// [`GradScalerState::check`]). Returns whether the saved settings differ from these.
    pub fn load_state_dict(&mut self, st: &GradScalerState) -> bool {
        let settings = GradScaler {
            init_scale: self.settings.init_scale,
            growth_factor: st.growth_factor,
            backoff_factor: st.backoff_factor,
            growth_interval: st.growth_interval,
        };
        let changed = settings != self.settings;
        self.settings = settings;
        self.scale = st.scale as f32;
        self.growth_tracker = st.growth_tracker;
        changed
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::Sgd;

    /// torch's `_amp_update_scale_cpu_`, written out.
    fn torch_update(scale: &mut f32, tracker: &mut u64, inf: bool, s: &GradScaler) {
        if inf {
            *scale = (*scale as f64 * s.backoff_factor) as f32;
            *tracker = 0;
        } else {
            let successful = *tracker + 1;
            if successful == s.growth_interval {
                let new = (*scale as f64 * s.growth_factor) as f32;
                if new.is_finite() {
                    *scale = new;
                }
                *tracker = 0;
            } else {
                *tracker = successful;
            }
        }
    }

    #[test]
    fn update_follows_torch() {
        let s = GradScaler::default().growth_interval(3).init_scale(8.0);
        let mut ours = Scaler::new(s);
        let (mut scale, mut tracker) = (8.0f32, 0);
        let pattern = [false, false, false, true, false, true, true, false, false, false, false, false, false];
        let mut scales = vec![];
        for &inf in &pattern {
            ours.update(inf);
            torch_update(&mut scale, &mut tracker, inf, &s);
            assert_eq!((ours.scale, ours.growth_tracker), (scale, tracker));
            scales.push(scale);
        }
        assert_eq!(scales, [8., 8., 16., 8., 8., 4., 2., 2., 2., 4., 4., 4., 8.]);
    }

    #[test]
    fn growth_stops_at_f32_max() {
        let mut s = Scaler::new(GradScaler::default().init_scale(f32::MAX as f64 / 1.5).growth_interval(1));
        s.update(false);
        assert_eq!(s.scale, (f32::MAX as f64 / 1.5) as f32, "× 2 would overflow f32: kept");
        assert_eq!(s.growth_tracker, 0);
    }

    #[test]
    fn unscale_widens_divides_and_finds_non_finite() {
        let w = Var::ones(2, DType::F16, &Device::Cpu).unwrap();
        let opt = Sgd::new(vec![w.clone()], 0.1).unwrap();
        let s = Scaler::new(GradScaler::default().init_scale(1024.0));
        let mut grads = Gradients::new(vec![w.clone()]);
        grads.set(w.as_tensor(), Tensor::new(&[1024f32, 2.], &Device::Cpu).unwrap().to_dtype(DType::F16).unwrap());
        assert!(!s.unscale(&mut grads, &opt).unwrap());
        let g = grads.get(w.as_tensor()).unwrap();
        assert_eq!(g.dtype(), DType::F32);
        assert_eq!(g.to_vec1::<f32>().unwrap(), [1.0, 2.0 / 1024.0]);
        for bad in [f32::INFINITY, f32::NAN, f32::NEG_INFINITY] {
            grads.set(w.as_tensor(), Tensor::new(&[1f32, bad], &Device::Cpu).unwrap());
            assert!(s.unscale(&mut grads, &opt).unwrap(), "{bad}");
        }
    }

    #[test]
    fn settings_are_checked() {
        assert!(GradScaler::default().validate().is_ok());
        for (bad, what) in [
            (GradScaler::default().init_scale(0.0), "init_scale"),
            (GradScaler::default().init_scale(1e39), "init_scale"),
            (GradScaler::default().growth_factor(1.0), "growth_factor"),
            (GradScaler::default().backoff_factor(1.0), "backoff_factor"),
            (GradScaler::default().backoff_factor(0.0), "backoff_factor"),
            (GradScaler::default().growth_interval(0), "growth_interval"),
        ] {
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.contains(what) && e.contains("grad_scaler"), "{e}");
        }
        let st = Scaler::new(GradScaler::default()).state_dict();
        assert!(st.check().is_ok());
        assert!(GradScalerState { scale: -1.0, ..st }.check().unwrap_err().contains("scale must be"));
        assert!(GradScalerState { growth_tracker: 2000, ..st }.check().unwrap_err().contains("_growth_tracker"));
    }
}
