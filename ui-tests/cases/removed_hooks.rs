use candle_nn::VarMap;
use lightning::prelude::*;

#[lightning_module]
struct Model {
    vars: VarMap,
}

#[lightning_module]
impl Model {
    fn training_epoch_end(&mut self) {}
    fn validation_epoch_end(&mut self) {}
    fn test_epoch_end(&mut self) {}
    fn training_step_end(&mut self) {}
    fn on_epoch_start(&mut self) {}
    fn on_epoch_end(&mut self) {}
    fn on_batch_start(&mut self) {}
    fn on_batch_end(&mut self) {}
    fn on_pretrain_routine_start(&mut self) {}
    fn on_pretrain_routine_end(&mut self) {}
    #[hook(training_batch_end)]
    fn after_batch(&mut self) {}
}

fn main() {}
