//! CNN training speed: the issue's small convnet (conv 1→32 3×3, ReLU, max-pool 2, conv 32→64
//! 3×3, ReLU, max-pool 2, fc 1600→128→10; batch 64, Adam 1e-3) on Fashion-MNIST, built on
//! candle-nn's layers (and candle's pool) and on `lightning::nn`'s, in hand-written loops with
//! candle-nn's AdamW, and on `lightning::nn`'s in the trainer (with the runtime's Adam). Prints samples/s and the ratios, measured in the same
//! process, then a per-layer profile of one batch.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo bench --bench cnn [-- BATCHES] [--lightning SAMPLES_PER_S] [--ours-only | --profile-only]
//! ```
//! Reads /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist); without it, the
//! embedded MNIST sample, and says so.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{loss, Conv2dConfig, Linear, Optimizer as _, ParamsAdamW, VarBuilder, VarMap};
use lightning::data::mnist;
use lightning::nn::MaxPool2d;
use lightning::prelude::*;

const BATCH: usize = 64;

/// The whole network, on either implementation.
trait Blocks: Sized {
    fn new(vb: VarBuilder) -> candle_core::Result<Self>;
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor>;
}

/// candle-nn's conv and linear layers, candle's ReLU and max-pool.
struct CandleBlocks(candle_nn::Conv2d, candle_nn::Conv2d, Linear, Linear);

impl Blocks for CandleBlocks {
    fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let cfg = Conv2dConfig::default();
        Ok(CandleBlocks(
            candle_nn::conv2d(1, 32, 3, cfg, vb.pp("c1"))?,
            candle_nn::conv2d(32, 64, 3, cfg, vb.pp("c2"))?,
            candle_nn::linear(1600, 128, vb.pp("fc1"))?,
            candle_nn::linear(128, 10, vb.pp("fc2"))?,
        ))
    }
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.0.forward(x)?.relu()?.max_pool2d(2)?;
        let x = self.1.forward(&x)?.relu()?.max_pool2d(2)?.flatten_from(1)?;
        self.3.forward(&self.2.forward(&x)?.relu()?)
    }
}

/// `lightning::nn`'s layers, the ReLU fused into the pool.
#[derive(Relocate)]
struct FastBlocks(
    lightning::nn::Conv2d,
    lightning::nn::Conv2d,
    MaxPool2d,
    lightning::nn::Linear,
    lightning::nn::Linear,
);

impl Blocks for FastBlocks {
    fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let cfg = Conv2dConfig::default();
        Ok(FastBlocks(
            lightning::nn::conv2d(1, 32, 3, cfg, vb.pp("c1"))?,
            lightning::nn::conv2d(32, 64, 3, cfg, vb.pp("c2"))?,
            MaxPool2d::new(2).with_relu(),
            lightning::nn::linear(1600, 128, vb.pp("fc1"))?,
            lightning::nn::linear(128, 10, vb.pp("fc2"))?,
        ))
    }
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.2.forward(&self.0.forward(x)?)?;
        let x = self.2.forward(&self.1.forward(&x)?)?.flatten_from(1)?;
        self.4.forward(&self.3.forward(&x)?.relu()?)
    }
}

#[derive(Relocate)]
struct Cnn<B> {
    blocks: B,
}

impl<B: Blocks> Cnn<B> {
    fn new(vars: &VarMap) -> candle_core::Result<Self> {
        Ok(Cnn { blocks: B::new(lightning::seeded_var_builder(vars, 1, DType::F32, &Device::Cpu))? })
    }
    fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.blocks.forward(&x.reshape((x.dim(0)?, 1, 28, 28))?)
    }
}

