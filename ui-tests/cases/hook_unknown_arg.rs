use candle_core::Tensor;
use candle_nn::VarMap;
use lightning::prelude::*;

#[lightning_module]
struct Model {
    vars: VarMap,
}

#[lightning_module]
impl Model {
    fn training_step(&mut self, batch: &(Tensor, Tensor), batch_index: usize) -> candle_core::Result<Tensor> {
        let _ = batch_index;
        batch.0.sum_all()
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&self.vars, 0.1)
    }
}

fn main() -> lightning::Result<()> {
    let mut model = Model { vars: VarMap::new() };
    let mut trainer = Trainer::builder().build()?;
    let x = Tensor::zeros((4, 1), candle_core::DType::F32, &candle_core::Device::Cpu)?;
    trainer.fit(&mut model, Data::loader(DataLoader::new(x.clone(), x, 2)?))?;
    Ok(())
}
