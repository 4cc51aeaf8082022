//! Checkpoints survive SIGKILL at any moment: a child process (this test binary, re-run on
//! an ignored test) writes checkpoints in a loop and is killed at random times, 20 times;
//! every `.ckpt` checkpoint left loads, `latest.ckpt` always loads (from the set-aside copy
//! when the kill fell between the two renames of a replacement), and no temporary directory
//! is mistaken for a checkpoint.
//!
//! The whole save sequence of training is killed too: a child trains with `ModelCheckpoint`
//! saving its top 2 and `last.ckpt` at every step (so the best is replaced and deleted all
//! the time), killed at random moments (`LIGHTNING_KILL_ROUNDS` times, 20 by default;
//! `scripts/kill-test.sh` runs 100). After each kill every checkpoint left loads, the
//! best that `last.ckpt` records and each of its top-k are there, and once the next run
//! has started no temporary or set-aside directory is left.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use lightning::callbacks::Mode;
use lightning::prelude::*;
use lightning::Checkpoint;

const DIR_VAR: &str = "LIGHTNING_SAVE_LOOP_DIR";

/// The child: rewrites `latest.ckpt` and numbered checkpoints until it is killed.
#[test]
#[ignore = "run by checkpoints_survive_sigkill in a child process"]
fn save_loop() {
    let Some(dir) = std::env::var_os(DIR_VAR) else { return };
    let dir = Path::new(&dir);
    let big = Tensor::arange(0f32, 400_000., &Device::Cpu).unwrap();
    for i in 0u64.. {
        let mut state_dict = BTreeMap::new();
        state_dict.insert("w".to_string(), (&big + i as f64).unwrap());
        let ck = Checkpoint { global_step: i as usize, state_dict, ..Checkpoint::default() };
        ck.save(&dir.join("latest.ckpt")).unwrap();
        ck.save(&dir.join(format!("step={}.ckpt", i % 3))).unwrap();
    }
}

#[test]
fn checkpoints_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut seen_steps = Vec::new();
    let mut interrupted = 0;
    for round in 0..20u64 {
        let mut child = Command::new(&exe)
            .args(["--ignored", "--exact", "save_loop", "--nocapture"])
            .env(DIR_VAR, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // the kill must land while the child saves, not while it starts (a busy machine can
        // take longer than the delay below to start it): wait for its first checkpoint
        let started = std::time::Instant::now();
        while !dir.path().join("latest.ckpt").exists() {
            assert!(started.elapsed() < Duration::from_secs(30), "round {round}: the saving child never saved");
            std::thread::sleep(Duration::from_millis(5));
        }
        // a different moment each round (deterministic, so failures reproduce)
        std::thread::sleep(Duration::from_millis(50 + (round * 37) % 200));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().unwrap().to_string_lossy().contains(".tmp-") {
                // a save the kill cut short; it never replaced a checkpoint
                interrupted += 1;
                std::fs::remove_dir_all(&path).unwrap();
                continue;
            }
            if path.extension().is_some_and(|e| e == "ckpt") {
                let ck = Checkpoint::load(&path)
                    .unwrap_or_else(|e| panic!("round {round}: {} does not load: {e}", path.display()));
                let w = ck.state_dict["w"].get(1).unwrap().to_scalar::<f32>().unwrap();
                assert_eq!(w as usize, 1 + ck.global_step, "round {round}: consistent contents");
            }
        }
        let ck = Checkpoint::load(&dir.path().join("latest.ckpt"))
            .unwrap_or_else(|e| panic!("round {round}: latest.ckpt does not load: {e}"));
        seen_steps.push(ck.global_step);
    }
    assert!(seen_steps.len() >= 19, "latest.ckpt is always there and whole: {seen_steps:?}");
    assert!(interrupted > 0, "some kills landed in the middle of a save");
}

const FIT_DIR_VAR: &str = "LIGHTNING_KILLED_FIT_DIR";

/// A large weight (saves take a while) and a score that jumps about, so top-k replaces
/// and deletes a checkpoint at most steps.
#[lightning_module]
struct Jumpy {
    vars: VarMap,
    w: Var,
}

#[lightning_module]
impl Jumpy {
    fn training_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        let _ = batch;
        trainer.log("score", ((trainer.global_step() * 7919) % 101) as f64)?;
        Ok((self.w.as_tensor().sum_all()? * 1e-9)?)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&self.vars, 0.01)
    }
}

