//! Resuming from a checkpoint continues exactly: weights, optimizer state, scheduler.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarMap};
use lightning::prelude::*;

#[lightning_module]
struct Net {
    vars: VarMap,
    l1: Linear,
    l2: Linear,
}

#[lightning_module]
impl Net {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        self.l2.forward(&self.l1.forward(&batch.0)?.tanh()?)?.sub(&batch.1)?.sqr()?.mean_all()
    }
    fn configure_optimizers(&mut self) -> lightning::Result<(Adam, CosineAnnealingLr, SchedulerConfig)> {
        let adam = Adam::new(&self.vars, AdamConfig { lr: 0.05, amsgrad: true, ..Default::default() })?;
        Ok((adam, CosineAnnealingLr::new(6, 0.001), SchedulerConfig::every_step()))
    }
}

fn net() -> Net {
    let vars = VarMap::new();
    let vb = lightning::seeded_var_builder(&vars, 5, DType::F32, &Device::Cpu);
    Net { l1: candle_nn::linear(3, 8, vb.pp("l1")).unwrap(), l2: candle_nn::linear(8, 1, vb.pp("l2")).unwrap(), vars }
}

fn data() -> DataLoader {
    let x = Tensor::arange(0f32, 36., &Device::Cpu).unwrap().reshape((12, 3)).unwrap();
    let x = (x / 36.0).unwrap();
    let y = x.sum_keepdim(1).unwrap().sin().unwrap();
    DataLoader::new(x, y, 4).unwrap().shuffle(9)
}

fn weights(n: &Net) -> Vec<f32> {
    let mut named: Vec<_> = n.vars.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named.iter().flat_map(|(_, v)| v.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect()
}

fn trainer(dir: &std::path::Path, epochs: usize) -> Trainer {
    Trainer::builder().accelerator(Accelerator::Cpu).default_root_dir(dir).max_epochs(epochs).build().unwrap()
}

#[test]
fn a_resumed_run_ends_where_an_uninterrupted_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut straight = net();
    trainer(&dir.path().join("a"), 3).fit(&mut straight, Data::loader(data())).unwrap();

    let mut first = net();
    let ckpt =
        trainer(&dir.path().join("b"), 1).fit(&mut first, Data::loader(data())).unwrap().last_checkpoint.unwrap();
    let ck = Checkpoint::load(&ckpt).unwrap();
    assert!(ck.optimizers.len() == 1 && ck.optimizers[0].tensors.contains_key("l1.weight.max_exp_avg_sq"));
    assert!(ck.scheduler.is_some());

    let mut resumed = net();
    let mut t = trainer(&dir.path().join("b"), 3);
    t.resume_from(&ckpt);
    let out = t.fit(&mut resumed, Data::loader(data())).unwrap();
    assert_eq!(out.global_step, 9);
    assert_eq!(weights(&resumed), weights(&straight), "bit-identical after resume");
}

#[test]
fn a_checkpoint_of_another_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = net();
    let ckpt = trainer(dir.path(), 1).fit(&mut first, Data::loader(data())).unwrap().last_checkpoint.unwrap();
    let vars = VarMap::new();
    let vb = lightning::seeded_var_builder(&vars, 5, DType::F32, &Device::Cpu);
    let mut other = Net {
        l1: candle_nn::linear(3, 4, vb.pp("l1")).unwrap(),
        l2: candle_nn::linear(4, 1, vb.pp("l2")).unwrap(),
        vars,
    };
    let before = weights(&other);
    let mut t = trainer(dir.path(), 2);
    t.resume_from(&ckpt);
    let e = t.fit(&mut other, Data::loader(data())).unwrap_err();
    assert!(matches!(e, lightning::Error::CheckpointMismatch { .. }), "{e}");
    assert_eq!(weights(&other), before, "nothing was half-loaded");
}

