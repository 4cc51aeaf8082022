//! burn 0.22 on the MLP of candle-lightning's epoch benchmark (784-128-10, ReLU, Adam 1e-3,
//! batch 64, cross-entropy, shuffled), one epoch on the 60,000 Fashion-MNIST training images:
//! burn's Learner (`SupervisedTraining`, no metrics) and a hand-written burn loop, on the
//! Flex CPU backend. Prints samples/s.
//!
//!     cd scripts/bench/burn_reference
//!     MATMUL_NUM_THREADS=1 RAYON_NUM_THREADS=1 cargo run --release [-- --cli-renderer]
//!
//! The Learner runs with a renderer that draws nothing unless `--cli-renderer` asks for burn's
//! default one (a line per batch). `--learner-only` runs just the Learner, for peak-RSS
//! measurements (`/usr/bin/time -v`).
//! Reads /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist).

use std::io::Read;
use std::time::Instant;

use burn::data::dataloader::{batcher::Batcher, DataLoaderBuilder};
use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::nn::{Linear, LinearConfig};
use burn::optim::lr_scheduler::constant::ConstantLr;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::MetricDefinition;
use burn::train::renderer::{EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation, MetricsRendererTraining};
use burn::train::{ClassificationOutput, InferenceStep, Learner, LearnerSummary, SupervisedTraining, TrainOutput, TrainStep};

const DIR: &str = "/usr/share/datasets/fashion-mnist";
const BATCH: usize = 64;

fn idx(name: &str) -> Vec<u8> {
    let path = format!("{DIR}/{name}.gz");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e} (apt-get install dataset-fashion-mnist)"));
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(file).read_to_end(&mut raw).expect("a gzip IDX file");
    let header = 4 + 4 * raw[3] as usize;
    raw[header..].to_vec()
}

#[derive(Clone, Debug)]
struct Item {
    pixels: Vec<f32>,
    label: i64,
}

#[derive(Clone, Debug)]
struct Batch {
    images: Tensor<2>,
    targets: Tensor<1, Int>,
}

#[derive(Clone)]
struct MnistBatcher;

impl Batcher<Item, Batch> for MnistBatcher {
    fn batch(&self, items: Vec<Item>, device: &Device) -> Batch {
        let n = items.len();
        let pixels: Vec<f32> = items.iter().flat_map(|i| i.pixels.iter().copied()).collect();
        let labels: Vec<i64> = items.iter().map(|i| i.label).collect();
        Batch {
            images: Tensor::from_data(TensorData::new(pixels, [n, 784]), device),
            targets: Tensor::from_data(TensorData::new(labels, [n]), device),
        }
    }
}

#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
    loss: CrossEntropyLoss,
}

impl Mlp {
    fn new(device: &Device) -> Self {
        Mlp {
            fc1: LinearConfig::new(784, 128).init(device),
            fc2: LinearConfig::new(128, 10).init(device),
            loss: CrossEntropyLossConfig::new().init(device),
        }
    }

    fn classify(&self, b: Batch) -> ClassificationOutput {
        let logits = self.fc2.forward(relu(self.fc1.forward(b.images)));
        let loss = self.loss.forward(logits.clone(), b.targets.clone());
        ClassificationOutput::new(loss, logits, b.targets)
    }
}

impl TrainStep for Mlp {
    type Input = Batch;
    type Output = ClassificationOutput;
    fn step(&self, b: Batch) -> TrainOutput<ClassificationOutput> {
        let out = self.classify(b);
        TrainOutput::new(self, out.loss.backward(), out)
    }
}

impl InferenceStep for Mlp {
    type Input = Batch;
    type Output = ClassificationOutput;
    fn step(&self, b: Batch) -> ClassificationOutput {
        self.classify(b)
    }
}

/// A renderer that draws nothing: burn's default CLI renderer prints a line per batch, which
/// our bare trainer does not either.
struct Quiet;

impl MetricsRendererTraining for Quiet {
    fn update_train(&mut self, _: MetricState) {}
    fn update_valid(&mut self, _: MetricState) {}
    fn on_train_end(&mut self, _: Option<LearnerSummary>) -> Result<(), Box<dyn std::error::Error>> {
        Ok(())
    }
}

