use candle_nn::VarMap;
use lightning::prelude::*;

#[lightning_module]
struct Model {
    vars: VarMap,
}

#[lightning_module]
impl Model {
    // a typo of a hook, silently never called in Lightning
    fn on_train_epoch_ned(&mut self) {}
    // looks like a hook, is none
    fn on_gradient_explosion(&mut self) {}
    // fine: marked as an ordinary method
    #[not_hook]
    fn on_my_own_schedule(&mut self) {}
    // fine: an ordinary name
    fn accuracy(&self) -> f64 {
        1.0
    }
}

fn main() {}
