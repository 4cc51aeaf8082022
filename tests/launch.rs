//! `devices(N)`'s launcher for the NCCL backend, on CPUs: this test binary is run again as 3
//! ranks with torchrun's variables (`Spawn::Env`); each reads its place from the environment
//! and gets a token from rank 0 through the file rendezvous the launcher set and through a
//! TCP rendezvous on `MASTER_ADDR:MASTER_PORT` (the NCCL id's two ways), between processes.

use std::process::Command;
use std::time::{Duration, Instant};

use lightning::dist::{Launcher, Rendezvous, Spawn, Workers, WorldEnv};

/// One rank: writes `rank world local_rank file-token tcp-token` to `$LIGHTNING_LAUNCH_TEST/rank-N`.
fn rank_main(dir: &str) -> lightning::Result<()> {
    let env = WorldEnv::detect()?.expect("the launcher sets RANK and WORLD_SIZE");
    assert_eq!(env.launcher, Launcher::Torchrun);
    if std::env::var("LIGHTNING_LAUNCH_FAIL").is_ok() {
        if env.rank == 1 {
            std::process::exit(3);
        }
        // the others would run long: the launcher must stop them
        std::thread::sleep(Duration::from_secs(120));
    }
    let timeout = Duration::from_secs(60);
    let (world, rank) = (env.world_size, env.rank);
    let exchange = |r: &Rendezvous, token: String| -> lightning::Result<String> {
        if rank == 0 {
            r.publish(world, token.as_bytes(), timeout)?;
            Ok(token)
        } else {
            Ok(String::from_utf8(r.fetch(rank, world, timeout)?).unwrap())
        }
    };
    let file = exchange(&env.rendezvous_point()?, format!("file-{}", std::process::id()))?;
    let (host, port) = env.master.clone().expect("MASTER_ADDR and MASTER_PORT");
    let tcp = exchange(&Rendezvous::Tcp(format!("{host}:{port}")), format!("tcp-{}", std::process::id()))?;
    let line = format!("{rank} {world} {} {file} {tcp}", env.local_rank);
    std::fs::write(std::path::Path::new(dir).join(format!("rank-{rank}")), line).unwrap();
    Ok(())
}

#[test]
fn launch_worker() {
    if let Ok(dir) = std::env::var("LIGHTNING_LAUNCH_TEST") {
        rank_main(&dir).expect("the rank failed");
    }
}

fn workers(dir: &std::path::Path) -> Workers {
    Workers::new(std::env::current_exe().unwrap(), 3, Spawn::Env)
        .args(["--exact", "launch_worker", "--nocapture", "--test-threads=1"])
        .env("LIGHTNING_LAUNCH_TEST", dir)
        // the ranks report through files; their test harness lines would read as this run's
        .quiet()
}

#[test]
fn devices_start_ranks_that_meet_by_file_and_by_tcp() {
    let dir = tempfile::tempdir().unwrap();
    workers(dir.path()).run().unwrap();
    let lines: Vec<Vec<String>> = (0..3)
        .map(|r| {
            let text = std::fs::read_to_string(dir.path().join(format!("rank-{r}"))).unwrap();
            text.split_whitespace().map(String::from).collect()
        })
        .collect();
    for (r, l) in lines.iter().enumerate() {
        assert_eq!(l[..3], [r.to_string(), "3".into(), r.to_string()], "rank, world size, local rank");
        // rank 0's tokens (its pid) on every rank
        assert_eq!(l[3..], lines[0][3..], "rank {r}");
    }
    assert!(lines[0][3].starts_with("file-") && lines[0][4].starts_with("tcp-"));
}

#[test]
fn a_failing_rank_stops_the_others_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let err = workers(dir.path()).env("LIGHTNING_LAUNCH_FAIL", "1").run().unwrap_err();
    match &err {
        lightning::Error::WorkerFailed { rank, world, status } => {
            assert_eq!((*rank, *world, status.code()), (1, 3, Some(3)), "{err}");
        }
        other => panic!("{other}"),
    }
    // ranks 0 and 2 sleep for 120 s unless stopped
    assert!(start.elapsed() < Duration::from_secs(60), "{:?}", start.elapsed());
}

/// Without a backend for CPUs built in, `devices(2)` says which feature to build with;
/// with one, the launcher's own test is in tests/ddp.rs.
#[cfg(not(feature = "mpi"))]
#[test]
fn devices_without_a_backend_say_which_feature() {
    let err = lightning::Trainer::builder().accelerator(lightning::Accelerator::Cpu).devices(2).build().unwrap_err();
    assert!(err.to_string().contains("--features mpi"), "{err}");
}

/// A torchrun-style launch on CPUs is refused with the way that works.
#[test]
fn torchrun_variables_on_cpu_point_to_mpirun() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "cpu_torchrun_child", "--nocapture", "--test-threads=1"])
        .env("LIGHTNING_LAUNCH_CPU_CHILD", "1")
        .envs([("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "1")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("BUILD-ERROR") && text.contains("mpirun -np N"), "{text}");
}

#[test]
fn cpu_torchrun_child() {
    if std::env::var("LIGHTNING_LAUNCH_CPU_CHILD").is_ok() {
        let err = lightning::Trainer::builder().accelerator(lightning::Accelerator::Cpu).build().unwrap_err();
        println!("\nBUILD-ERROR {err}");
    }
}
