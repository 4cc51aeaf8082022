use candle_core::Tensor;
use candle_nn::VarMap;
use lightning::prelude::*;
use lightning::tuner::BatchSizeFinder;

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
    fn train_dataloader(&mut self) -> lightning::Result<DataLoader> {
        let x = Tensor::zeros((8, 2), candle_core::DType::F32, &candle_core::Device::Cpu)?;
        DataLoader::new(x.clone(), x, 4)
    }
}

// The finder sets the module's batch size: a module without `BatchSizeAttr` cannot take it.
fn main() -> lightning::Result<()> {
    let mut model = Model { vars: VarMap::new() };
    let mut trainer = Trainer::builder().callbacks((BatchSizeFinder::default(),)).build()?;
    trainer.fit(&mut model, Data::module())?;
    Ok(())
}
