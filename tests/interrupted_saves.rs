//! Checkpoints survive SIGKILL at any moment: a child process (this test binary, re-run on
//! an ignored test) writes checkpoints in a loop and is killed at random times, 20 times;
//! every `.ckpt` checkpoint left loads, `latest.ckpt` always loads (from the set-aside copy
//! when the kill fell between the two renames of a replacement), and no temporary directory
//! is mistaken for a checkpoint.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use candle_core::{Device, Tensor};
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