/// A hand-written loop over `batches` batches with candle-nn's AdamW (no weight decay, so Adam);
/// returns samples/s and the last loss.
fn hand_loop<B: Blocks>(x: &Tensor, y: &Tensor, batches: usize) -> candle_core::Result<(f64, f32)> {
    let vars = VarMap::new();
    let model = Cnn::<B>::new(&vars)?;
    let mut opt =
        candle_nn::AdamW::new(vars.all_vars(), ParamsAdamW { lr: 1e-3, weight_decay: 0.0, ..Default::default() })?;
    let start = Instant::now();
    let mut last = 0.0;
    for b in 0..batches {
        let (xb, yb) = (x.narrow(0, b * BATCH, BATCH)?, y.narrow(0, b * BATCH, BATCH)?);
        let loss = loss::cross_entropy(&model.logits(&xb)?, &yb)?;
        opt.backward_step(&loss)?;
        if b + 1 == batches {
            last = loss.to_scalar::<f32>()?;
        }
    }
    Ok(((batches * BATCH) as f64 / start.elapsed().as_secs_f64(), last))
}

#[lightning_module]
struct Module_ {
    vars: VarMap,
    net: Cnn<FastBlocks>,
}

#[lightning_module]
impl Module_ {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        loss::cross_entropy(&self.net.logits(&batch.0)?, &batch.1)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Adam> {
        Adam::new(&self.vars, AdamConfig { lr: 1e-3, ..Default::default() })
    }
}

/// The trainer (no logger, bar, summary or checkpoint) on `lightning::nn`'s layers.
fn trainer(x: &Tensor, y: &Tensor, batches: usize) -> lightning::Result<f64> {
    let vars = VarMap::new();
    let mut module = Module_ { net: Cnn::new(&vars)?, vars };
    let loader = DataLoader::new(x.narrow(0, 0, batches * BATCH)?, y.narrow(0, 0, batches * BATCH)?, BATCH)?;
    let mut trainer = Trainer::builder()
        .max_epochs(1)
        .accelerator(Accelerator::Cpu)
        .enable_checkpointing(false)
        .enable_logger(false)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .build()?;
    let start = Instant::now();
    trainer.fit(&mut module, Data::loader(loader))?;
    Ok((batches * BATCH) as f64 / start.elapsed().as_secs_f64())
}

/// Milliseconds per call of `f`, the best of `reps`.
fn time_ms(reps: usize, mut f: impl FnMut() -> candle_core::Result<()>) -> candle_core::Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(best)
}

/// Forward and forward+backward time of each layer for one batch, both implementations.
fn profile() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let cfg = Conv2dConfig::default();
    let var = |shape: &[usize]| Var::from_tensor(&Tensor::randn(0f32, 0.1, shape, &dev)?);
    let x1 = Tensor::randn(0f32, 1.0, (BATCH, 1, 28, 28), &dev)?;
    let x2 = var(&[BATCH, 32, 13, 13])?;
    let p1 = var(&[BATCH, 32, 26, 26])?;
    let p2 = var(&[BATCH, 64, 11, 11])?;
    let (w1, b1, w2, b2) = (var(&[32, 1, 3, 3])?, var(&[32])?, var(&[64, 32, 3, 3])?, var(&[64])?);
    let candle1 = candle_nn::Conv2d::new(w1.as_tensor().clone(), Some(b1.as_tensor().clone()), cfg);
    let candle2 = candle_nn::Conv2d::new(w2.as_tensor().clone(), Some(b2.as_tensor().clone()), cfg);
    let fast1 = lightning::nn::Conv2d::from(candle1.clone());
    let fast2 = lightning::nn::Conv2d::from(candle2.clone());
    let pool = MaxPool2d::new(2).with_relu();
    let fb = |f: &dyn Fn() -> candle_core::Result<Tensor>| -> candle_core::Result<(f64, f64)> {
        Ok((
            time_ms(10, || f().map(drop))?,
            time_ms(10, || {
                let y = f()?;
                (y.sqr()?.sum_all()?).backward().map(drop)
            })?,
        ))
    };
    // (layer, candle-nn (fwd, fwd+bwd), ours (fwd, fwd+bwd))
    type Row<'a> = (&'a str, (f64, f64), (f64, f64));
    let rows: [Row; 4] = [
        ("conv1 (1→32, 28×28)", fb(&|| candle1.forward(&x1))?, fb(&|| fast1.forward(&x1))?),
        ("ReLU + max-pool after conv1", fb(&|| p1.relu()?.max_pool2d(2))?, fb(&|| pool.forward(&p1))?),
        ("conv2 (32→64, 13×13)", fb(&|| candle2.forward(&x2))?, fb(&|| fast2.forward(&x2))?),
        ("ReLU + max-pool after conv2", fb(&|| p2.relu()?.max_pool2d(2))?, fb(&|| pool.forward(&p2))?),
    ];
    println!("\nper layer, one batch of {BATCH}, best of 10 (ms; the backward times include a square and a sum):");
    println!("| layer | candle-nn forward | ours forward | candle-nn fwd+bwd | ours fwd+bwd |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, c, o) in rows {
        println!("| {name} | {:.2} | {:.2} | {:.2} | {:.2} |", c.0, o.0, c.1, o.1);
    }
    Ok(())
}

