// `manual` in `training_step` without `#[lightning_module(manual_optimization)]`.
use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use lightning::prelude::*;

#[lightning_module]
struct Model {
    vars: VarMap,
    w: Var,
}

#[lightning_module]
impl Model {
    fn training_step(
        &mut self,
        batch: &(Tensor, Tensor),
        manual: &mut impl ManualOptimization<Self>,
    ) -> lightning::Result<Tensor> {
        manual.zero_grad()?;
        Ok(batch.0.matmul(self.w.as_tensor())?.sum_all()?)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&self.vars, 0.1)
    }
}

fn main() {}
