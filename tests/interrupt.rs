//! Ctrl-C stops training gracefully: the child process (this test binary, on an ignored
//! test) gets SIGINT mid-training; `on_exception` runs, `OnExceptionCheckpoint` writes a
//! checkpoint that loads, and the run ends with `Error::Interrupted` (exit status 42 here).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use lightning::prelude::*;
use lightning::{Checkpoint, OnExceptionCheckpoint};

const DIR_VAR: &str = "LIGHTNING_INTERRUPT_DIR";

#[lightning_module]
struct Slow {
    vars: VarMap,
    w: Var,
    ready: std::path::PathBuf,
}

#[lightning_module]
impl Slow {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        std::thread::sleep(Duration::from_millis(20));
        batch.0.matmul(self.w.as_tensor())?.sum_all()
    }
    fn on_train_batch_end(&mut self) -> std::io::Result<()> {
        std::fs::write(&self.ready, b"training")
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&self.vars, 0.01)
    }
}

#[test]
#[ignore = "run by ctrl_c_stops_gracefully in a child process"]
fn interrupted_child() {
    let Some(dir) = std::env::var_os(DIR_VAR) else { return };
    let dir = Path::new(&dir);
    let w = Var::zeros((1, 1), DType::F32, &Device::Cpu).unwrap();
    let vars = VarMap::new();
    vars.data().lock().unwrap().insert("w".into(), w.clone());
    let mut m = Slow { vars, w, ready: dir.join("ready") };
    let x = Tensor::ones((10_000, 1), DType::F32, &Device::Cpu).unwrap();
    let mut t = Trainer::builder()
        .accelerator(Accelerator::Cpu)
        .enable_checkpointing(false)
        .max_epochs(1)
        .callbacks((OnExceptionCheckpoint::new(dir),))
        .build()
        .unwrap();
    match t.fit_with(&mut m, DataLoader::new(x.clone(), x, 1).unwrap(), None::<DataLoader>) {
        Err(lightning::Error::Interrupted { .. }) => std::process::exit(42),
        other => panic!("expected an interruption, got {other:?}"),
    }
}

#[test]
fn ctrl_c_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "interrupted_child", "--nocapture"])
        .env(DIR_VAR, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.path().join("ready").exists() {
        assert!(Instant::now() < deadline, "the child never started training");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: sends a signal to our own child process, which is still running (not yet waited for).
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(42), "the run ended with Error::Interrupted");
    let ck = Checkpoint::load(&dir.path().join("on_exception.ckpt")).unwrap();
    assert!(ck.global_step > 0 && !ck.epoch_complete, "saved mid-epoch at step {}", ck.global_step);
    assert_eq!(ck.batches_done, ck.global_step);
}
