//! The `precision` flag on the CPU: the trainer converts the module and its inputs to the
//! precision's dtype; what it cannot convert is a typed error, never a silent non-training.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarMap};
use lightning::prelude::*;

#[lightning_module]
struct Net {
    vars: VarMap,
    l: Linear,
    seen: Vec<(DType, DType)>,
}

#[lightning_module]
impl Net {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        self.seen.push((batch.0.dtype(), batch.1.dtype()));
        let err = self.l.forward(&batch.0)?.sub(&batch.1.to_dtype(batch.0.dtype())?.unsqueeze(1)?)?;
        err.sqr()?.mean_all()
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&self.vars, 0.05)
    }
}

fn net(dtype: DType) -> Net {
    let vars = VarMap::new();
    let l = candle_nn::linear(2, 1, seeded_var_builder(&vars, 3, dtype, &Device::Cpu)).unwrap();
    Net { vars, l, seen: vec![] }
}

fn data() -> DataLoader {
    // f32 inputs, u32 targets: the inputs are cast, the targets are not
    let x = Tensor::new(&[[1f32, 0.], [0., 1.], [1., 1.], [0., 0.]], &Device::Cpu).unwrap();
    let y = Tensor::new(&[1u32, 0, 1, 0], &Device::Cpu).unwrap();
    DataLoader::new(x, y, 2).unwrap()
}

fn fit(precision: &str, model: &mut Net) -> lightning::Result<lightning::FitOutcome> {
    let p: Precision = precision.parse()?;
    let mut t = Trainer::builder()
        .accelerator(Accelerator::Cpu)
        .enable_checkpointing(false)
        .max_epochs(20)
        .precision(p)
        .build()?;
    t.fit(model, Data::loader(data()))
}

#[test]
fn true_precisions_train_in_their_dtype() {
    for (p, dtype) in
        [("16-true", DType::F16), ("bf16-true", DType::BF16), ("64-true", DType::F64), ("32-true", DType::F32)]
    {
        let mut m = net(dtype);
        let before = m.l.weight().to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        fit(p, &mut m).unwrap();
        assert!(m.seen.iter().all(|&s| s == (dtype, DType::U32)), "{p}: {:?}", m.seen[0]);
        assert_eq!(m.l.weight().dtype(), dtype);
        let var = m.vars.data().lock().unwrap()["weight"].clone();
        assert_eq!(var.id(), m.l.weight().id(), "{p}: the layer uses the VarMap's variable");
        let after = m.l.weight().to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        assert_ne!(before, after, "{p} trained");
        assert!(after.iter().all(|v| v.is_finite()));
    }
}

/// A layer inside a type the trainer cannot see into.
struct Opaque(Linear);

#[lightning_module]
struct Hidden {
    vars: VarMap,
    inner: Opaque,
    penalty_only: bool,
}

#[lightning_module]
impl Hidden {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        if self.penalty_only {
            // a weight penalty alone: runs in any dtype, so only the missing gradients tell
            self.inner.0.weight().sqr()?.sum_all()
        } else {
            self.inner.0.forward(&batch.0)?.sum_all()
        }
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&self.vars, 0.05)
    }
}

#[test]
fn what_cannot_be_converted_is_refused() {
    let e = fit("fp8", &mut net(DType::F32)).unwrap_err();
    assert!(
        matches!(e, lightning::Error::Config { flag: "precision", .. }) && e.to_string().contains("unknown precision")
    );
    // the VarMap's variables move, the layer in the opaque field cannot follow: caught at the
    // first backward instead of training nothing (or, mixing dtypes, by candle at the step)
    let vars = VarMap::new();
    let l = candle_nn::linear(2, 1, seeded_var_builder(&vars, 3, DType::F32, &Device::Cpu)).unwrap();
    let mut h = Hidden { vars, inner: Opaque(l), penalty_only: true };
    let mut t = Trainer::builder()
        .accelerator(Accelerator::Cpu)
        .enable_checkpointing(false)
        .max_epochs(1)
        .precision(Precision::F64True)
        .build()
        .unwrap();
    let x = Tensor::new(&[[1f32, 2.]], &Device::Cpu).unwrap();
    let e = t.fit(&mut h, Data::loader(DataLoader::new(x.clone(), x, 1).unwrap())).unwrap_err();
    assert!(e.to_string().contains("implement `lightning::Relocate`"), "{e}");
    let vars = VarMap::new();
    let l = candle_nn::linear(2, 1, seeded_var_builder(&vars, 3, DType::F32, &Device::Cpu)).unwrap();
    let mut h = Hidden { vars, inner: Opaque(l), penalty_only: false };
    let x = Tensor::new(&[[1f32, 2.], [3., 4.]], &Device::Cpu).unwrap();
    let data = DataLoader::new(x.clone(), x, 1).unwrap();
    let e = t.fit(&mut h, Data::loader(data)).unwrap_err();
    assert!(e.to_string().contains("training_step") && e.to_string().contains("dtype mismatch"), "{e}");
}

