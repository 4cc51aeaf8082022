//! `Trainer::threads` and the size-based default (one test: it changes the process
//! environment that candle reads).

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarMap};
use lightning::prelude::*;

#[lightning_module]
struct Wide {
    vars: VarMap,
    l: Linear,
}

#[lightning_module]
impl Wide {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        self.l.forward(&batch.0)?.sum_all()
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&self.vars, 0.1)
    }
}

fn wide(n: usize) -> Wide {
    let vars = VarMap::new();
    let l = candle_nn::linear_no_bias(n, n, seeded_var_builder(&vars, 0, DType::F32, &Device::Cpu)).unwrap();
    Wide { vars, l }
}

fn run(model: &mut Wide, threads: Option<usize>) -> Option<String> {
    let n = model.l.weight().dim(1).unwrap();
    let x = Tensor::zeros((2, n), DType::F32, &Device::Cpu).unwrap();
    let b = Trainer::builder().accelerator(Accelerator::Cpu).enable_checkpointing(false).max_epochs(1);
    let b = match threads {
        Some(t) => b.threads(t),
        None => b,
    };
    b.build().unwrap().fit(model, Data::loader(DataLoader::new(x.clone(), x, 2).unwrap())).unwrap();
    std::env::var("RAYON_NUM_THREADS").ok()
}

#[test]
fn threads_follow_the_flag_then_the_model_size() {
    std::env::remove_var("RAYON_NUM_THREADS");
    assert_eq!(run(&mut wide(8), None).as_deref(), Some("1"), "a small model trains on one thread");
    assert_eq!(run(&mut wide(8), Some(2)).as_deref(), Some("2"), "the flag wins");
    assert_eq!(run(&mut wide(8), None).as_deref(), Some("2"), "a setting already made is kept");
    std::env::remove_var("RAYON_NUM_THREADS");
    let side = (lightning::SMALL_MODEL_PARAMS as f64).sqrt() as usize + 1;
    let cores = std::thread::available_parallelism().unwrap().get().to_string();
    assert_eq!(run(&mut wide(side), None), Some(cores), "a large model uses every core");
}
