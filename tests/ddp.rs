//! Data-parallel training over MPI (feature `mpi`; `scripts/setup-mpi.sh` installs OpenMPI):
//! a small regression MLP trained by the `Trainer` with `.ddp(..)` for 20 steps, global batch
//! 12 split over the ranks, under `mpirun` with 1, 2, 3 and 4 ranks, ends with the same weights,
//! though every rank starts from its own random ones (DDP broadcasts rank 0's).
//!
//! The ranks are this test binary itself, re-run by `mpirun` with only the `ddp_worker` test
//! selected and `LIGHTNING_DDP_WORKER` set; MPI is never initialised in the harness that
//! runs the other tests.
#![cfg(feature = "mpi")]

use std::collections::BTreeMap;
use std::process::Command;

#[path = "../examples/mnist.rs"]
#[allow(dead_code)]
mod mnist;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarMap};
use lightning::dist::Mpi;
use lightning::prelude::*;
use lightning::tuner::{LearningRateFinder, LrFind};
use lightning::{EarlyStopping, Either};

// 72 samples, global batch 12: every world size of 1 to 4 splits both evenly
const SAMPLES: usize = 72;
const GLOBAL_BATCH: usize = 12;

#[lightning_module]
struct Regression {
    vars: VarMap,
    l1: Linear,
    l2: Linear,
}

#[lightning_module]
impl Regression {
    fn training_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        let fail = std::env::var("LIGHTNING_DDP_FAIL_RANK").ok().and_then(|r| r.parse::<usize>().ok());
        if fail == Some(trainer.global_rank()) && trainer.global_step() == 3 {
            return Err(lightning::Error::msg("this rank fails on purpose"));
        }
        let stall = std::env::var("LIGHTNING_DDP_STALL_RANK").ok().and_then(|r| r.parse::<usize>().ok());
        if stall == Some(trainer.global_rank()) && trainer.global_step() == 3 {
            std::thread::sleep(std::time::Duration::from_secs(120));
        }
        let out = self.l2.forward(&self.l1.forward(&batch.0)?.tanh()?)?;
        let loss = (out - &batch.1)?.sqr()?.mean_all()?;
        trainer.log_with("loss", &loss, Log::new().on_epoch(true))?;
        Ok(loss)
    }

    fn validation_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<()> {
        // each rank sees its own shard; the epoch values are reduced over the ranks
        trainer.log("val_mean_x", batch.0.mean_all()?)?;
        trainer.log_with("val_max_x", batch.0.max_all()?, Log::new().reduce(Reduce::Max))?;
        trainer.log_with("val_min_x", batch.0.min_all()?, Log::new().reduce(Reduce::Min))
    }
    /// Once per node under DDP: counted in `$LIGHTNING_DDP_ROOT/prepare_data.log`.
    fn prepare_data(&mut self) -> std::io::Result<()> {
        if let Ok(root) = std::env::var("LIGHTNING_DDP_ROOT") {
            use std::io::Write;
            let path = std::path::Path::new(&root).join("prepare_data.log");
            std::fs::OpenOptions::new().create(true).append(true).open(path)?.write_all(b"prepared\n")?;
        }
        Ok(())
    }

    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::with_config(&self.vars, SgdConfig { lr: 0.1, momentum: 0.9, ..Default::default() })
    }
}

/// `Regression` under manual optimization: each batch in two halves, two `manual_backward`
/// calls (each synced over the ranks, as torch's DDP does in backward), one step.
#[lightning_module]
struct ManualRegression {
    vars: VarMap,
    l1: Linear,
    l2: Linear,
}

#[lightning_module(manual_optimization)]
impl ManualRegression {
    fn training_step(
        &mut self,
        batch: &(Tensor, Tensor),
        trainer: &mut TrainerState,
        manual: &mut impl ManualOptimization<Self>,
    ) -> lightning::Result<()> {
        let n = batch.0.dim(0)?;
        manual.zero_grad()?;
        for (start, len) in [(0, n / 2), (n / 2, n - n / 2)] {
            let (x, y) = (batch.0.narrow(0, start, len)?, batch.1.narrow(0, start, len)?);
            let out = self.l2.forward(&self.l1.forward(&x)?.tanh()?)?;
            // the halves' sums over the whole batch's size: together, the batch mean
            let loss = ((out - y)?.sqr()?.sum_all()? / n as f64)?;
            manual.backward(self, trainer, &loss)?;
        }
        manual.step(self, trainer, 0)
    }

    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::with_config(&self.vars, SgdConfig { lr: 0.1, momentum: 0.9, ..Default::default() })
    }
}

