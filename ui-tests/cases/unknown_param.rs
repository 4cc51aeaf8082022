use candle_nn::VarMap;
use lightning::prelude::*;

#[lightning_module]
struct Model {
    vars: VarMap,
}

#[lightning_module]
impl Model {
    fn on_train_batch_end(&mut self, output: &StepOutput, batch_index: usize) {
        let _ = (output, batch_index);
    }
}

struct Cb;

#[callback]
impl Cb {
    fn on_validation_end(&mut self, metrics: &Vec<f64>) {
        let _ = metrics;
    }
}

fn main() {}
