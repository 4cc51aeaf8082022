//! Reproducible parameter initialisation.
//!
//! candle cannot seed its CPU generator (`Device::set_seed` fails on the CPU), so layers
//! built with `VarBuilder::from_varmap` start from different weights on every run. A
//! `VarBuilder` from [`seeded_var_builder`] draws each new variable from its own seeded
//! generator instead, with candle's distributions (constant, uniform, normal, Kaiming), so
//! the same seed builds the same model on any device.

use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::{init::NormalOrUniform, var_builder::SimpleBackend, Init, VarBuilder, VarMap};
use rand::{rngs::StdRng, Rng, SeedableRng};

struct Seeded {
    vars: VarMap,
    rng: Mutex<StdRng>,
}

fn sample(init: Init, n: usize, shape: &Shape, rng: &mut StdRng) -> Vec<f64> {
    let normal = |rng: &mut StdRng, mean: f64, std: f64| {
        // Box–Muller
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random();
        mean + std * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    };
    match init {
        Init::Const(c) => vec![c; n],
        Init::Uniform { lo, up } => (0..n).map(|_| lo + (up - lo) * rng.random::<f64>()).collect(),
        Init::Randn { mean, stdev } => (0..n).map(|_| normal(rng, mean, stdev)).collect(),
        Init::Kaiming { dist, fan, non_linearity } => {
            let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
            match dist {
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    (0..n).map(|_| -bound + 2.0 * bound * rng.random::<f64>()).collect()
                }
                NormalOrUniform::Normal => (0..n).map(|_| normal(rng, 0.0, std)).collect(),
            }
        }
    }
}

impl SimpleBackend for Seeded {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        if !self.contains_tensor(name) {
            let values = {
                let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
                sample(h, s.elem_count(), &s, &mut rng)
            };
            let t = Tensor::from_vec(values, s.clone(), dev)?.to_dtype(dtype)?;
            self.vars.data().lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_owned(), Var::from_tensor(&t)?);
        }
        // the VarMap checks the shape of an existing variable and returns it
        self.vars.get(s, name, h, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("`{name}`: a seeded VarBuilder creates variables, use `get` with a shape")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars.data().lock().unwrap_or_else(|p| p.into_inner()).contains_key(name)
    }
}

/// A `VarBuilder` that creates its variables in `vars` from a generator seeded with `seed`.
///
/// ```
/// use candle_core::{DType, Device};
/// use candle_nn::VarMap;
/// # fn main() -> candle_core::Result<()> {
/// let build = |seed| -> candle_core::Result<Vec<f32>> {
///     let vars = VarMap::new();
///     let layer = candle_nn::linear(4, 2, lightning::seeded_var_builder(&vars, seed, DType::F32, &Device::Cpu))?;
///     layer.weight().flatten_all()?.to_vec1()
/// };
/// assert_eq!(build(7)?, build(7)?);
/// assert_ne!(build(7)?, build(8)?);
/// # Ok(()) }
/// ```
pub fn seeded_var_builder(vars: &VarMap, seed: u64, dtype: DType, device: &Device) -> VarBuilder<'static> {
    let backend = Seeded { vars: vars.clone(), rng: Mutex::new(StdRng::seed_from_u64(seed)) };
    VarBuilder::from_backend(Box::new(backend), dtype, device.clone())
}

/// A `VarMap` holding variables made by hand, under their names: the module's parameters
/// when it does not build them through a `VarBuilder`. Every variable an optimizer trains
/// must be in the module's `VarMap` (`fit` refuses others), so that checkpoints save it,
/// device moves rebind it and DDP broadcasts it.
///
/// ```
/// use candle_core::{DType, Device, Var};
/// let w = Var::zeros((3, 1), DType::F32, &Device::Cpu)?;
/// let vars = lightning::var_map([("w", &w)]);
/// assert_eq!(vars.all_vars().len(), 1);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn var_map<'a>(named: impl IntoIterator<Item = (&'a str, &'a Var)>) -> VarMap {
    let vars = VarMap::new();
    {
        let mut data = vars.data().lock().unwrap_or_else(|p| p.into_inner());
        for (name, var) in named {
            data.insert(name.to_string(), var.clone());
        }
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kaiming_bounds_and_existing_variables() {
        let vars = VarMap::new();
        let vb = seeded_var_builder(&vars, 1, DType::F32, &Device::Cpu);
        let l = candle_nn::linear(100, 50, vb.clone()).unwrap();
        // candle's linear: Kaiming normal weights (fan-in 100, ReLU gain: std sqrt(2)/10),
        // uniform biases within 1/sqrt(100)
        let w = l.weight().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let std = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
        assert!((std - 2f32.sqrt() / 10.0).abs() < 0.01, "{std}");
        let b = l.bias().unwrap().to_vec1::<f32>().unwrap();
        assert!(b.iter().all(|v| v.abs() <= 0.1) && b.iter().any(|v| v.abs() > 0.08), "{b:?}");
        // asking again returns the same variable
        let again = candle_nn::linear(100, 50, vb).unwrap();
        assert_eq!(again.weight().flatten_all().unwrap().to_vec1::<f32>().unwrap(), w);
        assert_eq!(vars.all_vars().len(), 2);
    }
}