/// One rank's training; rank 0 prints the final weights as `WEIGHT <name> <values…>` lines.
/// `LIGHTNING_DDP_LAUNCH`: unset, the rank joins MPI itself and passes the world to
/// `ddp(..)`; `flags`, the trainer's `strategy(Ddp)` finds the job `mpirun` started;
/// `devices`, this process was started alone and `devices(2)` starts the ranks.
fn worker() -> lightning::Result<()> {
    let env = |k: &str| std::env::var(k).ok();
    let mut builder = Trainer::builder()
        .num_sanity_val_steps(0)
        .enable_logger(false)
        .enable_progress_bar(false)
        .enable_model_summary(false);
    builder = match env("LIGHTNING_DDP_LAUNCH").as_deref() {
        None => builder.ddp(Mpi::init()?),
        Some("flags") => builder.strategy(Strategy::Ddp),
        Some("devices") => builder.strategy(Strategy::Ddp).devices(2),
        Some(other) => panic!("unknown launch {other}"),
    };
    builder = match env("LIGHTNING_DDP_EPOCHS").and_then(|e| e.parse().ok()) {
        Some(epochs) => builder.max_epochs(epochs),
        None => builder.max_steps(20),
    };
    builder = match env("LIGHTNING_DDP_CKPT_DIR") {
        Some(dir) => builder.checkpoint(ModelCheckpoint::new().dirpath(dir).save_last(true)),
        None => builder.enable_checkpointing(false),
    };
    if let Some(k) = env("LIGHTNING_DDP_ACCUMULATE").and_then(|k| k.parse().ok()) {
        builder = builder.accumulate_grad_batches(k);
    }
    if let Some(p) = env("LIGHTNING_DDP_PRECISION") {
        builder = builder.precision(p.parse()?);
    }
    // `LIGHTNING_DDP_LRFIND`: a LearningRateFinder sweeps before the fit (rate left alone)
    let finder = env("LIGHTNING_DDP_LRFIND")
        .map(|_| (LearningRateFinder::new(LrFind::new().min_lr(1e-4).max_lr(1.0).num_training(30)),));
    let mut trainer = builder.callbacks(finder).build()?;
    let (rank, size) = (trainer.global_rank(), trainer.world_size());
    if let Some(via) = env("LIGHTNING_DDP_VIA") {
        println!("\nVIA {rank} {via}");
    }
    lightning::dist::rank_zero_only(|| println!("\nRANKZERO {rank}"));
    if !GLOBAL_BATCH.is_multiple_of(size) {
        return Err(lightning::Error::msg(format!("{size} ranks do not split a global batch of {GLOBAL_BATCH}")));
    }
    let dev = Device::Cpu;
    let vars = VarMap::new();
    // `LIGHTNING_DDP_SEED` shifts the initial weights (a resume must not depend on them)
    let shift: u64 = env("LIGHTNING_DDP_SEED").and_then(|s| s.parse().ok()).unwrap_or(0);
    let vb = lightning::seeded_var_builder(&vars, 100 + shift + rank as u64, DType::F64, &dev);
    let mut model =
        Regression { l1: candle_nn::linear(4, 8, vb.pp("l1"))?, l2: candle_nn::linear(8, 1, vb.pp("l2"))?, vars };
    // `LIGHTNING_DDP_SAMPLES`: another data set size (one with a short last batch)
    let samples = env("LIGHTNING_DDP_SAMPLES").and_then(|n| n.parse().ok()).unwrap_or(SAMPLES);
    let x: Vec<f64> = (0..samples * 4).map(|i| ((i * 37 % 101) as f64 / 50.0 - 1.0).sin()).collect();
    let x = Tensor::from_vec(x, (samples, 4), &dev)?;
    let y = x.sum_keepdim(1)?.sin()?;
    // `LIGHTNING_DDP_STREAM`: the same samples, in order, from a `StreamLoader`
    let loader = if env("LIGHTNING_DDP_STREAM").is_some() {
        let stream = move |_epoch| {
            let (x, y) = (x.clone(), y.clone());
            (0..samples).map(move |i| Ok((x.get(i)?, y.get(i)?)))
        };
        Either::Left(lightning::data::StreamLoader::new(stream, GLOBAL_BATCH / size)?)
    } else {
        Either::Right(DataLoader::new(x, y, GLOBAL_BATCH / size)?)
    };
    if let Some(path) = env("LIGHTNING_DDP_RESUME") {
        trainer.resume_from(path);
    }
    let val_x = Tensor::arange(0f64, 12.0, &dev)?.reshape((12, 1))?.broadcast_as((12, 4))?.contiguous()?;
    let val = DataLoader::new(val_x, Tensor::zeros((12, 1), DType::F64, &dev)?, 2)?;
    if env("LIGHTNING_DDP_MANUAL").is_some() {
        let mut manual = ManualRegression { vars: model.vars.clone(), l1: model.l1.clone(), l2: model.l2.clone() };
        trainer.fit(&mut manual, Data::loader(loader))?;
    } else {
        let out = trainer.fit(&mut model, Data::loader(loader).val(val))?;
        // every rank prints the validation metrics: those of 0..12 whatever the sharding
        let m = &out.metrics;
        println!("\nVAL {rank} {} {} {}", m["val_mean_x"], m["val_max_x"], m["val_min_x"]);
    }
    if let Some((finder,)) = trainer.callbacks() {
        println!("\nLRFIND {rank} {:?}", finder.optimal_lr().and_then(|f| f.suggestion()));
    }
    if let Some(best) = trainer.checkpoint_callback().and_then(|c| c.best_model_path()) {
        // every rank knows rank 0's checkpoint, and it is on disk when fit returns
        println!("\nBEST {rank} {} {}", best.display(), best.exists());
    }
    // rank 0 prints `WEIGHT`; under another precision every rank prints `PERRANK <rank>` too
    let per_rank = env("LIGHTNING_DDP_PRECISION").is_some();
    if rank == 0 || per_rank {
        let data = model.vars.data().lock().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for name in names {
            let v = data[name].as_tensor().flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            let v = v.iter().map(|x| format!("{x:.12e}")).collect::<Vec<_>>().join(" ");
            if rank == 0 {
                println!("\nWEIGHT {name} {v}");
            }
            if per_rank {
                println!("\nPERRANK {rank} {name} {v}");
            }
        }
    }
    Ok(())
}

