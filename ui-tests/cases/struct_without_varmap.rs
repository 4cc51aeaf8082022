// A module struct without its `VarMap`: one error at the struct, and none at the impl or the
// `fit` call (the struct macro still implements the marker the impl needs).
use candle_core::Tensor;
use lightning::prelude::*;

#[lightning_module]
struct NoParams {
    hidden: usize,
}

#[lightning_module]
impl NoParams {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> lightning::Result<Tensor> {
        Ok(batch.0.sum_all()?)
    }

    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&lightning::candle_nn::VarMap::new(), 0.1)
    }
}

fn main() -> lightning::Result<()> {
    let mut trainer = Trainer::builder().build()?;
    let x = Tensor::zeros((2, 1), candle_core::DType::F32, &candle_core::Device::Cpu)?;
    trainer.fit(&mut NoParams { hidden: 1 }, Data::loader(DataLoader::new(x.clone(), x, 1)?))?;
    Ok(())
}
