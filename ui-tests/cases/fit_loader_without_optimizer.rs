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

fn main() -> lightning::Result<()> {
    let mut model = Model { vars: VarMap::new() };
    let mut trainer = Trainer::builder().build()?;
    let x = Tensor::zeros((4, 1), candle_core::DType::F32, &candle_core::Device::Cpu)?;
    trainer.fit(&mut model, Data::loader(DataLoader::new(x.clone(), x.clone(), 2)?))?;
    trainer.fit(&mut model, Data::loader(DataLoader::new(x.clone(), x, 2)?))?;
    Ok(())
}