/// The MNIST example under `--strategy ddp`: rank 0 prints the test accuracy.
fn mnist_worker(root: &str) -> lightning::Result<()> {
    let args = mnist::parse([
        "mnist",
        "fit",
        "--trainer.strategy",
        "ddp",
        "--data.batch_size",
        "32",
        "--trainer.default_root_dir",
        root,
    ])
    .unwrap();
    let report = mnist::run(&args)?;
    if report.rank == 0 {
        println!("\nACC {}", report.test_accuracy);
    }
    Ok(())
}

/// A module whose ranks disagree unless the trainer makes them agree: `wobble`, logged in
/// `on_validation_epoch_end` without `sync_dist`, improves every epoch on rank 0 and never on
/// rank 1; `synced` is the rank with `sync_dist`; `LIGHTNING_DDP_STOP_RANK` sets
/// `should_stop` on that rank alone after its fourth batch.
#[lightning_module]
struct Agree {
    vars: VarMap,
    l1: Linear,
}

#[lightning_module]
impl Agree {
    fn training_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        let _ = trainer;
        Ok((self.l1.forward(&batch.0)? - &batch.1)?.sqr()?.mean_all()?)
    }

    fn on_train_batch_end(&mut self, trainer: &mut TrainerState) {
        let stop = std::env::var("LIGHTNING_DDP_STOP_RANK").ok().and_then(|r| r.parse::<usize>().ok());
        if stop == Some(trainer.global_rank()) && trainer.global_step() == 4 {
            trainer.request_stop();
        }
        let signal = std::env::var("LIGHTNING_DDP_SIGNAL_RANK").ok().and_then(|r| r.parse::<usize>().ok());
        if signal == Some(trainer.global_rank()) && trainer.global_step() == 3 {
            // a preemption notice that reaches this rank alone
            // SAFETY: raise(2) with a valid signal number; the trainer has installed its handler
            unsafe { libc::raise(libc::SIGUSR1) };
        }
    }

    fn validation_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<()> {
        let n = batch.0.dim(0)? as f64;
        trainer.log_with("val_n", n, Log::new().reduce(Reduce::Sum))?;
        // synced as logged, and still counted once in the epoch's sum
        trainer.log_with("val_n_synced", n, Log::new().reduce(Reduce::Sum).sync_dist(true))
    }

    fn on_validation_epoch_end(&mut self, trainer: &mut TrainerState) -> lightning::Result<()> {
        let (rank, epoch) = (trainer.global_rank() as f64, trainer.current_epoch() as f64);
        trainer.log("wobble", if rank == 0.0 { -epoch } else { 0.0 })?;
        trainer.log_with("synced", rank, Log::new().sync_dist(true))?;
        trainer.log_with("synced_max", rank, Log::new().sync_dist(true).reduce(Reduce::Max))?;
        trainer.log("own", rank)?;
        // the collectives of hooks: every rank's pair, and the rank summed, maxed, minimised, averaged
        let pair = Tensor::new(&[rank as f32, 10.0], &Device::Cpu)?;
        let gathered = trainer.all_gather(&pair)?.flatten_all()?.to_vec1::<f32>()?;
        let r = Tensor::new(&[rank], &Device::Cpu)?;
        let reduced: Vec<f64> = [Reduce::Sum, Reduce::Max, Reduce::Min, Reduce::Mean]
            .into_iter()
            .map(|op| Ok(trainer.all_reduce(&r, op)?.to_vec1::<f64>()?[0]))
            .collect::<lightning::Result<_>>()?;
        trainer.barrier()?;
        let from_one = trainer.broadcast(&r, trainer.world_size() - 1)?.to_vec1::<f64>()?[0];
        let any = trainer.reduce_boolean_decision(rank == 1.0, false)?;
        let all = trainer.reduce_boolean_decision(rank == 1.0, true)?;
        // tensors of different shapes: an error on every rank, not a scrambled gather
        let uneven = Tensor::zeros(trainer.global_rank() + 1, DType::F32, &Device::Cpu)?;
        let refused =
            trainer.all_gather(&uneven).map_or_else(|e| e.to_string().contains("different shapes"), |_| false);
        println!("\nCOLLECT {rank} {gathered:?} {reduced:?} {from_one} {any} {all} {refused}");
        Ok(())
    }

    fn test_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<()> {
        trainer.log_with("test_n", batch.0.dim(0)? as f64, Log::new().reduce(Reduce::Sum))?;
        trainer.log("test_mean_x", batch.0.mean_all()?)
    }

    fn predict_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        Ok(batch.0.clone())
    }

    fn configure_optimizers(&mut self) -> lightning::Result<(Sgd, ReduceLrOnPlateau, SchedulerConfig)> {
        let sgd = Sgd::with_config(&self.vars, SgdConfig { lr: 0.01, ..Default::default() })?;
        Ok((sgd, ReduceLrOnPlateau::new(0.5, 0), SchedulerConfig::every_epoch().monitor("wobble")))
    }

    fn on_fit_end(&mut self, trainer: &mut TrainerState) {
        println!("\nLR {} {:?}", trainer.global_rank(), trainer.learning_rates());
    }
}

