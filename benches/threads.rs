//! How many CPU threads train an MLP fastest, by model size: 1 thread against all cores,
//! in one process (candle reads RAYON_NUM_THREADS at every matmul). Prints samples/s and
//! the ratio; `Trainer::threads` defaults from these numbers.
//!
//! ```text
//! cargo bench --bench threads
//! ```

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{loss, Linear, Module, VarMap};
use lightning::prelude::*;

#[lightning_module]
struct Mlp {
    vars: VarMap,
    l1: Linear,
    l2: Linear,
}

#[lightning_module]
impl Mlp {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        loss::cross_entropy(&self.l2.forward(&self.l1.forward(&batch.0)?.relu()?)?, &batch.1)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Adam> {
        Adam::new(&self.vars, AdamConfig::default())
    }
}

fn samples_per_sec(hidden: usize, threads: usize, n: usize) -> f64 {
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    let vars = VarMap::new();
    let vb = seeded_var_builder(&vars, 0, DType::F32, &Device::Cpu);
    let mut m = Mlp {
        l1: candle_nn::linear(784, hidden, vb.pp("l1")).unwrap(),
        l2: candle_nn::linear(hidden, 10, vb.pp("l2")).unwrap(),
        vars,
    };
    let x = Tensor::rand(0f32, 1., (n, 784), &Device::Cpu).unwrap();
    let y = Tensor::arange(0u32, n as u32, &Device::Cpu).unwrap().affine(1.0, 0.0).unwrap();
    let y = (y.to_dtype(DType::F32).unwrap() / 10.0).unwrap().floor().unwrap();
    let y = (y.clone() - (y / 10.0).unwrap().floor().unwrap().affine(10.0, 0.0).unwrap())
        .unwrap()
        .to_dtype(DType::U32)
        .unwrap();
    let data = DataLoader::new(x, y, 64).unwrap();
    let mut t =
        Trainer::builder().accelerator(Accelerator::Cpu).enable_checkpointing(false).max_epochs(1).build().unwrap();
    let start = Instant::now();
    t.fit(&mut m, Data::loader(data)).unwrap();
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("{cores} cores; MLP 784-H-10, batch 64, Adam, one epoch");
    println!("{:>6} {:>10} {:>14} {:>14} {:>8}", "H", "params", "1 thread/s", format!("{cores} threads/s"), "ratio");
    for (hidden, n) in [(32, 16384), (128, 16384), (512, 8192), (2048, 4096)] {
        samples_per_sec(hidden, 1, 1024); // warm-up
        let one = samples_per_sec(hidden, 1, n);
        let all = samples_per_sec(hidden, cores, n);
        let params = 784 * hidden + hidden + hidden * 10 + 10;
        println!("{hidden:>6} {params:>10} {one:>14.0} {all:>14.0} {:>8.2}", all / one);
    }
}
