//! Epoch throughput: one epoch of the MNIST MLP (784-128-10, ReLU, Adam lr 1e-3, batch 64,
//! cross-entropy, shuffled) on the 60,000 Fashion-MNIST training images, by a hand-written
//! candle loop on candle-nn's layers and AdamW (the baseline), by the trainer bare, by the
//! trainer with the default batteries (progress bar, CSV logger, a checkpoint at epoch end),
//! and the CNN of `benches/cnn.rs` in the trainer. The trainer's models use `lightning::nn`'s
//! layers and the runtime's (fused) Adam, as a user of this crate writes them. Prints samples/s and the ratios to the baseline,
//! measured in the same process, and each run's test accuracy.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo bench --bench epoch [-- --no-cnn | --only hand|bare|batteries|cnn] [--batch N]
//! ```
//! Beside samples/s it prints GFLOP/s (the FLOPs of a training step per sample are known for
//! each model) and the share of one core's FP32 peak, measured first with tight loops of
//! independent FMAs: AVX2, and AVX-512 where the CPU has it (the larger is the peak).
//! Reads /usr/share/datasets/fashion-mnist; without it, the embedded MNIST sample repeated to
//! 60,000 images, and says so.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{loss, Conv2dConfig, Linear, Optimizer as _, ParamsAdamW, VarBuilder, VarMap};
use lightning::data::mnist;
use lightning::prelude::*;

/// The batch size: `--batch N`, default 64.
fn batch() -> usize {
    static B: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *B.get_or_init(|| std::env::args().skip_while(|a| a != "--batch").nth(1).and_then(|b| b.parse().ok()).unwrap_or(64))
}

#[path = "common/peak.rs"]
mod peak;

/// 784 → 128 → 10, or the CNN.
trait Net: Sized + lightning::Relocate + 'static {
    const NAME: &'static str;
    /// FLOPs of one training step per sample: forward, weight gradients, and the input
    /// gradients of every layer but the first (2 FLOPs a multiply-add).
    const FLOPS: f64;
    fn new(vb: VarBuilder) -> candle_core::Result<Self>;
    fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor>;
}

/// A fully connected layer: candle-nn's, or `lightning::nn`'s.
trait Dense: Module + lightning::Relocate + Sized + 'static {
    fn new(i: usize, o: usize, vb: VarBuilder) -> candle_core::Result<Self>;
}

impl Dense for Linear {
    fn new(i: usize, o: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        candle_nn::linear(i, o, vb)
    }
}

impl Dense for lightning::nn::Linear {
    fn new(i: usize, o: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        lightning::nn::linear(i, o, vb)
    }
}

#[derive(Relocate)]
struct Mlp<L>(L, L);

impl<L: Dense> Net for Mlp<L> {
    const NAME: &'static str = "MLP";
    // (784·128 + 128·10) MACs forward and again for the weight gradients, 128·10 for fc2's input gradient
    const FLOPS: f64 = 2.0 * (2.0 * (784.0 * 128.0 + 128.0 * 10.0) + 128.0 * 10.0);
    fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Mlp(L::new(784, 128, vb.pp("fc1"))?, L::new(128, 10, vb.pp("fc2"))?))
    }
    fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.1.forward(&self.0.forward(x)?.relu()?)
    }
}

/// The MLP as the hand loop builds it (candle-nn), and as our users do (`lightning::nn`).
type CandleMlp = Mlp<Linear>;
type OurMlp = Mlp<lightning::nn::Linear>;

#[derive(Relocate)]
struct Cnn(
    lightning::nn::Conv2d,
    lightning::nn::Conv2d,
    lightning::nn::MaxPool2d,
    lightning::nn::Linear,
    lightning::nn::Linear,
);

impl Net for Cnn {
    const NAME: &'static str = "CNN";
    // MACs: conv1 26²·32·9, conv2 11²·64·288, fc 1600·128 and 128·10; conv1 has no input gradient
    const FLOPS: f64 = {
        let (c1, c2, fc) = (26.0 * 26.0 * 32.0 * 9.0, 11.0 * 11.0 * 64.0 * 288.0, 1600.0 * 128.0 + 128.0 * 10.0);
        2.0 * (2.0 * (c1 + c2 + fc) + c2 + fc)
    };
    fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let cfg = Conv2dConfig::default();
        Ok(Cnn(
            lightning::nn::conv2d(1, 32, 3, cfg, vb.pp("c1"))?,
            lightning::nn::conv2d(32, 64, 3, cfg, vb.pp("c2"))?,
            lightning::nn::MaxPool2d::new(2).with_relu(),
            lightning::nn::linear(1600, 128, vb.pp("fc1"))?,
            lightning::nn::linear(128, 10, vb.pp("fc2"))?,
        ))
    }
    fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = x.reshape((x.dim(0)?, 1, 28, 28))?;
        let x = self.2.forward(&self.0.forward(&x)?)?;
        let x = self.2.forward(&self.1.forward(&x)?)?.flatten_from(1)?;
        self.4.forward(&self.3.forward(&x)?.relu()?)
    }
}