/// `rows` rows whose features all equal the row's index.
fn indexed(rows: usize, batch: usize) -> lightning::Result<DataLoader> {
    let x =
        Tensor::arange(0f64, rows as f64, &Device::Cpu)?.reshape((rows, 1))?.broadcast_as((rows, 4))?.contiguous()?;
    DataLoader::new(x, Tensor::zeros((rows, 1), DType::F64, &Device::Cpu)?, batch)
}

/// One rank of the agreement checks: fit with EarlyStopping and ModelCheckpoint on `wobble`,
/// then test and predict on 66 rows; prints what each rank ended with.
fn agree_worker(dir: &str) -> lightning::Result<()> {
    let mut trainer = Trainer::builder()
        .ddp(Mpi::init()?)
        .max_epochs(8)
        .num_sanity_val_steps(0)
        .enable_logger(false)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .callbacks((EarlyStopping::new("wobble").patience(1),))
        .checkpoint(ModelCheckpoint::new().dirpath(dir).monitor("wobble").filename("{epoch}-{own:.0f}"))
        .build()?;
    let rank = trainer.global_rank();
    let vars = VarMap::new();
    let vb = lightning::seeded_var_builder(&vars, 5, DType::F64, &Device::Cpu);
    let mut model = Agree { l1: candle_nn::linear(4, 1, vb.pp("l1"))?, vars };
    let out = match trainer.fit(&mut model, Data::loader(indexed(48, 4)?).val(indexed(10, 2)?)) {
        Err(lightning::Error::Interrupted { signal, epoch, step }) => {
            println!("\nINTERRUPTED {rank} {signal} {epoch} {step}");
            return Ok(());
        }
        out => out?,
    };
    let m = &out.metrics;
    println!("\nSTOPPED {rank} {} {}", out.current_epoch, out.global_step);
    println!("\nSYNCED {rank} {} {} {} {} {}", m["synced"], m["synced_max"], m["own"], m["val_n"], m["val_n_synced"]);
    let best = trainer.checkpoint_callback().and_then(|c| c.best_model_path()).map(|p| p.display().to_string());
    println!("\nBESTPATH {rank} {}", best.unwrap_or_default());
    let tested = trainer.test(&mut model, Data::loader(indexed(66, 4)?))?;
    println!("\nTESTED {rank} {} {}", tested["test_n"], tested["test_mean_x"]);
    // two test loaders: each sharded, each counted once over the ranks
    let two = trainer.test(&mut model, Data::loaders((indexed(66, 4)?, indexed(10, 2)?)))?;
    println!("\nTESTED2 {rank} {} {}", two["test_n/dataloader_idx_0"], two["test_n/dataloader_idx_1"]);
    let predicted: usize =
        trainer.predict(&mut model, Data::loader(indexed(66, 4)?))?.iter().map(|p| p.dim(0).unwrap()).sum();
    println!("\nPREDICTED {rank} {predicted}");
    Ok(())
}

/// The test harness entry of a rank; does nothing unless `mpirun` started it.
#[test]
fn ddp_worker() {
    match std::env::var("LIGHTNING_DDP_WORKER").as_deref() {
        Ok("mnist") => mnist_worker(&std::env::var("LIGHTNING_DDP_ROOT").unwrap()).expect("the rank failed"),
        Ok("agree") => agree_worker(&std::env::var("LIGHTNING_DDP_ROOT").unwrap()).expect("the rank failed"),
        Ok(_) => {
            let exit = std::env::var("LIGHTNING_DDP_EXIT_RANK").ok();
            if exit.is_some() && exit == std::env::var("OMPI_COMM_WORLD_RANK").ok() {
                // this rank ends before it reaches the trainer (after the others did)
                std::thread::sleep(std::time::Duration::from_secs(2));
                std::process::exit(3);
            }
            worker().expect("the rank failed")
        }
        Err(_) => {}
    }
}

fn mpirun(ranks: usize) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["-np", &ranks.to_string()])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "ddp_worker", "--nocapture", "--test-threads=1"])
        .env("LIGHTNING_DDP_WORKER", "1")
        // root in CI containers; more ranks than the 2 cores
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .env("RAYON_NUM_THREADS", "1");
    cmd
}

/// What follows `tag` on the ranks' lines (the harness prints `test ddp_worker ... ` before
/// a rank's own lines).
fn tagged<'a>(text: &'a str, tag: &'static str) -> impl Iterator<Item = &'a str> {
    text.lines().filter_map(move |l| l.find(tag).map(|at| &l[at + tag.len()..]))
}

/// The `WEIGHT <name> <values…>` lines rank 0 prints, by variable name.
fn weights(text: &str) -> BTreeMap<String, Vec<f64>> {
    tagged(text, "WEIGHT ")
        .map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next().unwrap().to_string(), parts.map(|v| v.parse().unwrap()).collect())
        })
        .collect()
}