/// `w * x`: one weight, so the rounding is easy to see.
#[lightning_module]
struct Scale {
    vars: VarMap,
    w: candle_core::Var,
}

#[lightning_module]
impl Scale {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        self.w.as_tensor().broadcast_mul(&batch.0)?.sum_all()
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&self.vars, 0.1)
    }
}

fn scale_after(precision: &str, steps: usize) -> f32 {
    let vars = VarMap::new();
    let w = candle_core::Var::ones(1, DType::F32, &Device::Cpu).unwrap();
    vars.data().lock().unwrap().insert("w".into(), w.clone());
    let mut m = Scale { vars, w };
    // each step's update is lr · x = 1e-4, under bf16's resolution at 1.0 (2^-8 ≈ 0.0039)
    let x = Tensor::full(1e-3f32, (steps, 1), &Device::Cpu).unwrap();
    let p: Precision = precision.parse().unwrap();
    let mut t = Trainer::builder()
        .accelerator(Accelerator::Cpu)
        .enable_checkpointing(false)
        .max_epochs(1)
        .precision(p)
        .build()
        .unwrap();
    t.fit(&mut m, Data::loader(DataLoader::new(x.clone(), x, 1).unwrap())).unwrap();
    // bf16-true stays in bf16; bf16-mixed gives the module its f32 master weights back
    let want = if precision == "bf16-mixed" { DType::F32 } else { DType::BF16 };
    assert_eq!(m.w.dtype(), want, "{precision}");
    assert_eq!(m.vars.data().lock().unwrap()["w"].id(), m.w.id(), "the VarMap's variable");
    m.w.as_tensor().to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap()[0]
}

#[test]
fn bf16_mixed_keeps_f32_master_weights() {
    // pure bf16 rounds every small update away; f32 master weights add them up
    assert_eq!(scale_after("bf16-true", 100), 1.0);
    let mixed = scale_after("bf16-mixed", 100);
    assert!((mixed - 0.99).abs() < 1e-5, "{mixed}: 1 - 100 · 1e-4, the f32 master weight");
}

#[lightning_module]
struct Zoo {
    vars: VarMap,
    layers: Vec<Linear>,
    maybe: Option<Linear>,
    emb: candle_nn::Embedding,
    conv: candle_nn::Conv2d,
    scale: candle_core::Var,
    not_a_tensor: u64,
}

#[lightning_module]
impl Zoo {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        let mut h = batch.0.clone();
        for l in &self.layers {
            h = l.forward(&h)?;
        }
        let h = self.maybe.as_ref().map_or(Ok(h.clone()), |l| l.forward(&h))?;
        let e = self.emb.forward(&Tensor::new(&[0u32, 1], h.device())?)?.sum_all()?;
        let img = h.reshape((h.dim(0)?, 1, 1, 2))?;
        let c = self.conv.forward(&img)?.sum_all()?;
        (h.sum_all()? + e + c)?.broadcast_mul(self.scale.as_tensor())
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&self.vars, 0.01)
    }
}

#[test]
fn every_kind_of_field_is_rebound() {
    let vars = VarMap::new();
    let vb = seeded_var_builder(&vars, 1, DType::F32, &Device::Cpu);
    let layers = vec![candle_nn::linear(2, 2, vb.pp("a")).unwrap(), candle_nn::linear(2, 2, vb.pp("b")).unwrap()];
    let maybe = Some(candle_nn::linear(2, 2, vb.pp("c")).unwrap());
    let emb = candle_nn::embedding(3, 2, vb.pp("emb")).unwrap();
    let conv = candle_nn::conv2d(1, 1, 1, Default::default(), vb.pp("conv")).unwrap();
    let scale = candle_core::Var::ones(1, DType::F32, &Device::Cpu).unwrap();
    vars.data().lock().unwrap().insert("scale".into(), scale.clone());
    let mut z = Zoo { vars, layers, maybe, emb, conv, scale, not_a_tensor: 7 };
    let mut t = Trainer::builder()
        .accelerator(Accelerator::Cpu)
        .enable_checkpointing(false)
        .max_epochs(1)
        .precision(Precision::F64True)
        .build()
        .unwrap();
    let x = Tensor::new(&[[1f32, 2.]], &Device::Cpu).unwrap();
    t.fit(&mut z, Data::loader(DataLoader::new(x.clone(), x, 1).unwrap())).unwrap();
    let vars = z.vars.data().lock().unwrap();
    let uses = |name: &str, t: &Tensor| {
        assert_eq!(t.dtype(), DType::F64, "{name}");
        assert_eq!(vars[name].id(), t.id(), "{name} is the VarMap's variable");
    };
    uses("a.weight", z.layers[0].weight());
    uses("b.bias", z.layers[1].bias().unwrap());
    uses("c.weight", z.maybe.as_ref().unwrap().weight());
    uses("emb.weight", z.emb.embeddings());
    uses("conv.weight", z.conv.weight());
    uses("scale", z.scale.as_tensor());
    assert_eq!(z.not_a_tensor, 7);
}

