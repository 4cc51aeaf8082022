//! Aggregations of any logged quantity: a (weighted) mean and a sum.

use candle_core::Tensor;

use super::input::{error, host};
use super::{sync, Metric};
use crate::dist::Collective;
use crate::Result;

/// The mean of every element given, each weighted 1, or by [`MeanMetric::update_weighted`].
///
/// ```
/// use lightning::metrics::{MeanMetric, Metric};
/// use candle_core::{Device, Tensor};
/// let mut mean = MeanMetric::new();
/// mean.update(&Tensor::new(&[1f32, 2.0], &Device::Cpu)?)?;
/// mean.update_weighted(&Tensor::new(&[4f32], &Device::Cpu)?, &Tensor::new(&[2f32], &Device::Cpu)?)?;
/// assert_eq!(mean.compute()?, 2.75);
/// # Ok::<(), lightning::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct MeanMetric {
    /// (Σ weight × value, Σ weight).
    state: [f64; 2],
}

impl MeanMetric {
    /// An empty mean (torchmetrics' `MeanMetric()`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `values` with their `weights` (same shape).
    pub fn update_weighted(&mut self, values: &Tensor, weights: &Tensor) -> Result<()> {
        if values.dims() != weights.dims() {
            let dims = (values.dims(), weights.dims());
            return Err(error("MeanMetric", format!("values {:?} and weights {:?} differ in shape", dims.0, dims.1)));
        }
        let (v, w) = (host(values)?, host(weights)?);
        self.state[0] += v.iter().zip(&w).map(|(v, w)| v * w).sum::<f64>();
        self.state[1] += w.iter().sum::<f64>();
        Ok(())
    }
}

impl Metric for MeanMetric {
    /// The values; each element weighs 1.
    type Input<'a> = &'a Tensor;
    type Output = f64;
    fn update(&mut self, values: &Tensor) -> Result<()> {
        let v = host(values)?;
        self.state[0] += v.iter().sum::<f64>();
        self.state[1] += v.len() as f64;
        Ok(())
    }
    fn compute(&self) -> Result<f64> {
        if self.state[1] == 0.0 {
            return Err(error("MeanMetric", "computed before any update (or with zero total weight)"));
        }
        Ok(self.state[0] / self.state[1])
    }
    fn reset(&mut self) {
        self.state = [0.0; 2];
    }
    fn sync(&mut self, world: &dyn Collective) -> Result<()> {
        sync::sum(world, &mut self.state)
    }
}

/// The sum of every element given (0 before any update).
#[derive(Clone, Debug, Default)]
pub struct SumMetric {
    sum: [f64; 1],
}

impl SumMetric {
    /// A sum of 0 (torchmetrics' `SumMetric()`).
    pub fn new() -> Self {
        Self::default()
    }
}

impl Metric for SumMetric {
    /// The values to add.
    type Input<'a> = &'a Tensor;
    type Output = f64;
    fn update(&mut self, values: &Tensor) -> Result<()> {
        self.sum[0] += host(values)?.iter().sum::<f64>();
        Ok(())
    }
    fn compute(&self) -> Result<f64> {
        Ok(self.sum[0])
    }
    fn reset(&mut self) {
        self.sum = [0.0];
    }
    fn sync(&mut self, world: &dyn Collective) -> Result<()> {
        sync::sum(world, &mut self.sum)
    }
}