/// One successful `mpirun` with these extra variables; its standard output.
fn run_ok(ranks: usize, vars: &[(&str, String)]) -> String {
    let mut cmd = mpirun(ranks);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("mpirun (scripts/setup-mpi.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{ranks} ranks failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    text
}

/// The weights rank 0 prints, by variable name, and the validation mean, max and min all
/// ranks print.
fn run(ranks: usize) -> (BTreeMap<String, Vec<f64>>, Vec<Vec<f64>>) {
    let dir = tempfile::tempdir().unwrap();
    let text = run_ok(ranks, &[("LIGHTNING_DDP_ROOT", dir.path().to_str().unwrap().to_string())]);
    let prepared = std::fs::read_to_string(dir.path().join("prepare_data.log")).unwrap_or_default();
    assert_eq!(prepared.lines().count(), 1, "prepare_data runs once per node, on {ranks} ranks");
    assert_eq!(tagged(&text, "RANKZERO ").collect::<Vec<_>>(), ["0"], "rank_zero_only on {ranks} ranks");
    let vals = tagged(&text, "VAL ")
        .map(|l| l.split_whitespace().skip(1).map(|v| v.parse().unwrap()).collect::<Vec<f64>>())
        .collect();
    (weights(&text), vals)
}

/// Asserts that `got` holds `want`'s weights, to 1e-5.
fn assert_same(got: &BTreeMap<String, Vec<f64>>, want: &BTreeMap<String, Vec<f64>>, context: &str) {
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{context}");
    for (name, w) in want {
        for (a, b) in got[name].iter().zip(w) {
            assert!((a - b).abs() < 1e-5, "{context}: {name} differs: {a} vs {b}");
        }
    }
}

/// One process's weights with `vars`, and those of each of `ranks`, must agree.
fn assert_ranks_match_one_process(vars: &[(&str, String)], ranks: &[usize]) {
    let one = run_with(1, vars);
    assert_eq!(one.len(), 4);
    for &n in ranks {
        assert_same(&run_with(n, vars), &one, &format!("{n} ranks, {vars:?}"));
    }
}

#[test]
fn ranks_train_the_same_weights_as_one_process() {
    let (one, _) = run(1);
    assert_eq!(one.len(), 4, "{one:?}");
    for ranks in [2, 3, 4] {
        let (many, vals) = run(ranks);
        assert_same(&many, &one, &format!("{ranks} ranks"));
        // the validation metrics are reduced over the ranks: the mean, max and min of 0..12
        // on every rank, though each saw only its shard
        assert_eq!(vals.len(), ranks, "{vals:?}");
        assert!(vals.iter().all(|v| (v[0] - 5.5).abs() < 1e-12 && v[1..] == [11.0, 0.0]), "{ranks} ranks: {vals:?}");
    }
}

/// `mpirun` with these variables, run to its end within 60 s: its status and standard error.
fn run_bounded(ranks: usize, vars: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut child = mpirun(ranks)
        .envs(vars.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("mpirun");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the job hung after a rank failed");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    (status, err)
}

/// A rank that fails ends the job with a non-zero status, without the others hanging.
#[test]
fn a_failing_rank_ends_the_job() {
    let (status, err) = run_bounded(2, &[("LIGHTNING_DDP_FAIL_RANK", "1")]);
    assert!(!status.success(), "{err}");
    assert!(err.contains("rank 1 of 2: ") && err.contains("this rank fails on purpose"), "{err}");
}

/// A rank that hangs (here: sleeps for 2 minutes) makes the others' next collective operation
/// time out; they find out which rank is missing, say so, and end the job.
#[test]
fn a_hanging_rank_is_named_after_the_collective_timeout() {
    let (status, err) = run_bounded(3, &[("LIGHTNING_DDP_STALL_RANK", "1"), ("LIGHTNING_COLLECTIVE_TIMEOUT", "2")]);
    assert!(!status.success(), "{err}");
    assert!(err.contains("waited 2s in all-reduce; rank(s) 1 did not arrive"), "{err}");
}

/// `examples/mnist.rs --strategy ddp` on 2 ranks with batch 32 reaches the accuracy of one
/// process with batch 64 (the same global batches, the same augmentation).
#[test]
fn the_example_under_ddp_matches_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let single_root = dir.path().join("single");
    let args = mnist::parse(["mnist", "fit", "--trainer.default_root_dir", single_root.to_str().unwrap()]).unwrap();
    let single = mnist::run(&args).unwrap().test_accuracy;
    let ddp_root = dir.path().join("ddp");
    let vars =
        [("LIGHTNING_DDP_WORKER", "mnist".to_string()), ("LIGHTNING_DDP_ROOT", ddp_root.to_str().unwrap().into())];
    let text = run_ok(2, &vars);
    let accs: Vec<f64> = tagged(&text, "ACC ").map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(accs.len(), 1, "rank 0 alone reports: {text}");
    // OpenMPI gives ranks a pseudo-terminal even when the output is piped: the bar prints lines
    assert!(!text.contains('\x1b'), "terminal escapes in the job's output:\n{text}");
    assert!((accs[0] - single).abs() < 0.005, "2 ranks: {}, one process: {single}", accs[0]);
    // rank 0 alone wrote logs and checkpoints
    let versions = std::fs::read_dir(ddp_root.join("lightning_logs")).unwrap().count();
    assert_eq!(versions, 1);
}

/// The weights rank 0 prints at the end of one `mpirun` with these settings.
fn run_with(ranks: usize, vars: &[(&str, String)]) -> BTreeMap<String, Vec<f64>> {
    weights(&run_ok(ranks, vars))
}

/// A checkpoint written by a 2-rank run resumes in a 1-rank run, and the other way round:
/// one epoch, a resume for the second, the same weights as two epochs in one process (the
/// global batch is the same whatever the world size).
#[test]
fn checkpoints_resume_across_world_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let path = |s: &str| dir.path().join(s).to_str().unwrap().to_string();
    let whole = run_with(1, &[("LIGHTNING_DDP_EPOCHS", "2".into())]);
    assert_eq!(whole.len(), 4);
    for (first, second) in [(2, 1), (1, 2)] {
        let ckpts = path(&format!("ckpt-{first}-{second}"));
        let text = run_ok(first, &[("LIGHTNING_DDP_EPOCHS", "1".into()), ("LIGHTNING_DDP_CKPT_DIR", ckpts.clone())]);
        let best: Vec<&str> = tagged(&text, "BEST ").collect();
        assert_eq!(best.len(), first, "{text}");
        for (rank, line) in best.iter().enumerate() {
            let want = format!("{ckpts}/epoch=0-step={}.ckpt true", SAMPLES / GLOBAL_BATCH);
            assert!(line.ends_with(&want) && line.len() > want.len(), "rank {rank}: {line}");
        }
        let last = format!("{ckpts}/last.ckpt");
        assert!(std::path::Path::new(&last).is_dir(), "rank 0 saved {last}");
        // other initial weights: only the checkpoint can bring the run back to `whole`
        let resumed = run_with(
            second,
            &[("LIGHTNING_DDP_EPOCHS", "2".into()), ("LIGHTNING_DDP_RESUME", last), ("LIGHTNING_DDP_SEED", "7".into())],
        );
        assert_same(&resumed, &whole, &format!("{first} then {second} ranks"));
    }
}

