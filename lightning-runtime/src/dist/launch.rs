//! `devices(N)` on one node without a launcher: this program runs again as N ranks, as
//! Lightning's subprocess launcher does, and the first process waits for them.
//!
//! Two ways, by backend: N copies with torchrun's variables that meet through a file (NCCL,
//! GPUs), or `mpirun -np N` of this program (MPI, CPUs). The launching process trains
//! nothing; it stops every rank as soon as one fails, and returns the job's outcome.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use super::env::RENDEZVOUS_VAR;
use crate::{Error, Result};

/// How the ranks are started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spawn {
    /// N copies with `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`,
    /// `MASTER_PORT` and `LIGHTNING_RENDEZVOUS=file:..` set (the NCCL backend).
    Env,
    /// `mpirun -np N` (`$MPIRUN` if set) of the program (the MPI backend).
    Mpirun,
}

/// A program to run as the N ranks of a one-node job.
#[derive(Debug, Clone)]
#[must_use]
pub struct Workers {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    devices: usize,
    spawn: Spawn,
    quiet: bool,
}

impl Workers {
    /// This program, with the arguments it was started with.
    pub fn this_program(devices: usize, spawn: Spawn) -> Result<Self> {
        let program = std::env::current_exe().map_err(|e| Error::io("the running program", e))?;
        Ok(Workers::new(program, devices, spawn).args(std::env::args_os().skip(1)))
    }

    pub fn new(program: impl Into<PathBuf>, devices: usize, spawn: Spawn) -> Self {
        Workers { program: program.into(), args: Vec::new(), env: Vec::new(), devices, spawn, quiet: false }
    }

    pub fn args(mut self, args: impl IntoIterator<Item = impl Into<OsString>>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// An extra variable for every rank.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Discards the ranks' standard output (their errors still show).
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    fn stdout(&self) -> std::process::Stdio {
        if self.quiet {
            std::process::Stdio::null()
        } else {
            std::process::Stdio::inherit()
        }
    }

    /// Runs the ranks to their end: `Ok` when all succeeded, else the first failure, after
    /// the other ranks were stopped.
    pub fn run(self) -> Result<()> {
        if self.devices == 0 {
            return Err(Error::config("devices", "must be at least 1"));
        }
        match self.spawn {
            Spawn::Env => self.run_copies(),
            Spawn::Mpirun => self.run_mpirun(),
        }
    }

    fn run_copies(self) -> Result<()> {
        let n = self.devices;
        // a fresh directory per job: a rendezvous file never outlives its job
        let dir = std::env::temp_dir().join(format!(
            "lightning-ddp-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::io("a free local TCP port", e))?
            .port();
        let mut children: Vec<Child> = Vec::with_capacity(n);
        let result = (|| {
            for rank in 0..n {
                let mut cmd = Command::new(&self.program);
                cmd.args(&self.args)
                    .envs(self.env.iter().map(|(k, v)| (k, v)))
                    .env("RANK", rank.to_string())
                    .env("LOCAL_RANK", rank.to_string())
                    .env("WORLD_SIZE", n.to_string())
                    .env("LOCAL_WORLD_SIZE", n.to_string())
                    .env("NODE_RANK", "0")
                    .env("MASTER_ADDR", "127.0.0.1")
                    .env("MASTER_PORT", port.to_string())
                    .env(RENDEZVOUS_VAR, format!("file:{}", dir.join("nccl-id").display()))
                    .stdout(self.stdout());
                children.push(cmd.spawn().map_err(|e| Error::io(&self.program, e))?);
            }
            supervise(&mut children)
        })();
        for c in &mut children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    fn run_mpirun(self) -> Result<()> {
        let mpirun = std::env::var_os("MPIRUN").unwrap_or_else(|| "mpirun".into());
        let status = Command::new(&mpirun)
            .args(["-np", &self.devices.to_string()])
            .arg(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            // `devices(N)` asks for N processes whatever the core count, as in Lightning
            .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
            .stdout(self.stdout())
            .status()
            .map_err(|e| Error::Device(format!(
                "cannot start {}: {e}. devices(N) on CPUs runs the ranks under MPI: install OpenMPI (scripts/setup-mpi.sh) or set $MPIRUN",
                PathBuf::from(&mpirun).display()
            )))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::Device(format!(
                "mpirun -np {} ended with {status}: a rank failed (its error is printed above)",
                self.devices
            )))
        }
    }
}

/// Waits for every child; on the first failure, returns it (the caller stops the rest).
fn supervise(children: &mut [Child]) -> Result<()> {
    let world = children.len();
    let mut done = vec![false; world];
    while done.iter().any(|d| !d) {
        for (rank, child) in children.iter_mut().enumerate() {
            if done[rank] {
                continue;
            }
            if let Some(status) = child.try_wait().map_err(|e| Error::io("a rank", e))? {
                if !status.success() {
                    return Err(Error::WorkerFailed { rank, world, status });
                }
                done[rank] = true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
