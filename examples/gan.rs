//! A small GAN on the embedded MNIST sample, with manual optimization: `training_step`
//! steps the discriminator's and the generator's optimizers itself (Lightning's
//! `automatic_optimization = False`). Runs on a CPU in about 20 seconds.
//!
//! ```text
//! cargo run --release --example gan
//! ```

use candle_core::{DType, Device, Tensor};
use candle_nn::{loss::binary_cross_entropy_with_logit as bce, Linear, Module, VarMap};
use clap::Parser;
use lightning::data::mnist;
use lightning::prelude::*;
use rand::{Rng, SeedableRng};

const SAMPLE: [&[u8]; 4] = [
    include_bytes!("data/mnist-sample/train-images-idx3-ubyte.gz"),
    include_bytes!("data/mnist-sample/train-labels-idx1-ubyte.gz"),
    include_bytes!("data/mnist-sample/t10k-images-idx3-ubyte.gz"),
    include_bytes!("data/mnist-sample/t10k-labels-idx1-ubyte.gz"),
];
const LATENT: usize = 32;

/// Train a GAN on the embedded MNIST sample.
#[derive(Parser, Debug, Clone)]
pub struct Args {
    /// Epochs to train.
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// Images per batch (the last partial batch is dropped).
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Seeds the weights, the shuffling and the noise.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// A generator (latent → 784 pixels) and a discriminator (784 pixels → logit of "real"),
/// trained with manual optimization: one optimizer each.
#[lightning_module]
pub struct Gan {
    vars: VarMap,
    g1: Linear,
    g2: Linear,
    d1: Linear,
    d2: Linear,
    rng: rand::rngs::StdRng,
}

impl Gan {
    /// Both networks, with their weights and the noise generator seeded from `seed`.
    pub fn new(seed: u64, device: &Device) -> lightning::Result<Self> {
        let vars = VarMap::new();
        let vb = seeded_var_builder(&vars, seed, DType::F32, device);
        Ok(Gan {
            g1: candle_nn::linear(LATENT, 256, vb.pp("generator.l1"))?,
            g2: candle_nn::linear(256, 784, vb.pp("generator.l2"))?,
            d1: candle_nn::linear(784, 256, vb.pp("discriminator.l1"))?,
            d2: candle_nn::linear(256, 1, vb.pp("discriminator.l2"))?,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            vars,
        })
    }

    /// Images in [-1, 1] from latent vectors.
    pub fn generate(&self, z: &Tensor) -> candle_core::Result<Tensor> {
        self.g2.forward(&self.g1.forward(z)?.relu()?)?.tanh()
    }

    /// Logits of "real".
    fn discriminate(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.d1.forward(x)?;
        self.d2.forward(&h.maximum(&(&h * 0.2)?)?) // leaky ReLU
    }

    /// `n` latent vectors of standard normal noise, (n, 32), from the seeded generator.
    pub fn noise(&mut self, n: usize, device: &Device) -> candle_core::Result<Tensor> {
        let v: Vec<f32> = (0..n * LATENT)
            .map(|_| {
                // Box–Muller from the seeded generator
                let (u1, u2): (f32, f32) = (1.0 - self.rng.random::<f32>(), self.rng.random());
                (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
            })
            .collect();
        Tensor::from_vec(v, (n, LATENT), device)
    }
}

#[lightning_module(manual_optimization)]
impl Gan {
    fn configure_optimizers(&mut self) -> lightning::Result<[Adam; 2]> {
        let cfg = AdamConfig { lr: 2e-4, beta1: 0.5, ..Default::default() };
        Ok([
            Adam::new(Params::with_prefix(&self.vars, "generator."), cfg)?,
            Adam::new(Params::with_prefix(&self.vars, "discriminator."), cfg)?,
        ])
    }

