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
    /// `mpirun -np N` of the program (the MPI backend). `$MPIRUN`, or [`Workers::mpirun`],
    /// replaces `mpirun` by a command line split as a shell does (`"mpirun --bind-to none"`).
    /// As root, OpenMPI's `OMPI_ALLOW_RUN_AS_ROOT=1` and `OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1`
    /// are set (unless already set): containers run as root.
    Mpirun,
}

/// The variable naming the directory where each rank that reached the trainer leaves a file
/// `rank-N`: how the launcher tells a rank that failed from one that never started.
pub(crate) const STARTED_VAR: &str = "LIGHTNING_STARTED_DIR";

/// OpenMPI refuses to run as root without these (its error says so, then ends mpirun).
const ROOT_VARS: [(&str, &str); 2] = [("OMPI_ALLOW_RUN_AS_ROOT", "1"), ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")];

/// Leaves this rank's mark for the launcher that started it, if one asked (`devices(N)`).
/// A mark that cannot be written only makes a later failure's message less precise.
pub(crate) fn mark_started(rank: usize) {
    if let Some(dir) = std::env::var_os(STARTED_VAR) {
        let _ = std::fs::write(PathBuf::from(dir).join(format!("rank-{rank}")), b"");
    }
}

/// Whether this process runs as root (the owner of `/proc/self` is the effective user).
fn running_as_root() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// `command` split as a shell splits words (quotes and backslashes); an error names the
/// variable it came from.
fn split_command(command: &str, from: &str) -> Result<(OsString, Vec<OsString>)> {
    let words = shlex::split(command).ok_or_else(|| {
        Error::config("devices", format!("{from} `{command}` is not a command line (an unclosed quote?)"))
    })?;
    let mut words = words.into_iter().map(OsString::from);
    let program =
        words.next().ok_or_else(|| Error::config("devices", format!("{from} is empty: unset it or name mpirun")))?;
    Ok((program, words.collect()))
}

/// A fresh directory for one job's files (rendezvous, marks): never shared with another job.
fn job_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "lightning-ddp-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(dir)
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
    mpirun: Option<String>,
}

impl Workers {
    /// This program, with the arguments it was started with.
    pub fn this_program(devices: usize, spawn: Spawn) -> Result<Self> {
        let program = std::env::current_exe().map_err(|e| Error::io("the running program", e))?;
        Ok(Workers::new(program, devices, spawn).args(std::env::args_os().skip(1)))
    }

    /// `program` run as `devices` ranks, started as `spawn` says, with no arguments yet.
    pub fn new(program: impl Into<PathBuf>, devices: usize, spawn: Spawn) -> Self {
        Workers {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            devices,
            spawn,
            quiet: false,
            mpirun: None,
        }
    }

    /// Arguments for every rank, after those given so far.
    pub fn args(mut self, args: impl IntoIterator<Item = impl Into<OsString>>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// An extra variable for every rank.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The command line that starts the ranks under [`Spawn::Mpirun`], split as a shell does
    /// (default: `$MPIRUN`, else `mpirun`).
    pub fn mpirun(mut self, command: impl Into<String>) -> Self {
        self.mpirun = Some(command.into());
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
        // a rendezvous file never outlives its job
        let dir = job_dir()?;
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
        let n = self.devices;
        let (mpirun, from) = match (&self.mpirun, std::env::var("MPIRUN")) {
            (Some(c), _) => (c.clone(), "Workers::mpirun"),
            (None, Ok(c)) => (c, "$MPIRUN"),
            (None, Err(_)) => ("mpirun".to_string(), "mpirun"),
        };
        let (program, pre) = split_command(&mpirun, from)?;
        let marks = job_dir()?;
        let mut cmd = Command::new(&program);
        cmd.args(&pre)
            .args(["-np", &n.to_string()])
            .arg(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(STARTED_VAR, &marks)
            // `devices(N)` asks for N processes whatever the core count, as in Lightning
            .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
            .stdout(self.stdout());
        if running_as_root() {
            for (k, v) in ROOT_VARS.iter().filter(|(k, _)| std::env::var_os(k).is_none()) {
                cmd.env(k, v);
            }
        }
        let status = cmd.status();
        let started: Vec<bool> = (0..n).map(|r| marks.join(format!("rank-{r}")).exists()).collect();
        let _ = std::fs::remove_dir_all(&marks);
        let status = status.map_err(|e| {
            Error::Device(format!(
                "cannot start {mpirun} ({}: {e}). devices(N) on CPUs runs the ranks under MPI: install OpenMPI (scripts/setup-mpi.sh) or set $MPIRUN to the command that starts them",
                PathBuf::from(&program).display()
            ))
        })?;
        if status.success() {
            return Ok(());
        }
        Err(Error::Device(mpirun_failure(&mpirun, n, &status.to_string(), &started)))
    }
}

/// What went wrong when `mpirun` failed, by which ranks reached the trainer.
fn mpirun_failure(mpirun: &str, n: usize, status: &str, started: &[bool]) -> String {
    let missing: Vec<String> = (0..n).filter(|&r| !started[r]).map(|r| r.to_string()).collect();
    if missing.len() == n {
        let root = if running_as_root() {
            " As root, OpenMPI also needs OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 (set here unless you set them otherwise) or --allow-run-as-root in $MPIRUN."
        } else {
            ""
        };
        format!(
            "`{mpirun} -np {n}` ended with {status} before any rank reached the trainer: mpirun, or the program before `build()`, failed (its message is above).{root}"
        )
    } else if !missing.is_empty() {
        format!(
            "`{mpirun} -np {n}` ended with {status}; rank(s) {} never reached the trainer (their messages, if any, are above)",
            missing.join(", ")
        )
    } else {
        format!("`{mpirun} -np {n}` ended with {status}: a rank failed (its error is printed above)")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launcher_commands_split_like_a_shell() {
        let (program, args) = split_command("mpirun --mca btl '^openib' -x \"A=b c\"", "$MPIRUN").unwrap();
        assert_eq!(program, "mpirun");
        assert_eq!(args, ["--mca", "btl", "^openib", "-x", "A=b c"]);
        assert!(split_command("mpirun 'open", "$MPIRUN").unwrap_err().to_string().contains("unclosed quote"));
        assert!(split_command("  ", "$MPIRUN").unwrap_err().to_string().contains("$MPIRUN is empty"));
    }

    #[test]
    fn failures_say_which_ranks_never_started() {
        let none = mpirun_failure("mpirun", 2, "exit status: 1", &[false, false]);
        assert!(none.contains("before any rank reached the trainer"), "{none}");
        let one = mpirun_failure("mpirun", 3, "exit status: 1", &[true, false, true]);
        assert!(one.contains("rank(s) 1 never reached the trainer"), "{one}");
        let all = mpirun_failure("mpirun", 2, "exit status: 1", &[true, true]);
        assert!(all.contains("a rank failed"), "{all}");
    }
}
