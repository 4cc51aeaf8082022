// `Data::module()` for `test` needs the module's `test_dataloader`.
use candle_nn::VarMap;
use lightning::prelude::*;

#[lightning_module]
struct Model {
    vars: VarMap,
}

#[lightning_module]
impl Model {
    fn test_step(&mut self) -> lightning::Result<()> {
        Ok(())
    }
}

fn main() -> lightning::Result<()> {
    let mut model = Model { vars: VarMap::new() };
    let mut trainer = Trainer::builder().build()?;
    trainer.test(&mut model, Data::module())?;
    Ok(())
}