#[test]
fn load_from_checkpoint_restores_a_trained_model_for_inference() {
    let dir = tempfile::tempdir().unwrap();
    let mut trained = net();
    let ckpt = trainer(dir.path(), 2).fit(&mut trained, Data::loader(data())).unwrap().last_checkpoint.unwrap();
    let mut fresh = net();
    assert_ne!(weights(&fresh), weights(&trained));
    let ck = lightning::load_from_checkpoint(&mut fresh, &ckpt).unwrap();
    assert_eq!(ck.global_step, 6);
    assert_eq!(weights(&fresh), weights(&trained));
}

/// A stateful callback that also records the trainer's counters when the run fails.
#[derive(Default)]
struct Watch {
    seen: usize,
    loaded: Option<lightning::serde_json::Value>,
    at_exception: Option<(usize, usize)>,
}

#[callback]
impl Watch {
    fn on_train_batch_end(&mut self) {
        self.seen += 1;
    }
    fn state_dict(&mut self) -> lightning::serde_json::Value {
        lightning::serde_json::json!({ "seen": self.seen })
    }
    fn load_state_dict(&mut self, state_dict: &lightning::serde_json::Value) {
        self.loaded = Some(state_dict.clone());
    }
    fn on_exception(&mut self, trainer: &TrainerState) {
        self.at_exception = Some((trainer.global_step(), trainer.current_epoch()));
    }
}

fn tensors(n: &Net) -> Vec<(String, Tensor)> {
    let mut named: Vec<_> =
        n.vars.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// A copy of `ckpt` at `to` whose optimizer state `edit` damages (checksums recomputed, so
/// only the content is wrong).
fn damaged(ckpt: &std::path::Path, to: &std::path::Path, edit: impl FnOnce(&mut lightning::optim::OptimizerState)) {
    let mut ck = Checkpoint::load(ckpt).unwrap();
    edit(&mut ck.optimizers[0]);
    ck.save(to).unwrap();
}

#[test]
fn a_broken_optimizer_state_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let with_watch = |root: &str, epochs: usize| {
        Trainer::builder()
            .accelerator(Accelerator::Cpu)
            .default_root_dir(dir.path().join(root))
            .max_epochs(epochs)
            .callbacks((Watch::default(),))
            .build()
            .unwrap()
    };
    let ckpt = with_watch("a", 1).fit(&mut net(), Data::loader(data())).unwrap().last_checkpoint.unwrap();
    let wrong_shape = dir.path().join("wrong_shape.ckpt");
    damaged(&ckpt, &wrong_shape, |o| {
        o.tensors.insert("l1.weight.exp_avg".into(), Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap());
    });
    let missing = dir.path().join("missing.ckpt");
    damaged(&ckpt, &missing, |o| {
        o.tensors.remove("l2.bias.exp_avg_sq");
    });
    let corrupt = dir.path().join("corrupt.ckpt");
    damaged(&ckpt, &corrupt, |_| {});
    let file = corrupt.join("optimizer.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&file, bytes).unwrap();

    for (broken, says) in [
        (&wrong_shape, "`l1.weight.exp_avg` has shape [2]"),
        (&missing, "a tensor is missing"),
        (&corrupt, "optimizer.safetensors"),
    ] {
        let mut model = net();
        let before = tensors(&model);
        let mut t = with_watch("b", 3);
        t.resume_from(broken);
        let e = t.fit(&mut model, Data::loader(data())).unwrap_err();
        for ((name, a), (_, b)) in before.iter().zip(tensors(&model)) {
            let diff = (a - &b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert_eq!(diff, 0.0, "{broken:?}: `{name}` changed");
        }
        let watch = &t.callbacks().0;
        assert_eq!(watch.loaded, None, "{broken:?}: the callback's state was not restored");
        assert_eq!(watch.at_exception, Some((0, 0)), "{broken:?}: the counters were not restored");
        let msg = e.to_string();
        assert!(msg.contains(says) && msg.contains(&*broken.to_string_lossy()), "{msg}");
    }
    // the intact checkpoint still resumes
    let mut model = net();
    let mut t = with_watch("c", 2);
    t.resume_from(&ckpt);
    let out = t.fit(&mut model, Data::loader(data())).unwrap();
    assert_eq!(out.global_step, 6);
    assert_eq!(t.callbacks().0.loaded, Some(lightning::serde_json::json!({ "seen": 3 })));
}
