// A user crate without its own serde dependency (ui-tests has none) derives the
// `#[hparams]` struct's `Serialize` through `lightning::serde`.
use candle_core::Tensor;
use candle_nn::VarMap;
use lightning::prelude::*;
use lightning::HasParameters;

#[derive(lightning::serde::Serialize)]
#[serde(crate = "lightning::serde")]
struct Hparams {
    lr: f64,
    hidden: usize,
}

#[lightning_module]
struct Model {
    vars: VarMap,
    #[hparams]
    hparams: Hparams,
}

#[lightning_module]
impl Model {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        batch.0.sum_all()
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&self.vars, 0.1)
    }
}

fn main() {
    let model = Model { vars: VarMap::new(), hparams: Hparams { lr: 0.5, hidden: 8 } };
    let value = model.hyperparameters().unwrap().unwrap();
    assert_eq!(value, lightning::serde_json::json!({"lr": 0.5, "hidden": 8}));
}
