//! Which launcher started this process, read from its environment: `mpirun` (OpenMPI's
//! `OMPI_COMM_WORLD_*`, MPICH's `PMI_*`) or a torchrun-style launch (`RANK`, `WORLD_SIZE`,
//! `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`), which is also what `devices(N)` sets for the
//! processes it starts.

use super::rendezvous::Rendezvous;
use crate::{Error, Result};

/// The program that started this process as one rank of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// `mpirun` / `mpiexec` (OpenMPI or MPICH): the ranks talk over MPI.
    Mpirun,
    /// `torchrun`, a cluster script, or `devices(N)`: `RANK`, `WORLD_SIZE`, ... are set.
    Torchrun,
}

/// This process's place in a job, as its launcher described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorldEnv {
    /// Which launcher started the process.
    pub launcher: Launcher,
    /// The global rank (`RANK`, `OMPI_COMM_WORLD_RANK`, ...).
    pub rank: usize,
    /// The number of processes in the job (`WORLD_SIZE`, `OMPI_COMM_WORLD_SIZE`, ...).
    pub world_size: usize,
    /// The rank among the processes of this node: the GPU it uses.
    pub local_rank: usize,
    /// Processes on this node, where the launcher says.
    pub local_world_size: Option<usize>,
    /// `MASTER_ADDR` and `MASTER_PORT`, where set.
    pub master: Option<(String, u16)>,
    /// `LIGHTNING_RENDEZVOUS` (`file:PATH` or `tcp:HOST:PORT`), where set.
    pub rendezvous: Option<Rendezvous>,
}

/// Set by `devices(N)` in the processes it starts: the rendezvous to use.
pub const RENDEZVOUS_VAR: &str = "LIGHTNING_RENDEZVOUS";

/// A timeout from the environment variable `var` in seconds (fractions allowed), else
/// `default` (also for values that are not a positive number).
pub(crate) fn duration_var(var: &str, default: std::time::Duration) -> std::time::Duration {
    std::env::var(var)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(default, std::time::Duration::from_secs_f64)
}

