//! Lightning's `strategy`, `devices` and `num_nodes` flags: one process, or the ranks of a
//! data-parallel job — joined when a launcher started this process, started here (and
//! waited for) when `devices(N)` asks for more processes than there are.

use std::sync::Arc;

use candle_core::Device;

use super::TrainerConfig;
use crate::dist::{self, wants_cuda, Collective, Spawn, Workers, WorldEnv};
use crate::{Error, Result};

/// Lightning's `strategy` flag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// DDP when more than one process trains (a launcher's job, or `devices(N > 1)`), else
    /// one device.
    #[default]
    Auto,
    /// One process on one device; `devices` and `num_nodes` must be 1.
    SingleDevice,
    /// Data-parallel: one process per device, gradients averaged after every backward.
    Ddp,
}

impl std::str::FromStr for Strategy {
    type Err = Error;
    /// Lightning's names: `"auto"`, `"single_device"`, `"ddp"`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Strategy::Auto),
            "single_device" | "single" => Ok(Strategy::SingleDevice),
            "ddp" => Ok(Strategy::Ddp),
            other => Err(Error::config("strategy", format!("`{other}` is not one of auto, single_device, ddp"))),
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Strategy::Auto => "auto",
            Strategy::SingleDevice => "single_device",
            Strategy::Ddp => "ddp",
        })
    }
}

/// The process group (none for one process) and this process's device.
pub(crate) fn resolve(
    config: &TrainerConfig,
    explicit: Option<Arc<dyn Collective>>,
) -> Result<(Option<Arc<dyn Collective>>, Device)> {
    let (strategy, devices, nodes) = (config.strategy, config.devices, config.num_nodes);
    if devices == Some(0) {
        return Err(Error::config("devices", "must be at least 1"));
    }
    if nodes == 0 {
        return Err(Error::config("num_nodes", "must be at least 1"));
    }
    if let Some(world) = explicit {
        dist::mark_started(world.rank());
        // `ddp(world)`: the caller joined the job
        let device = dist::rank_device(config.accelerator, world.local_rank())?;
        return Ok((Some(world), device));
    }
    if strategy == Strategy::SingleDevice {
        if devices.unwrap_or(1) > 1 || nodes > 1 {
            return Err(Error::config(
                "strategy",
                "single_device trains one process on one device: drop devices/num_nodes, or use ddp",
            ));
        }
        return Ok((None, config.accelerator.device()?));
    }
    match WorldEnv::detect()? {
        Some(env) => {
            dist::mark_started(env.rank);
            check_against_launcher(&env, devices, nodes)?;
            if env.world_size == 1 && strategy == Strategy::Auto {
                return Ok((None, config.accelerator.device()?));
            }
            let (world, device) = dist::connect(&env, config.accelerator)?;
            Ok((Some(world), device))
        }
        None => {
            let n = devices.unwrap_or(1);
            if nodes > 1 {
                return Err(Error::config(
                    "num_nodes",
                    "a job on several nodes is started on every node by a launcher: `mpirun` across the hosts, or torchrun-style RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT on each process",
                ));
            }
            if n == 1 {
                return Ok((None, config.accelerator.device()?));
            }
            let spawn = if wants_cuda(config.accelerator) && cfg!(feature = "nccl") {
                Spawn::Env
            } else if cfg!(feature = "mpi") {
                Spawn::Mpirun
            } else {
                return Err(Error::config(
                    "devices",
                    format!("{n} devices train as {n} processes, which need a backend: rebuild with `--features mpi` (CPUs) or `--features nccl` (CUDA GPUs)"),
                ));
            };
            // this process becomes the launcher: the ranks run the program again, with the
            // launcher's variables set, and reach this point as ranks of the job
            let code = match Workers::this_program(n, spawn)?.run() {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("{e}");
                    1
                }
            };
            std::process::exit(code)
        }
    }
}

/// `devices` and `num_nodes`, where given, must describe the job the launcher started.
fn check_against_launcher(env: &WorldEnv, devices: Option<usize>, nodes: usize) -> Result<()> {
    let Some(d) = devices else {
        return Ok(());
    };
    if d * nodes != env.world_size {
        return Err(Error::config(
            "devices",
            format!(
                "devices({d}) × num_nodes({nodes}) is {}, but the launcher started {} processes: make them agree, or leave devices unset to take the launcher's",
                d * nodes,
                env.world_size
            ),
        ));
    }
    match env.local_world_size {
        Some(local) if local != d => Err(Error::config(
            "devices",
            format!("devices({d}), but the launcher started {local} processes on this node"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(world: usize, local: Option<usize>) -> WorldEnv {
        WorldEnv {
            launcher: dist::Launcher::Torchrun,
            rank: 0,
            world_size: world,
            local_rank: 0,
            local_world_size: local,
            master: None,
            rendezvous: None,
        }
    }

    #[test]
    fn devices_and_nodes_must_match_the_launcher() {
        assert!(check_against_launcher(&env(4, Some(2)), None, 1).is_ok());
        assert!(check_against_launcher(&env(4, Some(2)), Some(2), 2).is_ok());
        let e = check_against_launcher(&env(4, Some(2)), Some(4), 1).unwrap_err().to_string();
        assert!(e.contains("started 2 processes on this node"), "{e}");
        let e = check_against_launcher(&env(4, None), Some(2), 1).unwrap_err().to_string();
        assert!(e.contains("is 2, but the launcher started 4"), "{e}");
    }

    #[test]
    fn strategies_parse_by_lightnings_names() {
        assert_eq!("ddp".parse::<Strategy>().unwrap(), Strategy::Ddp);
        assert_eq!("single_device".parse::<Strategy>().unwrap(), Strategy::SingleDevice);
        assert!("fsdp".parse::<Strategy>().unwrap_err().to_string().contains("auto, single_device, ddp"));
    }

    #[test]
    fn bad_counts_and_single_device_with_many_are_config_errors() {
        let cfg = |f: fn(&mut TrainerConfig)| {
            let mut c = TrainerConfig::default();
            f(&mut c);
            resolve(&c, None).map(|_| ()).unwrap_err().to_string()
        };
        assert!(cfg(|c| c.devices = Some(0)).contains("devices"));
        assert!(cfg(|c| c.num_nodes = 0).contains("num_nodes"));
        assert!(cfg(|c| {
            c.strategy = Strategy::SingleDevice;
            c.devices = Some(2);
        })
        .contains("single_device"));
    }
}
