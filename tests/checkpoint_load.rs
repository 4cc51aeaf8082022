//! Loading a checkpoint is all or nothing, and `trainer_state.json` shows only what it holds.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarMap};
use lightning::prelude::*;

#[lightning_module]
struct Net {
    vars: VarMap,
    a: Linear,
    b: Linear,
    /// `on_load_checkpoint` puts this module's own `a.weight` into the checkpoint.
    keep_own_a: bool,
}

#[lightning_module]
impl Net {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> lightning::Result<Tensor> {
        Ok(self.b.forward(&self.a.forward(&batch.0)?)?.sub(&batch.1)?.sqr()?.mean_all()?)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&self.vars, 0.1)
    }
    fn on_load_checkpoint(&mut self, checkpoint: &mut Checkpoint) {
        if self.keep_own_a {
            // a tensor derived from the variable itself, which `Var::set` refuses
            checkpoint.state_dict.insert("a.weight".into(), self.a.weight().clone());
        }
    }
}

fn net(seed: u64) -> Net {
    let vars = VarMap::new();
    let vb = lightning::seeded_var_builder(&vars, seed, DType::F32, &Device::Cpu);
    let a = candle_nn::linear(2, 3, vb.pp("a")).unwrap();
    let b = candle_nn::linear(3, 1, vb.pp("b")).unwrap();
    Net { vars, a, b, keep_own_a: false }
}

fn weights(m: &Net) -> BTreeMap<String, Vec<f32>> {
    lightning::checkpoint_state(&m.vars)
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

fn saved(dir: &std::path::Path, from: &Net) -> std::path::PathBuf {
    let path = dir.join("a.ckpt");
    Checkpoint { state_dict: lightning::checkpoint_state(&from.vars), ..Default::default() }.save(&path).unwrap();
    path
}

#[test]
fn a_tensor_taken_from_the_module_loads_with_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (source, mut target) = (net(1), net(2));
    let path = saved(dir.path(), &source);
    target.keep_own_a = true;
    let own_a = weights(&target)["a.weight"].clone();
    // Var::set refused `a.weight` half way through the variables, in hash order
    lightning::load_from_checkpoint(&mut target, &path).unwrap();
    let (got, want) = (weights(&target), weights(&source));
    assert_eq!(got["a.weight"], own_a, "the hook's tensor is what loads");
    for name in ["a.bias", "b.weight", "b.bias"] {
        assert_eq!(got[name], want[name], "{name}");
    }
}

#[test]
fn a_checkpoint_that_does_not_fit_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = net(1);
    let path = saved(dir.path(), &source);
    // a mis-shaped tensor, then a missing one: the module keeps every weight
    for edit in [
        |s: &mut BTreeMap<String, Tensor>| {
            s.insert("b.weight".into(), Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap());
        },
        |s: &mut BTreeMap<String, Tensor>| {
            s.remove("a.bias");
        },
    ] {
        let mut ck = Checkpoint::load(&path).unwrap();
        edit(&mut ck.state_dict);
        let bad = dir.path().join("bad.ckpt");
        ck.save(&bad).unwrap();
        let mut target = net(2);
        let before = weights(&target);
        let err = lightning::load_from_checkpoint(&mut target, &bad).unwrap_err();
        assert!(matches!(err, lightning::Error::CheckpointMismatch { .. }), "{err}");
        assert_eq!(weights(&target), before);
    }
}

#[test]
fn trainer_state_json_leaves_optimizer_state_to_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = net(1);
    let x = Tensor::randn(0f32, 1., (8, 2), &Device::Cpu).unwrap();
    let y = x.sum_keepdim(1).unwrap();
    let mut trainer = Trainer::builder()
        .default_root_dir(dir.path())
        .max_epochs(1)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .build()
        .unwrap();
    trainer.fit(&mut model, Data::loader(DataLoader::new(x, y, 4).unwrap())).unwrap();
    let ckpt = trainer.checkpoint_callback().and_then(|c| c.best_model_path()).expect("a checkpoint").to_path_buf();
    let text = std::fs::read_to_string(ckpt.join("trainer_state.json")).unwrap();
    let json: lightning::serde_json::Value = lightning::serde_json::from_str(&text).unwrap();
    assert!(json.get("optimizers").is_none() && json.get("scheduler").is_none(), "{text}");
    // the optimizer's state is in optimizer.safetensors, and loads back
    let ck = Checkpoint::load(&ckpt).unwrap();
    assert_eq!(ck.optimizers.len(), 1);
}
