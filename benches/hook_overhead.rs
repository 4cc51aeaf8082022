//! The trainer's cost per step: a null model (a 1×1 linear, batch 1, SGD) trained for
//! 20,000 steps (best of 9) by a hand-written candle loop, by the trainer with no callbacks,
//! by the trainer with 10 callbacks that implement every batch-level hook with a counter, and
//! by the trainer with a `SimpleProfiler`. Prints ns per step over the hand loop, measured in
//! the same process. A trainer without a profiler (`NoProfiler`) is meant to cost what it
//! cost before profilers existed: compare `--only bare` of two commits.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo bench --bench hook_overhead [-- --only hand|bare|simple]
//! ```

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use lightning::prelude::*;
use lightning::profiler::SimpleProfiler;
use lightning::{Gradients, NoProfiler, Profiler};

const STEPS: usize = 20_000;

#[lightning_module]
struct Null {
    vars: VarMap,
    w: Var,
}

#[lightning_module]
impl Null {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        batch.0.matmul(self.w.as_tensor())?.sub(&batch.1)?.sqr()?.sum_all()
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(vec![("w".to_string(), self.w.clone())], 1e-3)
    }
}

/// Counts every batch-level hook.
#[derive(Default)]
struct Count(u64);

#[callback]
impl Count {
    fn on_train_batch_start(&mut self) {
        self.0 += 1;
    }
    fn on_batch_begin(&mut self, batch: (Tensor, Tensor)) -> (Tensor, Tensor) {
        self.0 += 1;
        batch
    }
    fn on_before_zero_grad(&mut self) {
        self.0 += 1;
    }
    fn on_before_backward(&mut self) {
        self.0 += 1;
    }
    fn on_after_backward(&mut self) {
        self.0 += 1;
    }
    fn on_before_optimizer_step(&mut self) {
        self.0 += 1;
    }
    fn on_train_batch_end(&mut self) {
        self.0 += 1;
    }
}

fn null() -> Null {
    let w = Var::zeros((1, 1), DType::F32, &Device::Cpu).unwrap();
    let vars = VarMap::new();
    vars.data().lock().unwrap().insert("w".into(), w.clone());
    Null { vars, w }
}

fn data() -> DataLoader {
    let x = Tensor::ones((STEPS, 1), DType::F32, &Device::Cpu).unwrap();
    DataLoader::new(x.clone(), x, 1).unwrap()
}

fn hand_loop() -> f64 {
    let m = null();
    let mut opt = Sgd::new(vec![("w".to_string(), m.w.clone())], 1e-3).unwrap();
    let mut grads = Gradients::new(vec![m.w.clone()]);
    let mut loader = data();
    let start = Instant::now();
    for batch in loader.batches(0) {
        let (x, y) = batch.unwrap();
        let loss = x.matmul(m.w.as_tensor()).unwrap().sub(&y).unwrap().sqr().unwrap().sum_all().unwrap();
        grads.clear();
        grads.accumulate(loss.backward().unwrap()).unwrap();
        opt.step(&grads).unwrap();
    }
    start.elapsed().as_secs_f64()
}

/// The trainer alone (`batteries = false`: no progress bar, logger or summary), or with
/// Lightning's default progress bar, CSV logger and summary.
fn trainer<C: lightning::CallbackList<Null>>(callbacks: C, batteries: bool) -> f64 {
    profiled(callbacks, batteries, NoProfiler)
}

/// [`trainer`] with a profiler (its table written to a file, not printed).
fn profiled<C: lightning::CallbackList<Null>, P: Profiler>(callbacks: C, batteries: bool, profiler: P) -> f64 {
    let mut m = null();
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::builder()
        .profiler(profiler)
        .accelerator(Accelerator::Cpu)
        .enable_checkpointing(false)
        .enable_progress_bar(batteries)
        .enable_logger(batteries)
        .enable_model_summary(batteries)
        .default_root_dir(dir.path())
        .max_epochs(1)
        .callbacks(callbacks)
        .build()
        .unwrap();
    let start = Instant::now();
    t.fit(&mut m, Data::loader(data())).unwrap();
    start.elapsed().as_secs_f64()
}

fn main() {
    let ten = || {
        (
            Count::default(),
            Count::default(),
            Count::default(),
            Count::default(),
            Count::default(),
            Count::default(),
            Count::default(),
            Count::default(),
            Count::default(),
            Count::default(),
        )
    };
    if let Some(only) = std::env::args().skip_while(|a| a != "--only").nth(1) {
        // for profilers (`perf stat -e instructions`): one variant, five runs
        for _ in 0..5 {
            match only.as_str() {
                "hand" => hand_loop(),
                "simple" => profiled((), false, SimpleProfiler::new().filename("bench")),
                _ => trainer((), false),
            };
        }
        return;
    }
    // warm up, then best of 9 for each (shared machines are noisy)
    let (mut hand, mut bare, mut full, mut batteries) = (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
    let mut simple = f64::MAX;
    for _ in 0..9 {
        hand = hand.min(hand_loop());
        bare = bare.min(trainer((), false));
        simple = simple.min(profiled((), false, SimpleProfiler::new().filename("bench")));
        full = full.min(trainer(ten(), false));
        batteries = batteries.min(trainer((), true));
    }
    let per = |t: f64| t / STEPS as f64 * 1e9;
    println!(
        "null model, {STEPS} steps, best of 9, RAYON_NUM_THREADS={}",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "unset".into())
    );
    println!("hand-written candle loop      {:>8.0} ns/step", per(hand));
    println!(
        "trainer, no callbacks         {:>8.0} ns/step  (+{:.0} ns over the hand loop)",
        per(bare),
        per(bare) - per(hand)
    );
    println!(
        "trainer, 10 callbacks x 7 hooks {:>6.0} ns/step  (+{:.0} ns over the hand loop)",
        per(full),
        per(full) - per(hand)
    );
    println!(
        "trainer, SimpleProfiler      {:>8.0} ns/step  (+{:.0} ns over no profiler)",
        per(simple),
        per(simple) - per(bare)
    );
    println!(
        "trainer, default batteries    {:>8.0} ns/step  (+{:.0} ns: progress bar, CSV logger, summary)",
        per(batteries),
        per(batteries) - per(hand)
    );
}
