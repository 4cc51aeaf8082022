use candle_nn::VarMap;
use lightning::prelude::*;

#[lightning_module]
struct Model {
    vars: VarMap,
}

#[lightning_module]
impl Model {
    fn on_train_batch_end(&mut self, batch_idx: u32, outputs: StepOutput) {
        let _ = (batch_idx, outputs);
    }
}

fn main() {}
