// `.val(..)` belongs to `fit`: `validate` takes one loader.
use candle_core::Tensor;
use candle_nn::VarMap;
use lightning::prelude::*;

#[lightning_module]
struct Model {
    vars: VarMap,
}

#[lightning_module]
impl Model {
    fn validation_step(&mut self) -> lightning::Result<()> {
        Ok(())
    }
}

fn main() -> lightning::Result<()> {
    let mut model = Model { vars: VarMap::new() };
    let mut trainer = Trainer::builder().build()?;
    let x = Tensor::zeros((4, 1), candle_core::DType::F32, &candle_core::Device::Cpu)?;
    let loader = DataLoader::new(x.clone(), x.clone(), 2)?;
    trainer.validate(&mut model, Data::loader(loader.clone()).val(loader))?;
    Ok(())
}