fn jumpy() -> Jumpy {
    let w = Var::zeros(200_000, DType::F32, &Device::Cpu).unwrap();
    let vars = VarMap::new();
    vars.data().lock().unwrap().insert("w".into(), w.clone());
    Jumpy { vars, w }
}

fn trainer(dir: &Path, epochs: usize, top_k: i64) -> Trainer<()> {
    let ck = ModelCheckpoint::new()
        .dirpath(dir)
        .monitor("score")
        .mode(Mode::Max)
        .save_top_k(top_k)
        .save_last(top_k > 0)
        .every_n_train_steps(1)
        .filename("{step}");
    Trainer::builder()
        .max_epochs(epochs)
        .default_root_dir(dir)
        .enable_logger(false)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .checkpoint(ck)
        .build()
        .unwrap()
}

fn ones() -> DataLoader {
    let x = Tensor::ones((16, 1), DType::F32, &Device::Cpu).unwrap();
    DataLoader::new(x.clone(), x, 1).unwrap()
}

/// The child: trains and saves at every step until it is killed.
#[test]
#[ignore = "run by the whole_save_sequence_survives_sigkill test in a child process"]
fn fit_loop() {
    let Some(dir) = std::env::var_os(FIT_DIR_VAR) else { return };
    trainer(Path::new(&dir), 100_000, 2).fit(&mut jumpy(), Data::loader(ones())).unwrap();
}

/// The names in `dir`, hidden ones (temporary and set-aside copies) apart.
fn entries(dir: &Path) -> (Vec<std::path::PathBuf>, Vec<String>) {
    let (mut visible, mut hidden) = (Vec::new(), Vec::new());
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        match e.file_name().to_string_lossy().starts_with('.') {
            true => hidden.push(e.file_name().to_string_lossy().into_owned()),
            false => visible.push(e.path()),
        }
    }
    (visible, hidden)
}

/// What `last.ckpt` records as the best and the top-k: each must be there.
fn recorded(dir: &Path, last: &Checkpoint) -> Vec<std::path::PathBuf> {
    let state = &last.callbacks["ModelCheckpoint"];
    let name = |v: &lightning::serde_json::Value| dir.join(v.as_str().expect("a name"));
    let mut out: Vec<_> = state["best_k_models"].as_object().unwrap().keys().map(|k| dir.join(k)).collect();
    out.push(name(&state["best_model_path"]));
    out
}

#[test]
fn whole_save_sequence_survives_sigkill() {
    let rounds: u64 = std::env::var("LIGHTNING_KILL_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(20);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ck");
    let exe = std::env::current_exe().unwrap();
    let (mut rng, mut left_over) = (seed | 1, 0);
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args(["--ignored", "--exact", "fit_loop", "--nocapture"])
            .env(FIT_DIR_VAR, &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while !dir.join("last.ckpt").exists() {
            assert!(started.elapsed() < Duration::from_secs(60), "round {round}: the child never saved");
            std::thread::sleep(Duration::from_millis(5));
        }
        // xorshift: a different moment each round; the seed is printed on failure
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_micros(rng % 400_000));
        child.kill().unwrap();
        child.wait().unwrap();
        let at = format!("round {round} (seed {seed})");
        let (visible, hidden) = entries(&dir);
        left_over += hidden.len();
        for path in &visible {
            Checkpoint::load(path).unwrap_or_else(|e| panic!("{at}: {} does not load: {e}", path.display()));
        }
        let last = Checkpoint::load(&dir.join("last.ckpt")).unwrap_or_else(|e| panic!("{at}: last.ckpt: {e}"));
        for p in recorded(&dir, &last) {
            Checkpoint::load(&p)
                .unwrap_or_else(|e| panic!("{at}: last.ckpt records {}, which is gone: {e}", p.display()));
        }
        // the next run cleans what the killed one left as it starts (a run that saves nothing)
        trainer(&dir, 1, 0).fit(&mut jumpy(), Data::loader(ones())).unwrap();
        let (_, hidden) = entries(&dir);
        assert!(hidden.is_empty(), "{at}: left after the next run started: {hidden:?}");
    }
    eprintln!("{rounds} kills, {left_over} leftover temporary or set-aside directories cleaned (seed {seed})");
}
