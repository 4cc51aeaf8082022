// A module's `*_dataloader` hook returns the loader itself; only a datamodule's returns an
// `Option` (a new user copies the datamodule's signature into the module).
use candle_core::Tensor;
use candle_nn::VarMap;
use lightning::prelude::*;

#[lightning_module]
struct Model {
    vars: VarMap,
}

#[lightning_module]
impl Model {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> lightning::Result<Tensor> {
        Ok(batch.0.sum_all()?)
    }

    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&self.vars, 0.1)
    }

    fn train_dataloader(&mut self) -> lightning::Result<Option<DataLoader>> {
        Ok(None)
    }
}

fn main() {}
