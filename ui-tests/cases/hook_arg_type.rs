use candle_core::Tensor;
use candle_nn::VarMap;
use lightning::prelude::*;

#[lightning_module]
struct Model {
    vars: VarMap,
}

#[lightning_module]
impl Model {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        batch.0.sum_all()
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&self.vars, 0.1)
    }
    fn predict_step(&mut self, batch: &(Tensor, Tensor), batch_idx: u32) -> candle_core::Result<Tensor> {
        let _ = batch_idx;
        batch.0.sum_all()
    }
    fn validation_step(&mut self, batch: (Tensor, Tensor)) -> candle_core::Result<Tensor> {
        batch.0.sum_all()
    }
}

fn main() {}