impl MetricsRendererEvaluation for Quiet {
    fn update_test(&mut self, _: EvaluationName, _: MetricState) {}
    fn on_test_end(&mut self, _: Option<LearnerSummary>) -> Result<(), Box<dyn std::error::Error>> {
        Ok(())
    }
}

impl TrainingProgressLogger for Quiet {
    fn start(&mut self, _: usize, _: usize, _: Option<usize>, _: Option<&str>) {}
    fn update_epoch(&mut self, _: usize) {}
    fn start_split(&mut self, _: &str, _: usize) {}
    fn update_split(&mut self, _: usize) {}
    fn end_split(&mut self) {}
    fn end(&mut self) {}
    fn log_event_training(&mut self, _: String) {}
}

impl EvaluationProgressLogger for Quiet {
    fn start_global_progress(&mut self, _: usize) {}
    fn start_test(&mut self, _: &str, _: usize) {}
    fn update_test_progress(&mut self, _: usize) {}
    fn end_test(&mut self) {}
    fn end_global_progress(&mut self) {}
    fn log_event_evaluation(&mut self, _: String) {}
}

impl MetricsRenderer for Quiet {
    fn manual_close(&mut self) {}
    fn register_metric(&mut self, _: MetricDefinition) {}
}

fn items(images: &[u8], labels: &[u8], n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| Item {
            pixels: images[i * 784..(i + 1) * 784].iter().map(|&p| f32::from(p) / 255.0).collect(),
            label: i64::from(labels[i]),
        })
        .collect()
}

fn main() {
    let (images, labels) = (idx("train-images-idx3-ubyte"), idx("train-labels-idx1-ubyte"));
    let train = items(&images, &labels, 60_000);
    drop((images, labels));
    let steps = train.len() / BATCH;
    let device = Device::flex().autodiff();

    // the Learner, no metrics; validation is one batch so that the epoch is nearly all training
    let build = |data: Vec<Item>| DataLoaderBuilder::new(MnistBatcher).batch_size(BATCH).shuffle(42).build(InMemDataset::new(data));
    let valid = DataLoaderBuilder::new(MnistBatcher).batch_size(BATCH).build(InMemDataset::new(train[..BATCH].to_vec()));
    let dir = std::env::temp_dir().join("burn-reference");
    // `--learner-only` (peak-RSS runs): the data set moves into the loader, as a one-run
    // program would write it; otherwise the hand loop keeps a copy
    let learner_only = std::env::args().any(|a| a == "--learner-only");
    let (learner_loader, hand_data) =
        if learner_only { (build(train), None) } else { (build(train.clone()), Some(train)) };
    let learner = Learner::new(Mlp::new(&device), AdamConfig::new().init(), ConstantLr::new(1e-3));
    let start = Instant::now();
    let quiet = std::env::args().all(|a| a != "--cli-renderer");
    let mut training = SupervisedTraining::new(&dir, learner_loader, valid).num_epochs(1).with_application_logger(None);
    if quiet {
        training = training.renderer(Box::new(Quiet));
    }
    let _ = training.launch(learner);
    let learner_sps = (steps * BATCH) as f64 / start.elapsed().as_secs_f64();

    let Some(hand_data) = hand_data else {
        println!("Learner: {learner_sps:.0} samples/s");
        return;
    };
    // a hand-written loop
    let mut model = Mlp::new(&device);
    let mut optim = AdamConfig::new().init();
    let data = build(hand_data);
    let start = Instant::now();
    for b in data.iter() {
        let out = model.classify(b.expect("a batch"));
        let grads = GradientsParams::from_grads(out.loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
    }
    let hand_sps = (steps * BATCH) as f64 / start.elapsed().as_secs_f64();
    println!("burn 0.22.1, Flex backend");
    println!("| burn | samples/s |");
    println!("| --- | --- |");
    let renderer = if quiet { "no renderer" } else { "CLI renderer" };
    println!("| Learner (SupervisedTraining, no metrics, {renderer}) | {learner_sps:.0} |");
    println!("| hand-written loop | {hand_sps:.0} |");
}