    fn training_step(
        &mut self,
        batch: &(Tensor, Tensor),
        trainer: &mut TrainerState,
        manual: &mut impl ManualOptimization<Self>,
    ) -> lightning::Result<()> {
        let real = ((&batch.0 * 2.0)? - 1.0)?;
        let n = real.dim(0)?;
        let (ones, zeros) =
            (Tensor::ones((n, 1), DType::F32, real.device())?, Tensor::zeros((n, 1), DType::F32, real.device())?);

        // discriminator: real → 1, generated → 0 (the generator is not trained by this loss)
        let z = self.noise(n, real.device())?;
        let fake = self.generate(&z)?.detach();
        let d_loss = (bce(&self.discriminate(&real)?, &ones)? + bce(&self.discriminate(&fake)?, &zeros)?)?;
        manual.zero_grad()?;
        manual.backward(self, trainer, &d_loss)?;
        manual.step(self, trainer, 1)?;

        // generator: make the discriminator say 1
        let z = self.noise(n, real.device())?;
        let fake = self.generate(&z)?;
        let g_loss = bce(&self.discriminate(&fake)?, &ones)?;
        manual.zero_grad()?;
        manual.backward(self, trainer, &g_loss)?;
        manual.step(self, trainer, 0)?;

        trainer.log("d_loss", &d_loss)?;
        trainer.log("g_loss", &g_loss)?;
        Ok(())
    }
}

/// Prints the losses after every epoch.
pub struct Losses(pub Vec<(f64, f64)>);

#[callback]
impl Losses {
    fn on_train_epoch_end(&mut self, trainer: &TrainerState) -> lightning::Result<()> {
        let get = |k| trainer.metric(k).map(|v| v.unwrap_or(f64::NAN));
        let (d, g) = (get("d_loss")?, get("g_loss")?);
        println!("epoch {:>2}  d_loss {d:.4}  g_loss {g:.4}  steps {}", trainer.current_epoch(), trainer.global_step());
        self.0.push((d, g));
        Ok(())
    }
}

/// A 28×28 image in [-1, 1] as text, two pixels per character.
pub fn ascii(img: &[f32]) -> String {
    let shades = [' ', '.', ':', '+', '#', '@'];
    let mut out = String::new();
    for row in (0..28).step_by(2) {
        for col in 0..28 {
            let v = (img[row * 28 + col] + img[(row + 1) * 28 + col]) / 2.0;
            let i = (((v + 1.0) / 2.0) * (shades.len() - 1) as f32).round().clamp(0.0, (shades.len() - 1) as f32);
            out.push(shades[i as usize]);
        }
        out.push('\n');
    }
    out
}

/// The trained GAN, the (d_loss, g_loss) of each epoch, and the optimizer steps taken.
pub type Trained = (Gan, Vec<(f64, f64)>, usize);

/// Trains a GAN on the embedded MNIST sample as `args` says.
pub fn run(args: &Args) -> lightning::Result<Trained> {
    let data = mnist::from_bytes(SAMPLE, "examples/data/mnist-sample")?;
    let loader = data.train.loader(args.batch_size)?.shuffle(args.seed).drop_last(true);
    let mut trainer = Trainer::builder()
        .accelerator(Accelerator::Cpu)
        .max_epochs(args.epochs)
        .enable_checkpointing(false)
        .callbacks((Losses(Vec::new()),))
        .build()?;
    let mut gan = Gan::new(args.seed, trainer.device())?;
    let out = trainer.fit(&mut gan, Data::loader(loader))?;
    let losses = std::mem::take(&mut trainer.callbacks_mut().0 .0);
    Ok((gan, losses, out.global_step))
}

#[allow(dead_code)] // the tests include this file as a module and call `run`
fn main() {
    let args = Args::parse();
    match run(&args).and_then(|(mut gan, _, steps)| {
        let z = gan.noise(1, &Device::Cpu)?;
        let img = gan.generate(&z)?.flatten_all()?.to_vec1::<f32>()?;
        Ok((ascii(&img), steps))
    }) {
        Ok((art, steps)) => println!("{art}a generated digit after {steps} optimizer steps (two per batch)"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
