// The struct is marked, its impl is not: the first error says the impl lacks the attribute.
use candle_core::Tensor;
use candle_nn::VarMap;
use lightning::prelude::*;

#[lightning_module]
struct Model {
    vars: VarMap,
}

impl Model {
    #[allow(dead_code)]
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> lightning::Result<Tensor> {
        Ok(batch.0.sum_all()?)
    }
}

fn main() -> lightning::Result<()> {
    let mut trainer = Trainer::builder().build()?;
    let x = Tensor::zeros((2, 1), candle_core::DType::F32, &candle_core::Device::Cpu)?;
    trainer.fit(&mut Model { vars: VarMap::new() }, Data::loader(DataLoader::new(x.clone(), x, 1)?))?;
    Ok(())
}
