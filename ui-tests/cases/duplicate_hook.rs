use candle_nn::VarMap;
use lightning::prelude::*;

#[lightning_module]
struct Model {
    vars: VarMap,
}

#[lightning_module]
impl Model {
    fn on_train_epoch_end(&mut self) {}
    #[hook(on_train_epoch_end)]
    fn also_at_epoch_end(&mut self) {}
}

fn main() {}