#[lightning_module]
struct Classifier<N: Net> {
    vars: VarMap,
    net: N,
}

#[lightning_module]
impl<N: Net> Classifier<N> {
    fn training_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        let loss = loss::cross_entropy(&self.net.logits(&batch.0)?, &batch.1)?;
        // as a Lightning user writes it: the bar and the logger show it (read back lazily)
        trainer.log_with("train_loss", &loss, Log::new().prog_bar(true))?;
        Ok(loss)
    }
    fn test_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<()> {
        trainer.log("test_acc", lightning::accuracy(&self.net.logits(&batch.0)?, &batch.1)?)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Adam> {
        Adam::new(&self.vars, AdamConfig { lr: 1e-3, ..Default::default() })
    }
}

fn classifier<N: Net>() -> lightning::Result<Classifier<N>> {
    let vars = VarMap::new();
    let net = N::new(lightning::seeded_var_builder(&vars, 7, DType::F32, &Device::Cpu))?;
    Ok(Classifier { vars, net })
}

/// Test accuracy of a network, in batches of 1,000.
fn accuracy<N: Net>(net: &N, x: &Tensor, y: &Tensor) -> lightning::Result<f64> {
    let mut correct = 0.0;
    for i in (0..x.dim(0)?).step_by(1000) {
        let n = 1000.min(x.dim(0)? - i);
        let acc = lightning::accuracy(&net.logits(&x.narrow(0, i, n)?)?, &y.narrow(0, i, n)?)?;
        correct += acc.to_dtype(DType::F64)?.to_scalar::<f64>()? * n as f64;
    }
    Ok(correct / x.dim(0)? as f64)
}

/// The baseline: a hand-written loop, candle-nn's AdamW without weight decay (Adam), the
/// batches gathered from a per-epoch permutation as a shuffling loader does.
fn hand_loop(x: &Tensor, y: &Tensor, test: (&Tensor, &Tensor)) -> lightning::Result<(f64, f64)> {
    let model = classifier::<CandleMlp>()?;
    let mut opt = candle_nn::AdamW::new(
        model.vars.all_vars(),
        ParamsAdamW { lr: 1e-3, weight_decay: 0.0, ..Default::default() },
    )?;
    let n = x.dim(0)?;
    // a fixed pseudo-random permutation (an LCG walk), made before the clock starts
    let perm: Vec<u32> = {
        let mut p: Vec<u32> = (0..n as u32).collect();
        let mut s = 42u64;
        for i in (1..n).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            p.swap(i, (s >> 33) as usize % (i + 1));
        }
        p
    };
    let start = Instant::now();
    let bs = batch();
    for b in 0..n / bs {
        let idx = Tensor::from_slice(&perm[b * bs..(b + 1) * bs], bs, &Device::Cpu)?;
        let (xb, yb) = (x.index_select(&idx, 0)?, y.index_select(&idx, 0)?);
        let loss = loss::cross_entropy(&model.net.logits(&xb)?, &yb)?;
        opt.backward_step(&loss)?;
    }
    let sps = (n / bs * bs) as f64 / start.elapsed().as_secs_f64();
    Ok((sps, accuracy(&model.net, test.0, test.1)?))
}

/// The trainer, bare or with the batteries; samples/s over `fit` and the test accuracy.
fn trainer<N: Net>(x: &Tensor, y: &Tensor, test: (&Tensor, &Tensor), batteries: bool) -> lightning::Result<(f64, f64)> {
    let mut model = classifier::<N>()?;
    let dir = tempfile::tempdir().map_err(|e| lightning::Error::msg(format!("temporary directory: {e}")))?;
    let mut t = Trainer::builder()
        .max_epochs(1)
        .accelerator(Accelerator::Cpu)
        .default_root_dir(dir.path())
        .enable_checkpointing(batteries)
        .enable_logger(batteries)
        .enable_progress_bar(batteries)
        .enable_model_summary(false)
        .build()?;
    let loader = DataLoader::new(x.clone(), y.clone(), batch())?.drop_last(true).shuffle(42);
    let start = Instant::now();
    t.fit(&mut model, Data::loader(loader))?;
    let sps = (x.dim(0)? / batch() * batch()) as f64 / start.elapsed().as_secs_f64();
    Ok((sps, accuracy(&model.net, test.0, test.1)?))
}

