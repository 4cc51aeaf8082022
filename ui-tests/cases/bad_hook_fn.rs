use candle_nn::VarMap;
use lightning::prelude::*;

#[lightning_module]
struct Model {
    vars: VarMap,
}

#[lightning_module]
impl Model {
    async fn on_fit_start(&mut self) {}
    const fn on_fit_end(&self) {}
    fn on_train_start<T: Default>(&mut self) {}
    fn on_train_end(self) {}
    fn setup() {}
}

fn main() {}
