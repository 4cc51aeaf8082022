use candle_core::Tensor;
use candle_nn::VarMap;
use lightning::prelude::*;

#[lightning_module]
struct Model {
    vars: VarMap,
}

#[lightning_module]
impl Model {
    #[hook(on_train_epoch_ned)]
    fn summarize(&mut self) {}

    #[hook(trainig_step)]
    fn step(&mut self, batch: &(Tensor, Tensor)) -> Option<Tensor> {
        let _ = batch;
        None
    }
}

fn main() {}