impl WorldEnv {
    /// The launcher's description of this process, from the environment; `None` when no
    /// launcher started it.
    pub fn detect() -> Result<Option<Self>> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// As [`detect`](Self::detect), reading variables through `var`.
    ///
    /// ```
    /// use lightning::dist::{Launcher, WorldEnv};
    /// let vars = [("RANK", "1"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "1"), ("MASTER_ADDR", "node0"), ("MASTER_PORT", "29500")];
    /// let env = WorldEnv::from_vars(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))?.unwrap();
    /// assert_eq!((env.launcher, env.rank, env.world_size, env.local_rank), (Launcher::Torchrun, 1, 2, 1));
    /// assert_eq!(env.master, Some(("node0".to_string(), 29500)));
    /// # Ok::<(), lightning::Error>(())
    /// ```
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        // (launcher, rank, size, local rank, local size): OpenMPI, MPICH's Hydra, torchrun
        const SCHEMES: [(Launcher, &str, &str, &str, &str); 3] = [
            (
                Launcher::Mpirun,
                "OMPI_COMM_WORLD_RANK",
                "OMPI_COMM_WORLD_SIZE",
                "OMPI_COMM_WORLD_LOCAL_RANK",
                "OMPI_COMM_WORLD_LOCAL_SIZE",
            ),
            (Launcher::Mpirun, "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
            (Launcher::Torchrun, "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"),
        ];
        let Some((launcher, rank_var, size_var, local_var, local_size_var)) =
            SCHEMES.into_iter().find(|s| var(s.2).is_some())
        else {
            return Ok(None);
        };
        let number = |name: &'static str| -> Result<Option<usize>> {
            var(name)
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| Error::LaunchEnv {
                        var: name,
                        value: v.clone(),
                        reason: "not a whole number".into(),
                    })
                })
                .transpose()
        };
        let world_size = number(size_var)?.unwrap_or(1);
        let rank = number(rank_var)?.ok_or_else(|| Error::LaunchEnv {
            var: rank_var,
            value: String::new(),
            reason: format!("unset, though {size_var} is set: the launcher must set both"),
        })?;
        let bad =
            |name: &'static str, v: usize, reason: String| Error::LaunchEnv { var: name, value: v.to_string(), reason };
        if world_size == 0 {
            return Err(bad(size_var, 0, "a job has at least one process".into()));
        }
        if rank >= world_size {
            return Err(bad(rank_var, rank, format!("ranks are 0..{world_size} ({size_var}={world_size})")));
        }
        let local_rank = number(local_var)?.unwrap_or(rank);
        let local_world_size = number(local_size_var)?;
        if let Some(n) = local_world_size {
            if local_rank >= n {
                return Err(bad(local_var, local_rank, format!("local ranks are 0..{n} ({local_size_var}={n})")));
            }
        }
        let master = match (var("MASTER_ADDR"), var("MASTER_PORT")) {
            (Some(addr), Some(port)) => {
                let port = port.trim().parse::<u16>().map_err(|_| Error::LaunchEnv {
                    var: "MASTER_PORT",
                    value: port.clone(),
                    reason: "not a TCP port".into(),
                })?;
                Some((addr, port))
            }
            _ => None,
        };
        let rendezvous = var(RENDEZVOUS_VAR).map(|spec| Rendezvous::parse(&spec)).transpose()?;
        Ok(Some(WorldEnv { launcher, rank, world_size, local_rank, local_world_size, master, rendezvous }))
    }

    /// Where rank 0 shares the NCCL id: `LIGHTNING_RENDEZVOUS` if set, else a TCP
    /// rendezvous on `MASTER_ADDR:MASTER_PORT`.
    pub fn rendezvous_point(&self) -> Result<Rendezvous> {
        if let Some(r) = &self.rendezvous {
            return Ok(r.clone());
        }
        match &self.master {
            Some((addr, port)) => Ok(Rendezvous::Tcp(format!("{addr}:{port}"))),
            None => Err(Error::LaunchEnv {
                var: "MASTER_ADDR",
                value: String::new(),
                reason: format!(
                    "unset: the ranks need a meeting point; set MASTER_ADDR and MASTER_PORT to rank 0's host and a free port, or {RENDEZVOUS_VAR}=file:PATH on one node"
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Option<WorldEnv>> {
        WorldEnv::from_vars(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn no_launcher_is_none() {
        assert_eq!(env(&[("PATH", "/bin")]).unwrap(), None);
    }

    #[test]
    fn mpirun_variables_win_over_torchrun_ones() {
        let e = env(&[
            ("OMPI_COMM_WORLD_RANK", "3"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
            ("RANK", "0"),
            ("WORLD_SIZE", "1"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            (e.launcher, e.rank, e.world_size, e.local_rank, e.local_world_size),
            (Launcher::Mpirun, 3, 4, 1, Some(2))
        );
        let e = env(&[("PMI_RANK", "1"), ("PMI_SIZE", "2")]).unwrap().unwrap();
        assert_eq!((e.launcher, e.rank, e.local_rank), (Launcher::Mpirun, 1, 1));
    }

    #[test]
    fn torchrun_variables_and_the_rendezvous() {
        let e = env(&[
            ("RANK", "2"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "0"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "29500"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(e.rendezvous_point().unwrap(), Rendezvous::Tcp("10.0.0.1:29500".into()));
        let e = env(&[("RANK", "0"), ("WORLD_SIZE", "2"), (RENDEZVOUS_VAR, "file:/tmp/x/id")]).unwrap().unwrap();
        assert_eq!(e.rendezvous_point().unwrap(), Rendezvous::File("/tmp/x/id".into()));
        let e = env(&[("RANK", "0"), ("WORLD_SIZE", "2")]).unwrap().unwrap();
        assert!(e.rendezvous_point().unwrap_err().to_string().contains("MASTER_ADDR"));
    }

    #[test]
    fn malformed_variables_are_typed_errors_naming_them() {
        let msg = |vars: &[(&str, &str)]| env(vars).unwrap_err().to_string();
        assert!(msg(&[("RANK", "one"), ("WORLD_SIZE", "2")]).contains("RANK=\"one\": not a whole number"));
        assert!(msg(&[("RANK", "2"), ("WORLD_SIZE", "2")]).contains("ranks are 0..2"));
        assert!(msg(&[("WORLD_SIZE", "2")]).contains("RANK"));
        assert!(msg(&[("RANK", "0"), ("WORLD_SIZE", "0")]).contains("at least one"));
        assert!(msg(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "2"), ("LOCAL_WORLD_SIZE", "2")])
            .contains("local ranks are 0..2"));
        assert!(msg(&[("RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "http")])
            .contains("not a TCP port"));
        assert!(msg(&[("RANK", "0"), ("WORLD_SIZE", "1"), (RENDEZVOUS_VAR, "carrier-pigeon")]).contains("file:"));
    }
}
