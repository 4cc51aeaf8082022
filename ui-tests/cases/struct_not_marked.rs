use candle_nn::VarMap;
use lightning::prelude::*;

struct Forgot {
    vars: VarMap,
}

#[lightning_module]
impl Forgot {
    fn on_fit_start(&mut self) {}
}

fn main() {}
