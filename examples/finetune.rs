//! Fine-tuning a pretrained backbone on a new task (Lightning's `BackboneFinetuning`).
//!
//! 1. Pretrains an MLP (`features.fc` 784→128, `classifier` 128→10) on the embedded MNIST
//!    sample and saves its weights to `<root>/pretrained.safetensors`.
//! 2. Builds a new model (`backbone.fc` 784→128 and a new `head`) and loads the pretrained
//!    weights into it with the prefix map `features.` → `backbone.`, printing torch's
//!    missing and unexpected keys (the old classifier; the new head).
//! 3. Fine-tunes it on Fashion-MNIST with the backbone frozen for `--unfreeze-at` epochs,
//!    then trained in its own parameter group at a tenth of the head's rate, doubling each
//!    epoch up to it; and tests it.
//!
//! Fashion-MNIST is read from `--data-dir` (default `/usr/share/datasets/fashion-mnist`,
//! Debian's `dataset-fashion-mnist`: `apt-get install dataset-fashion-mnist`). Without it the
//! example says so and fine-tunes on a small stand-in task instead: the parity of the
//! embedded MNIST digits (2 classes), with the same backbone.
//!
//! ```sh
//! cargo run --release --example finetune                      # a few seconds
//! cargo run --release --example finetune -- --epochs 6 --train-size 60000
//! ```

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{loss, Linear, Module, VarMap};
use lightning::data::mnist::{self, MnistSplit};
use lightning::finetune::{load_pretrained, BackboneFinetuning};
use lightning::prelude::*;

const SAMPLE: [&[u8]; 4] = [
    include_bytes!("data/mnist-sample/train-images-idx3-ubyte.gz"),
    include_bytes!("data/mnist-sample/train-labels-idx1-ubyte.gz"),
    include_bytes!("data/mnist-sample/t10k-images-idx3-ubyte.gz"),
    include_bytes!("data/mnist-sample/t10k-labels-idx1-ubyte.gz"),
];

/// The example's settings (`--name value`).
#[derive(Debug, Clone)]
pub struct Args {
    /// Where the pretrained weights, logs and checkpoints go.
    pub root: PathBuf,
    /// The Fashion-MNIST IDX files.
    pub data_dir: PathBuf,
    /// Pretraining epochs on MNIST.
    pub pretrain_epochs: usize,
    /// Fine-tuning epochs.
    pub epochs: usize,
    /// The epoch the backbone starts training at.
    pub unfreeze_at: usize,
    /// Fine-tuning images used (the first ones of the training split).
    pub train_size: usize,
    /// The head's learning rate.
    pub lr: f64,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            root: PathBuf::from("target/finetune"),
            data_dir: PathBuf::from("/usr/share/datasets/fashion-mnist"),
            pretrain_epochs: 3,
            epochs: 4,
            unfreeze_at: 2,
            train_size: 6000,
            lr: 2e-3,
        }
    }
}

/// Reads `--root`, `--data-dir`, `--pretrain-epochs`, `--epochs`, `--unfreeze-at`,
/// `--train-size`, `--lr`.
pub fn parse(args: impl IntoIterator<Item = String>) -> lightning::Result<Args> {
    let mut a = Args::default();
    let mut it = args.into_iter().skip(1);
    let bad = |flag: &str, why: String| lightning::Error::msg(format!("{flag}: {why}"));
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| bad(&flag, "needs a value".into()))?;
        let num = |v: &str| v.parse::<usize>().map_err(|e| bad(&flag, e.to_string()));
        match flag.as_str() {
            "--root" => a.root = value.into(),
            "--data-dir" => a.data_dir = value.into(),
            "--pretrain-epochs" => a.pretrain_epochs = num(&value)?,
            "--epochs" => a.epochs = num(&value)?,
            "--unfreeze-at" => a.unfreeze_at = num(&value)?,
            "--train-size" => a.train_size = num(&value)?.max(1),
            "--lr" => a.lr = value.parse().map_err(|e: std::num::ParseFloatError| bad(&flag, e.to_string()))?,
            _ => return Err(bad(&flag, "unknown flag (see the example's header)".into())),
        }
    }
    Ok(a)
}

/// A backbone (`{prefix}fc`) and a head (`{head}`), as pretraining and fine-tuning name them.
#[lightning_module]
pub struct Classifier {
    vars: VarMap,
    fc: Linear,
    head: Linear,
    lr: f64,
}

#[lightning_module]
impl Classifier {
    fn training_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        let loss = loss::cross_entropy(&self.logits(&batch.0)?, &batch.1)?;
        trainer.log_with("train_loss", &loss, Log::new().prog_bar(true))?;
        Ok(loss)
    }
    fn test_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<()> {
        trainer.log("test_acc", lightning::accuracy(&self.logits(&batch.0)?, &batch.1)?)?;
        Ok(())
    }
    fn configure_optimizers(&mut self, trainer: &mut TrainerState) -> lightning::Result<AdamW> {
        // the frozen backbone is left out; BackboneFinetuning adds it as a group later
        AdamW::with_lr(Params::trainable(&self.vars, trainer), self.lr)
    }
}

impl Classifier {
    /// A model with its backbone under `backbone` and `classes` outputs under `head`.
    pub fn new(backbone: &str, head: &str, classes: usize, lr: f64) -> lightning::Result<Self> {
        let vars = VarMap::new();
        let vb = lightning::seeded_var_builder(&vars, 7, DType::F32, &Device::Cpu);
        let fc = candle_nn::linear(784, 128, vb.pp(format!("{backbone}fc")))?;
        let head = candle_nn::linear(128, classes, vb.pp(head))?;
        Ok(Classifier { vars, fc, head, lr })
    }

    fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = ((x - 0.1307)? / 0.3081)?;
        self.head.forward(&self.fc.forward(&x)?.relu()?)
    }
}

/// What the example did.
#[derive(Debug)]
pub struct Report {
    /// What was fine-tuned on.
    pub task: String,
    /// The pretrained model's test accuracy on MNIST.
    pub pretrain_accuracy: f64,
    /// The fine-tuned model's test accuracy on the new task.
    pub test_accuracy: f64,
    /// What `load_pretrained` reported.
    pub load: lightning::finetune::LoadReport,
    /// The backbone's learning rate at the end (`None`: it never unfroze).
    pub backbone_lr: Option<f64>,
}

fn trainer<C: lightning::CallbackTuple>(root: &Path, epochs: usize, cbs: C) -> lightning::Result<Trainer<C::List>> {
    Trainer::builder()
        .accelerator(Accelerator::Cpu)
        .default_root_dir(root)
        .max_epochs(epochs)
        .enable_checkpointing(false)
        .callbacks(cbs)
        .build()
}

fn test_acc(metrics: lightning::Metrics) -> lightning::Result<f64> {
    metrics.get("test_acc").copied().ok_or_else(|| lightning::Error::msg("test_acc was not logged"))
}

/// The fine-tuning data: Fashion-MNIST, or the parity of the MNIST sample's digits.
fn new_task(args: &Args, sample: &mnist::Mnist) -> lightning::Result<(String, mnist::Mnist, usize)> {
    if args.data_dir.join("train-labels-idx1-ubyte.gz").is_file()
        || args.data_dir.join("train-labels-idx1-ubyte").is_file()
    {
        let data = mnist::load_dir(&args.data_dir)?;
        let n = args.train_size.min(data.train.len());
        let train = data.train.narrow(0, n)?;
        return Ok((
            format!("Fashion-MNIST ({n} training images from {})", args.data_dir.display()),
            mnist::Mnist { train, test: data.test },
            10,
        ));
    }
    eprintln!(
        "Fashion-MNIST is not at {} (apt-get install dataset-fashion-mnist, or --data-dir DIR): \
         fine-tuning on the parity of the embedded MNIST digits instead",
        args.data_dir.display()
    );
    let parity = |s: &MnistSplit| -> lightning::Result<MnistSplit> {
        let labels = s.labels.to_vec1::<u32>()?.iter().map(|l| l % 2).collect::<Vec<_>>();
        MnistSplit::new(s.pixels.clone(), Tensor::new(labels, &Device::Cpu)?)
    };
    Ok((
        "digit parity (embedded MNIST sample)".into(),
        mnist::Mnist { train: parity(&sample.train)?, test: parity(&sample.test)? },
        2,
    ))
}

/// Pretrains, saves, loads into a new model and fine-tunes it.
pub fn run(args: &Args) -> lightning::Result<Report> {
    let sample = mnist::from_bytes(SAMPLE, "examples/data/mnist-sample")?;
    // 1. pretraining on MNIST
    let mut pre = Classifier::new("features.", "classifier", 10, 1e-3)?;
    let mut t = trainer(&args.root.join("pretrain"), args.pretrain_epochs, ())?;
    t.fit(&mut pre, Data::loader(sample.train.loader(64)?.shuffle(1)))?;
    let pretrain_accuracy = test_acc(t.test(&mut pre, Data::loader(sample.test.loader(256)?))?)?;
    std::fs::create_dir_all(&args.root).map_err(|e| lightning::Error::msg(e.to_string()))?;
    let file = args.root.join("pretrained.safetensors");
    pre.vars.save(&file)?;
    println!("pretrained on MNIST: test accuracy {:.2}%, saved {}", 100.0 * pretrain_accuracy, file.display());

    // 2. a new model: the pretrained backbone, a new head
    let (task, data, classes) = new_task(args, &sample)?;
    let mut model = Classifier::new("backbone.", "head", classes, args.lr)?;
    let load = load_pretrained(&model.vars, &file, &[("features.", "backbone.")])?;
    println!(
        "loaded {:?}\n  missing (new): {:?}\n  unexpected (old head): {:?}",
        load.loaded, load.missing, load.unexpected
    );

    // 3. fine-tuning: backbone frozen, then unfrozen into its own group
    let finetuning = BackboneFinetuning::new().unfreeze_backbone_at_epoch(args.unfreeze_at).verbose(true);
    let mut t = trainer(&args.root.join("finetune"), args.epochs, (finetuning,))?;
    println!("fine-tuning on {task}");
    t.fit(&mut model, Data::loader(data.train.loader(64)?.shuffle(2)))?;
    let test_accuracy = test_acc(t.test(&mut model, Data::loader(data.test.loader(256)?))?)?;
    let backbone_lr = t.callbacks().0.previous_backbone_lr();
    println!("fine-tuned: test accuracy {:.2}% on {task}", 100.0 * test_accuracy);
    Ok(Report { task, pretrain_accuracy, test_accuracy, load, backbone_lr })
}

#[allow(dead_code)]
fn main() -> lightning::Result<()> {
    run(&parse(std::env::args())?)?;
    Ok(())
}