/// The last batch of each epoch is short (76 = 6 × 12 + 4 samples): with 2 and 4 ranks it is
/// split evenly too (2 + 2, 1 + 1 + 1 + 1), so the mean of the ranks' means is the global mean.
/// With accumulation over 2 batches the ranks sync once per window (torch's `no_sync`), and
/// train the same weights as one process.
#[test]
fn short_last_batches_and_accumulation_match_one_process() {
    for accumulate in ["1", "2"] {
        let vars = [
            ("LIGHTNING_DDP_SAMPLES", "76".to_string()),
            ("LIGHTNING_DDP_EPOCHS", "2".to_string()),
            ("LIGHTNING_DDP_ACCUMULATE", accumulate.to_string()),
        ];
        assert_ranks_match_one_process(&vars, &[2, 4]);
    }
}

/// A `StreamLoader` under DDP: each rank keeps every world-th sample of each round, so 2 and
/// 3 ranks train what one process does on the same stream.
#[test]
fn streams_are_sharded_by_rank() {
    assert_ranks_match_one_process(&[("LIGHTNING_DDP_STREAM", "1".to_string())], &[2, 3]);
}

/// Manual optimization: the gradients of each `manual_backward` are averaged over the ranks.
#[test]
fn manual_optimization_matches_one_process() {
    assert_ranks_match_one_process(&[("LIGHTNING_DDP_MANUAL", "1".to_string())], &[2, 4]);
}

/// The trainer's flags instead of a world passed in: `strategy(Ddp)` under `mpirun` finds
/// the job, and `devices(2)` in a process started alone runs the program as 2 ranks under
/// `mpirun` itself, waits, and exits with their status. Both train what one process does.
#[test]
fn strategy_and_devices_flags_launch_and_join_the_job() {
    let (one, _) = run(1);
    let flags = run_with(2, &[("LIGHTNING_DDP_LAUNCH", "flags".into())]);
    // as root (CI), devices(N) itself passes OpenMPI's run-as-root settings; $MPIRUN holds a
    // command line with arguments, split as a shell does
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "ddp_worker", "--nocapture", "--test-threads=1"])
        .env("LIGHTNING_DDP_WORKER", "1")
        .env("LIGHTNING_DDP_LAUNCH", "devices")
        .env_remove("OMPI_ALLOW_RUN_AS_ROOT")
        .env_remove("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM")
        .env("MPIRUN", "mpirun -x 'LIGHTNING_DDP_VIA=split like a shell'")
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let devices = weights(&text);
    assert_eq!(tagged(&text, "VAL ").count(), 2, "two ranks ran: {text}");
    assert_eq!(tagged(&text, "VIA ").filter(|l| l.ends_with(" split like a shell")).count(), 2, "{text}");
    assert_same(&flags, &one, "strategy(Ddp) under mpirun");
    assert_same(&devices, &one, "devices(2)");
}

/// The `TAG rank values…` lines of a run, one per rank, by rank.
fn per_rank(text: &str, tag: &'static str) -> Vec<String> {
    let mut lines: Vec<(usize, String)> = tagged(text, tag)
        .map(|l| {
            let (rank, rest) = l.trim().split_once(' ').unwrap_or((l.trim(), ""));
            (rank.parse::<f64>().unwrap() as usize, rest.to_string())
        })
        .collect();
    lines.sort();
    lines.into_iter().map(|(_, rest)| rest).collect()
}