fn main() -> lightning::Result<()> {
    // the first bare number (cargo adds `--bench` to the arguments)
    let args: Vec<String> = std::env::args().skip(1).collect();
    let batches: usize = args
        .iter()
        .enumerate()
        .find(|(i, a)| a.parse::<usize>().is_ok() && (*i == 0 || args[i - 1] != "--lightning"))
        .and_then(|(_, a)| a.parse().ok())
        .unwrap_or(100);
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    let data = if dir.join("train-images-idx3-ubyte.gz").exists() {
        println!("data: Fashion-MNIST from {}", dir.display());
        mnist::load_dir(dir)?
    } else {
        println!("data: {} missing, so the embedded MNIST sample, repeated", dir.display());
        let sample = [
            &include_bytes!("../examples/data/mnist-sample/train-images-idx3-ubyte.gz")[..],
            include_bytes!("../examples/data/mnist-sample/train-labels-idx1-ubyte.gz"),
            include_bytes!("../examples/data/mnist-sample/t10k-images-idx3-ubyte.gz"),
            include_bytes!("../examples/data/mnist-sample/t10k-labels-idx1-ubyte.gz"),
        ];
        mnist::from_bytes(sample, "embedded sample")?
    };
    let need = batches * BATCH;
    let reps = need.div_ceil(data.train.len());
    let x = Tensor::cat(&vec![data.train.images()?; reps], 0)?.narrow(0, 0, need)?;
    let y = Tensor::cat(&vec![data.train.labels.clone(); reps], 0)?.narrow(0, 0, need)?;
    println!(
        "{batches} batches of {BATCH}, threads: {} (pin with RAYON_NUM_THREADS=1)",
        candle_core::utils::get_num_threads()
    );
    if std::env::args().any(|a| a == "--profile-only") {
        profile()?;
        return Ok(());
    }
    if std::env::args().any(|a| a == "--ours-only") {
        // for profilers: only the hand loop on lightning::nn's layers
        let (fast, _) = hand_loop::<FastBlocks>(&x, &y, batches)?;
        println!("hand loop, lightning::nn layers: {fast:.0} samples/s");
        return Ok(());
    }
    let (candle, candle_loss) = hand_loop::<CandleBlocks>(&x, &y, batches)?;
    let (fast, fast_loss) = hand_loop::<FastBlocks>(&x, &y, batches)?;
    let ours = trainer(&x, &y, batches)?;
    println!("| variant | samples/s | ratio to candle-nn | last loss |");
    println!("| --- | --- | --- | --- |");
    println!("| hand loop, candle-nn layers | {candle:.0} | 1.00 | {candle_loss:.4} |");
    println!("| hand loop, lightning::nn layers | {fast:.0} | {:.2} | {fast_loss:.4} |", fast / candle);
    println!("| trainer, lightning::nn layers | {ours:.0} | {:.2} | |", ours / candle);
    // PyTorch Lightning's figure: today's from `pytorch_reference.py --only cnn` when given,
    // else the one the issue measured on this kind of machine
    let lightning = std::env::args().skip_while(|a| a != "--lightning").nth(1).and_then(|v| v.parse::<f64>().ok());
    match lightning {
        Some(l) => println!("trainer vs PyTorch Lightning ({l:.0} samples/s, given): {:.2}×", ours / l),
        None => println!(
            "trainer vs PyTorch Lightning's 2,755 samples/s from the issue: {:.2}× (pass `--lightning N` with today's figure from scripts/bench/pytorch_reference.py --only cnn)",
            ours / 2755.0
        ),
    }
    profile()?;
    Ok(())
}