fn main() -> lightning::Result<()> {
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    let (data, source) = if dir.join("train-images-idx3-ubyte.gz").exists() {
        (mnist::load_dir(dir)?, format!("Fashion-MNIST from {}", dir.display()))
    } else {
        let sample = [
            &include_bytes!("../examples/data/mnist-sample/train-images-idx3-ubyte.gz")[..],
            include_bytes!("../examples/data/mnist-sample/train-labels-idx1-ubyte.gz"),
            include_bytes!("../examples/data/mnist-sample/t10k-images-idx3-ubyte.gz"),
            include_bytes!("../examples/data/mnist-sample/t10k-labels-idx1-ubyte.gz"),
        ];
        let d = mnist::from_bytes(sample, "embedded sample")?;
        (d, format!("{} missing: the embedded MNIST sample, repeated to 60,000 images", dir.display()))
    };
    let (train_images, test_images) = (data.train.images()?, data.test.images()?);
    let reps = 60_000usize.div_ceil(data.train.len());
    let x = Tensor::cat(&vec![train_images; reps], 0)?.narrow(0, 0, 60_000)?;
    let y = Tensor::cat(&vec![data.train.labels.clone(); reps], 0)?.narrow(0, 0, 60_000)?;
    let test = (&test_images, &data.test.labels);
    let peak = peak::peak();
    println!(
        "data: {source}; batch {}; threads: {}; one core's FP32 peak: {}",
        batch(),
        candle_core::utils::get_num_threads(),
        peak.as_ref().map_or("not measured (no AVX2/FMA)".into(), |p| p.to_string())
    );
    let peak = peak.map(|p| p.gflops);
    let of_peak = |sps: f64, flops: f64| {
        let g = sps * flops / 1e9;
        peak.map_or(format!("{g:.1} GFLOP/s"), |p| format!("{g:.1} GFLOP/s, {:.0}% of peak", 100.0 * g / p))
    };
    if let Some(only) = std::env::args().skip_while(|a| a != "--only").nth(1) {
        // for profilers: one variant
        let ((sps, acc), flops) = match only.as_str() {
            "hand" => (hand_loop(&x, &y, test)?, OurMlp::FLOPS),
            "bare" => (trainer::<OurMlp>(&x, &y, test, false)?, OurMlp::FLOPS),
            "batteries" => (trainer::<OurMlp>(&x, &y, test, true)?, OurMlp::FLOPS),
            _ => (trainer::<Cnn>(&x, &y, test, false)?, Cnn::FLOPS),
        };
        println!("{only}: {sps:.0} samples/s ({}), test accuracy {:.2}%", of_peak(sps, flops), 100.0 * acc);
        return Ok(());
    }
    // the MLP epoch takes about a second: best of two runs of each, interleaved
    let best = |a: (f64, f64), b: (f64, f64)| if b.0 > a.0 { b } else { a };
    let (mut hand, mut bare, mut batteries) = ((0.0, 0.0), (0.0, 0.0), (0.0, 0.0));
    for _ in 0..2 {
        hand = best(hand, hand_loop(&x, &y, test)?);
        bare = best(bare, trainer::<OurMlp>(&x, &y, test, false)?);
        batteries = best(batteries, trainer::<OurMlp>(&x, &y, test, true)?);
    }
    println!("\n| variant | samples/s | compute | ratio to the candle hand loop | test accuracy |");
    println!("| --- | --- | --- | --- | --- |");
    let row = |name: &str, (sps, acc): (f64, f64), flops: f64| {
        println!("| {name} | {sps:.0} | {} | {:.2} | {:.2}% |", of_peak(sps, flops), sps / hand.0, 100.0 * acc);
    };
    row("MLP, hand-written candle loop (candle-nn AdamW)", hand, OurMlp::FLOPS);
    row("MLP, trainer, bare", bare, OurMlp::FLOPS);
    row("MLP, trainer, progress bar + CSV logger + checkpoint", batteries, OurMlp::FLOPS);
    if !std::env::args().any(|a| a == "--no-cnn") {
        let cnn = trainer::<Cnn>(&x, &y, test, false)?;
        row(&format!("{}, trainer with lightning::nn layers, bare", Cnn::NAME), cnn, Cnn::FLOPS);
    }
    Ok(())
}