/// The agreement checks on `ranks` ranks with these extra variables: each rank's lines by tag.
fn agree(ranks: usize, vars: &[(&str, &str)]) -> BTreeMap<&'static str, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec![("LIGHTNING_DDP_WORKER", "agree".to_string())];
    all.push(("LIGHTNING_DDP_ROOT", dir.path().to_str().unwrap().to_string()));
    // ranks that disagree end in a mismatched collective: fail in seconds, not 30 minutes
    all.push(("LIGHTNING_COLLECTIVE_TIMEOUT", "20".to_string()));
    all.extend(vars.iter().map(|(k, v)| (*k, v.to_string())));
    let mut cmd = mpirun(ranks);
    cmd.envs(all);
    let out = cmd.output().expect("mpirun (scripts/setup-mpi.sh installs it)");
    let (text, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{ranks} ranks failed:\n{text}\n{err}");
    let tags = ["STOPPED ", "SYNCED ", "BESTPATH ", "TESTED ", "TESTED2 ", "PREDICTED ", "COLLECT ", "LR "];
    let mut out: BTreeMap<_, _> = tags.into_iter().map(|t| (t, per_rank(&text, t))).collect();
    // the padding warning of sharded evaluation: rank 0 prints it once, for test and predict
    out.insert("WARNINGS ", vec![err.matches("padded by repeating its first samples").count().to_string()]);
    for (tag, lines) in &out {
        if !matches!(*tag, "COLLECT " | "WARNINGS ") {
            assert_eq!(lines.len(), ranks, "{tag}on {ranks} ranks:\n{text}");
        }
    }
    out
}

