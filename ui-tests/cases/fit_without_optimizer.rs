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
}

fn main() {
    let mut model = Model { vars: VarMap::new() };
    let mut trainer = Trainer::builder().build().unwrap();
    let _ = trainer.fit(&mut model, Data::module());
}
