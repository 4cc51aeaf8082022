// Hooks read the trainer's counters; only the trainer writes them. A hook asks to stop with
// `request_stop()`.
use candle_nn::VarMap;
use lightning::prelude::*;

#[lightning_module]
struct Model {
    vars: VarMap,
}

#[lightning_module]
impl Model {
    fn on_train_epoch_end(&mut self, trainer: &mut TrainerState) {
        trainer.global_step = 0;
        trainer.should_stop = true;
    }
}

fn main() {}