/// `validate`/`test`/`predict` read one shard per rank, as fit does: a `Reduce::Sum` count of
/// a 66-row test set is 66 on 2 ranks, as in one process, not 132; each rank predicts 33 rows.
/// A monitor logged by each rank for itself (`wobble`) still gives every rank the same stop
/// epoch, the same learning rate and the same best checkpoint (EarlyStopping and the plateau
/// scheduler decide from the ranks' mean; ModelCheckpoint from rank 0's values, path included).
#[test]
fn evaluation_is_sharded_and_the_ranks_decide_alike() {
    let one = agree(1, &[]);
    let two = agree(2, &[]);
    assert_eq!(one["TESTED "], ["66 32.5"]);
    assert_eq!(two["TESTED "], ["66 32.5", "66 32.5"], "each test row counted once on 2 ranks");
    assert_eq!(one["TESTED2 "], ["66 10"]);
    assert_eq!(two["TESTED2 "], ["66 10", "66 10"], "each of two loaders sharded and counted once");
    assert_eq!(two["PREDICTED "], ["33", "33"], "each rank predicts its shard");
    assert_eq!(one["PREDICTED "], ["66"]);
    assert_eq!(
        (one["WARNINGS "][0].as_str(), two["WARNINGS "][0].as_str()),
        ("0", "1"),
        "one padding warning on 2 ranks"
    );
    // the validation count is summed over the shards: 10 rows on 1 and on 2 ranks
    assert!(two["SYNCED "].iter().all(|l| l.ends_with(" 10 10")), "{:?}", two["SYNCED "]);
    // one stop epoch and one best path on every rank: the mean of -epoch and 0 keeps
    // improving, as rank 0's own value does in one process
    assert_eq!(two["STOPPED "][0], two["STOPPED "][1], "{two:?}");
    assert_eq!(two["BESTPATH "][0], two["BESTPATH "][1], "{two:?}");
    // the plateau scheduler on `wobble` keeps the rate on both ranks, as in one process
    assert_eq!(two["LR "], [r#"[("lr-Sgd", 0.01)]"#; 2], "{two:?}");
    assert_eq!(one["LR "], [r#"[("lr-Sgd", 0.01)]"#], "{one:?}");
    assert!(two["BESTPATH "][0].ends_with("epoch=7-own=0.ckpt"), "rank 0's best, named by rank 0's `own`: {two:?}");
    assert_eq!(one["STOPPED "], ["8 96"], "{one:?}");
}

/// `should_stop` set on one rank only stops every rank after the same batch, step 4 (Lightning's
/// `reduce_boolean_decision(should_stop, all=False)`); in one process the same hook stops
/// at the same step.
#[test]
fn a_stop_on_one_rank_stops_all_ranks_together() {
    let two = agree(2, &[("LIGHTNING_DDP_STOP_RANK", "1")]);
    assert_eq!(two["STOPPED "], ["1 4", "1 4"], "{two:?}");
    let one = agree(1, &[("LIGHTNING_DDP_STOP_RANK", "0")]);
    assert_eq!(one["STOPPED "], ["1 4"], "{one:?}");
}

/// SIGUSR1 raised on rank 1 alone after its third step stops both ranks after that batch with
/// the same `Error::Interrupted` (each rank used to check only its own signal: rank 1 stopped,
/// and rank 0 waited for it in the next gradient all-reduce until the collective timeout).
#[test]
fn a_signal_on_one_rank_stops_all_ranks_after_the_same_batch() {
    let dir = tempfile::tempdir().unwrap();
    let out = mpirun(2)
        .envs([
            ("LIGHTNING_DDP_WORKER", "agree"),
            ("LIGHTNING_DDP_ROOT", dir.path().to_str().unwrap()),
            ("LIGHTNING_COLLECTIVE_TIMEOUT", "20"),
            ("LIGHTNING_DDP_SIGNAL_RANK", "1"),
        ])
        .output()
        .expect("mpirun (scripts/setup-mpi.sh installs it)");
    let (text, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}\n{err}");
    assert_eq!(per_rank(&text, "INTERRUPTED "), ["SIGUSR1 0 3", "SIGUSR1 0 3"], "{text}\n{err}");
}

/// `Log::sync_dist(true)` in an epoch-end hook reduces the value over the ranks (mean 0.5 and
/// max 1 of the ranks 0 and 1); without it each rank keeps its own. A summed count logged
/// with `sync_dist` in `validation_step` is still counted once (10 rows, not 20). `all_gather`,
/// `all_reduce`, `barrier`, `broadcast` (from the last rank) and `reduce_boolean_decision`
/// work in hooks (a gather of tensors
/// of different shapes is an error on every rank), and change nothing in one process.
#[test]
fn hooks_sync_values_and_call_collectives() {
    let two = agree(2, &[]);
    assert_eq!(two["SYNCED "], ["0.5 1 0 10 10", "0.5 1 1 10 10"], "{two:?}");
    let collect = &two["COLLECT "];
    assert!(!collect.is_empty() && collect.len().is_multiple_of(2), "{collect:?}");
    // any rank (rank 1) decided true; not all did
    assert!(
        collect.iter().all(|l| l == "[0.0, 10.0, 1.0, 10.0] [1.0, 1.0, 0.0, 0.5] 1 true false true"),
        "{collect:?}"
    );
    let one = agree(1, &[]);
    assert_eq!(one["SYNCED "], ["0 0 0 10 10"]);
    assert!(one["COLLECT "].iter().all(|l| l == "[0.0, 10.0] [0.0, 0.0, 0.0, 0.0] 0 false false false"), "{one:?}");
}

/// `devices(N)`'s launcher tells a job whose ranks never started (here: an option mpirun does
/// not know) from one where a rank failed, and names a rank that never reached the trainer.
#[test]
fn ranks_that_never_started_are_reported_as_such() {
    use lightning::dist::{Spawn, Workers};
    let workers = || {
        Workers::new(std::env::current_exe().unwrap(), 2, Spawn::Mpirun)
            .args(["--exact", "ddp_worker", "--nocapture", "--test-threads=1"])
            .env("LIGHTNING_DDP_WORKER", "1")
            .env("LIGHTNING_DDP_LAUNCH", "flags")
            .env("LIGHTNING_COLLECTIVE_TIMEOUT", "20")
            .quiet()
    };
    let e = workers().mpirun("mpirun --no-such-option").run().unwrap_err().to_string();
    assert!(e.contains("before any rank reached the trainer"), "{e}");
    let e = workers().env("LIGHTNING_DDP_EXIT_RANK", "1").run().unwrap_err().to_string();
    assert!(e.contains("rank(s) 1 never reached the trainer"), "{e}");
}

/// bf16-mixed and 16-mixed under DDP: the ranks start from different seeds, so their f32
/// master weights must be rank 0's too (broadcast with the half-precision weights), or they
/// drift apart at the first step. Under 16-mixed the loss scaler must also skip the same
/// steps on every rank: the gradients it checks for inf/NaN are the averaged ones.
#[test]
fn mixed_precision_master_weights_are_the_same_on_every_rank() {
    for precision in ["bf16-mixed", "16-mixed"] {
        let vars = [("LIGHTNING_DDP_PRECISION", precision.to_string())];
        let one = run_with(1, &vars);
        let text = run_ok(2, &vars);
        let rank = |r: &str| tagged(&text, "PERRANK ").filter_map(|l| l.strip_prefix(r)).collect::<Vec<_>>();
        let (r0, r1) = (rank("0 "), rank("1 "));
        assert_eq!(r0.len(), 4, "{precision}: {text}");
        assert_eq!(r0, r1, "{precision}: both ranks end with the same f32 weights");
        // half-precision gradients averaged over 2 ranks round unlike one process's: near, not equal
        for (name, w) in &one {
            for (a, b) in weights(&text)[name].iter().zip(w) {
                assert!((a - b).abs() < 0.05, "{precision}, {name}: {a} vs {b}");
            }
        }
    }
}

/// `LearningRateFinder` under DDP: each rank sweeps on its shard and records the ranks' mean
/// loss, so every rank suggests what one process suggests; the sweep's updates are undone on
/// every rank, so the fit ends with the weights of a fit without the finder.
#[test]
fn learning_rate_finder_suggests_alike_on_every_rank() {
    let vars = [("LIGHTNING_DDP_LRFIND", "1".to_string())];
    let plain = run_with(2, &[]);
    let (one, two) = (run_ok(1, &vars), run_ok(2, &vars));
    let suggested =
        |text: &str| tagged(text, "LRFIND ").map(|l| l.split_once(' ').unwrap().1.to_string()).collect::<Vec<_>>();
    let (one_lr, two_lr) = (suggested(&one), suggested(&two));
    assert!(one_lr.len() == 1 && one_lr[0].starts_with("Some("), "{one}");
    assert_eq!(two_lr, [one_lr[0].clone(), one_lr[0].clone()], "both ranks suggest what one process does");
    assert_same(&weights(&two), &plain, "after the sweep the fit starts from the weights as they were");
}
