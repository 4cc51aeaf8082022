use candle_nn::VarMap;
use lightning::prelude::*;

#[lightning_module]
struct Model {
    vars: VarMap,
}

impl Model {
    #[hook(on_train_epoch_end)]
    fn epoch_done(&mut self) {}
}

fn main() {}
