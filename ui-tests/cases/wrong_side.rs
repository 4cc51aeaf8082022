use candle_nn::VarMap;
use lightning::prelude::*;

#[lightning_module]
struct Model {
    vars: VarMap,
}

#[lightning_module]
impl Model {
    fn on_exception(&mut self) {}
    #[hook(on_sanity_check_start)]
    fn sanity(&mut self) {}
}

struct Printer;

#[callback]
impl Printer {
    fn training_step(&mut self) {}
    fn configure_optimizers(&mut self) {}
}

fn main() {}
