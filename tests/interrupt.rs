//! Ctrl-C and preemption signals stop training gracefully: the child process (this test
//! binary, on an ignored test) gets SIGINT, SIGTERM, SIGUSR1 or SIGHUP mid-training;
//! `on_exception` runs, `OnExceptionCheckpoint` writes a mid-epoch checkpoint that loads, and
//! the run ends with `Error::Interrupted` naming the signal, the process with 128 + its
//! number. Under SLURM with `auto_requeue`, SIGUSR1 requeues the job through `scontrol` (a
//! fake one on `PATH` here, recording its arguments).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use lightning::prelude::*;
use lightning::{Checkpoint, OnExceptionCheckpoint};

const DIR_VAR: &str = "LIGHTNING_INTERRUPT_DIR";
const REQUEUE_VAR: &str = "LIGHTNING_INTERRUPT_REQUEUE";

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
#[ignore = "run by the signal tests in a child process"]
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
        .auto_requeue(std::env::var_os(REQUEUE_VAR).is_some())
        .callbacks((OnExceptionCheckpoint::new(dir),))
        .build()
        .unwrap();
    match t.fit(&mut m, Data::loader(DataLoader::new(x.clone(), x, 1).unwrap())) {
        Err(e @ lightning::Error::Interrupted { .. }) => {
            std::fs::write(dir.join("error"), e.to_string()).unwrap();
            std::process::exit(e.exit_code())
        }
        other => panic!("expected an interruption, got {other:?}"),
    }
}

/// Starts the child in `dir`, waits until it trains, sends `signal`, and returns its exit
/// status and error message.
fn interrupt_child(dir: &Path, signal: libc::c_int, env: &[(&str, &std::ffi::OsStr)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--ignored", "--exact", "interrupted_child", "--nocapture"]).env(DIR_VAR, dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // SAFETY: `signal` is async-signal-safe; the child starts with the default dispositions
    // even where this test runs under `nohup` (which ignores SIGHUP, and the handler leaves
    // an ignored signal alone, as it should)
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1, libc::SIGHUP] {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        });
    }
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.join("ready").exists() {
        assert!(Instant::now() < deadline, "the child never started training");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: sends a signal to our own child process, which is still running (not yet waited for).
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(sent, 0);
    let status = child.wait().unwrap();
    (status.code(), std::fs::read_to_string(dir.join("error")).unwrap_or_default())
}

#[test]
fn ctrl_c_and_preemption_signals_stop_gracefully() {
    for (signal, name) in [
        (libc::SIGINT, "Ctrl-C (SIGINT)"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGHUP, "SIGHUP"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (code, error) = interrupt_child(dir.path(), signal, &[]);
        assert_eq!(code, Some(128 + signal), "{name}: exit status 128 + the signal ({error})");
        assert!(error.starts_with(&format!("interrupted by {name} at epoch 0, step ")), "{error}");
        let ck = Checkpoint::load(&dir.path().join("on_exception.ckpt")).unwrap();
        assert!(ck.global_step > 0 && !ck.epoch_complete, "{name}: saved mid-epoch at step {}", ck.global_step);
        assert_eq!(ck.batches_done, ck.global_step);
        assert_eq!(ck.optimizers.len(), 1, "{name}: the optimizer's state is in it");
    }
}

/// Lightning's `SLURMEnvironment(auto_requeue=True)`: SIGUSR1 requeues the job after the
/// checkpoint is written; SIGTERM (`scancel`) does not.
#[test]
fn under_slurm_sigusr1_requeues_the_job() {
    let bin = tempfile::tempdir().unwrap();
    let log = bin.path().join("scontrol.log");
    let script = bin.path().join("scontrol");
    std::fs::write(&script, format!("#!/bin/sh\necho \"$@\" >> '{}'\n", log.display())).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = std::env::join_paths(
        std::iter::once(bin.path().to_path_buf()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let on = std::ffi::OsStr::new("1");
    let env = [("PATH", path.as_os_str()), ("SLURM_JOB_ID", std::ffi::OsStr::new("4242")), (REQUEUE_VAR, on)];

    let dir = tempfile::tempdir().unwrap();
    let (code, _) = interrupt_child(dir.path(), libc::SIGTERM, &env);
    assert_eq!(code, Some(128 + libc::SIGTERM));
    assert!(!log.exists(), "SIGTERM does not requeue");

    let dir = tempfile::tempdir().unwrap();
    let (code, error) = interrupt_child(dir.path(), libc::SIGUSR1, &env);
    assert_eq!(code, Some(128 + libc::SIGUSR1), "{error}");
    assert!(dir.path().join("on_exception.ckpt").is_dir(), "the checkpoint was written");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "requeue 4242\n");
}
