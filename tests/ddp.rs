//! Data-parallel training over MPI (feature `mpi`; `scripts/setup-mpi.sh` installs OpenMPI):
//! a small regression MLP trained by the `Trainer` with `.ddp(..)` for 20 steps, global batch
//! 8 split over the ranks, under `mpirun` with 1, 2 and 4 ranks, ends with the same weights,
//! though every rank starts from its own random ones (DDP broadcasts rank 0's).
//!
//! The ranks are this test binary itself, re-run by `mpirun` with only the `ddp_worker` test
//! selected and `LIGHTNING_DDP_WORKER` set; MPI is never initialised in the harness that
//! runs the other tests.
#![cfg(feature = "mpi")]

use std::collections::BTreeMap;
use std::process::Command;

use std::sync::Arc;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarMap};
use lightning::dist::{Collective, Mpi};
use lightning::prelude::*;

const SAMPLES: usize = 64;
const GLOBAL_BATCH: usize = 8;

#[lightning_module]
struct Regression {
    vars: VarMap,
    l1: Linear,
    l2: Linear,
}

#[lightning_module]
impl Regression {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        let out = self.l2.forward(&self.l1.forward(&batch.0)?.tanh()?)?;
        (out - &batch.1)?.sqr()?.mean_all()
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::with_config(&self.vars, SgdConfig { lr: 0.1, momentum: 0.9, ..Default::default() })
    }
}

/// One rank's training; rank 0 prints the final weights as `WEIGHT <name> <values…>` lines.
fn worker() -> lightning::Result<()> {
    let world = Arc::new(Mpi::init()?);
    let (rank, size) = (world.rank(), world.world_size());
    if GLOBAL_BATCH % size != 0 {
        return Err(lightning::Error::msg(format!("{size} ranks do not split a global batch of {GLOBAL_BATCH}")));
    }
    let dev = Device::Cpu;
    let vars = VarMap::new();
    let vb = lightning::seeded_var_builder(&vars, 100 + rank as u64, DType::F64, &dev);
    let mut model =
        Regression { l1: candle_nn::linear(4, 8, vb.pp("l1"))?, l2: candle_nn::linear(8, 1, vb.pp("l2"))?, vars };
    let x: Vec<f64> = (0..SAMPLES * 4).map(|i| ((i * 37 % 101) as f64 / 50.0 - 1.0).sin()).collect();
    let x = Tensor::from_vec(x, (SAMPLES, 4), &dev)?;
    let y = x.sum_keepdim(1)?.sin()?;
    let loader = DataLoader::new(x, y, GLOBAL_BATCH / size)?;
    let mut trainer = Trainer::builder()
        .max_steps(20)
        .num_sanity_val_steps(0)
        .enable_checkpointing(false)
        .enable_logger(false)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .ddp(world.clone())
        .build()?;
    trainer.fit_with(&mut model, loader, None::<DataLoader>)?;
    if rank == 0 {
        let data = model.vars.data().lock().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for name in names {
            let v = data[name].as_tensor().flatten_all()?.to_vec1::<f64>()?;
            println!("\nWEIGHT {name} {}", v.iter().map(|x| format!("{x:.12e}")).collect::<Vec<_>>().join(" "));
        }
    }
    Ok(())
}

/// The test harness entry of a rank; does nothing unless `mpirun` started it for `run`.
#[test]
fn ddp_worker() {
    if std::env::var_os("LIGHTNING_DDP_WORKER").is_some() {
        worker().expect("the rank failed");
    }
}

/// The weights rank 0 prints, by variable name.
fn run(ranks: usize) -> BTreeMap<String, Vec<f64>> {
    let out = Command::new("mpirun")
        .args(["-np", &ranks.to_string()])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "ddp_worker", "--nocapture", "--test-threads=1"])
        .env("LIGHTNING_DDP_WORKER", "1")
        // root in CI containers; more ranks than the 2 cores
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("mpirun (scripts/setup-mpi.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{ranks} ranks failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    text.lines()
        // the harness prints `test ddp_worker ... ` before the rank's own lines
        .filter_map(|l| l.find("WEIGHT ").map(|at| &l[at + "WEIGHT ".len()..]))
        .map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next().unwrap().to_string();
            (name, parts.map(|v| v.parse().unwrap()).collect())
        })
        .collect()
}

#[test]
fn ranks_train_the_same_weights_as_one_process() {
    let one = run(1);
    assert_eq!(one.len(), 4, "{one:?}");
    for ranks in [2, 4] {
        let many = run(ranks);
        assert_eq!(many.keys().collect::<Vec<_>>(), one.keys().collect::<Vec<_>>());
        for (name, want) in &one {
            for (a, b) in many[name].iter().zip(want) {
                assert!((a - b).abs() < 1e-5, "{ranks} ranks: {name} differs: {a} vs {b}");
            }
        }
    }
}
