use candle_nn::VarMap;
use lightning::prelude::*;

#[lightning_module]
struct Model {
    vars: VarMap,
}

struct SkipEverything;

#[callback]
impl SkipEverything {
    // Lightning ignores a callback returning -1 here; we refuse to compile it.
    fn on_train_batch_start(&mut self) -> Flow {
        Flow::SkipEpoch
    }
}

fn main() {}