/// A small regression that logs its (bf16 under bf16-mixed) loss.
#[lightning_module]
struct Reg {
    vars: VarMap,
    l1: Linear,
    l2: Linear,
}

#[lightning_module]
impl Reg {
    fn training_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        let out = self.l2.forward(&self.l1.forward(&batch.0)?.tanh()?)?;
        let loss = out.sub(&batch.1.to_dtype(out.dtype())?)?.sqr()?.mean_all()?;
        trainer.log_with("train_loss", &loss, Log::new().on_epoch(true))?;
        trainer.log_with("train_loss_max", &loss, Log::new().on_epoch(true).reduce(Reduce::Max))?;
        Ok(loss)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Adam> {
        Adam::new(&self.vars, AdamConfig { lr: 0.02, ..Default::default() })
    }
}

fn reg() -> Reg {
    let vars = VarMap::new();
    let vb = seeded_var_builder(&vars, 5, DType::F32, &Device::Cpu);
    Reg { l1: candle_nn::linear(3, 8, vb.pp("l1")).unwrap(), l2: candle_nn::linear(8, 1, vb.pp("l2")).unwrap(), vars }
}

fn reg_x() -> Tensor {
    let x = Tensor::arange(0f32, 36., &Device::Cpu).unwrap().reshape((12, 3)).unwrap();
    (x / 36.0).unwrap()
}

fn reg_data() -> DataLoader {
    let x = reg_x();
    let y = (x.sum_keepdim(1).unwrap().sin().unwrap() + 1.0).unwrap();
    DataLoader::new(x, y, 4).unwrap()
}

fn reg_fit(
    precision: &str,
    dir: &std::path::Path,
    epochs: usize,
    resume: Option<&std::path::Path>,
) -> (Reg, lightning::FitOutcome) {
    let mut m = reg();
    let mut t = Trainer::builder()
        .accelerator(Accelerator::Cpu)
        .default_root_dir(dir)
        .max_epochs(epochs)
        .precision(precision.parse().unwrap())
        .build()
        .unwrap();
    if let Some(ck) = resume {
        t.resume_from(ck);
    }
    let out = t.fit(&mut m, Data::loader(reg_data())).unwrap();
    (m, out)
}

fn forward(l1: &Linear, l2: &Linear) -> Vec<f32> {
    let y = l2.forward(&l1.forward(&reg_x()).unwrap().tanh().unwrap()).unwrap();
    assert_eq!(y.dtype(), DType::F32);
    y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn bf16_mixed_ends_with_the_f32_master_weights_and_saves_them() {
    let dir = tempfile::tempdir().unwrap();
    let (m, out) = reg_fit("bf16-mixed", &dir.path().join("mixed"), 4, None);
    // the module holds f32 again: a plain f32 forward works
    {
        let vars = m.vars.data().lock().unwrap();
        for (name, t) in [("l1.weight", m.l1.weight()), ("l2.bias", m.l2.bias().unwrap())] {
            assert_eq!(t.dtype(), DType::F32, "{name}");
            assert_eq!(vars[name].id(), t.id(), "{name} is the VarMap's variable");
        }
    }
    let ours = forward(&m.l1, &m.l2);
    // model.safetensors holds those f32 weights
    let ck = out.last_checkpoint.clone().unwrap();
    let saved = candle_core::safetensors::load(ck.join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(saved.values().all(|t| t.dtype() == DType::F32), "{saved:?}");
    let lin = |p: &str| Linear::new(saved[&format!("{p}.weight")].clone(), Some(saved[&format!("{p}.bias")].clone()));
    assert_eq!(forward(&lin("l1"), &lin("l2")), ours, "the checkpoint's weights are the module's");
    // the logged loss is f32 and near the f32 run's (the loss itself is computed in bf16)
    let (_, f32_out) = reg_fit("32-true", &dir.path().join("f32"), 4, None);
    for key in ["train_loss_epoch", "train_loss_max_epoch"] {
        let (mixed, plain) = (out.metrics[key], f32_out.metrics[key]);
        assert!(mixed != 0.0 && (mixed - plain).abs() < 0.05 * plain.abs().max(1e-3), "{key}: {mixed} vs {plain}");
    }
}

#[test]
fn bf16_mixed_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (straight, _) = reg_fit("bf16-mixed", &dir.path().join("a"), 3, None);
    let (_, first) = reg_fit("bf16-mixed", &dir.path().join("b"), 1, None);
    let ck = first.last_checkpoint.unwrap();
    let (resumed, out) = reg_fit("bf16-mixed", &dir.path().join("b"), 3, Some(&ck));
    assert_eq!(out.global_step, 9);
    assert_eq!(resumed.l1.weight().dtype(), DType::F32);
    assert_eq!(forward(&resumed.l1, &resumed.l2), forward(&straight.l1, &straight.l2), "as an uninterrupted run");
}
