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
    t.fit_with(model, data(), None::<DataLoader>)
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
    let e = t.fit_with(&mut h, DataLoader::new(x.clone(), x, 1).unwrap(), None::<DataLoader>).unwrap_err();
    assert!(e.to_string().contains("implement `lightning::Relocate`"), "{e}");
    let vars = VarMap::new();
    let l = candle_nn::linear(2, 1, seeded_var_builder(&vars, 3, DType::F32, &Device::Cpu)).unwrap();
    let mut h = Hidden { vars, inner: Opaque(l), penalty_only: false };
    let x = Tensor::new(&[[1f32, 2.], [3., 4.]], &Device::Cpu).unwrap();
    let data = DataLoader::new(x.clone(), x, 1).unwrap();
    let e = t.fit_with(&mut h, data, None::<DataLoader>).unwrap_err();
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
    t.fit_with(&mut m, DataLoader::new(x.clone(), x, 1).unwrap(), None::<DataLoader>).unwrap();
    assert_eq!(m.w.dtype(), DType::BF16, "converted at set-up");
    m.w.as_tensor().to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap()[0]
}

#[test]
fn bf16_mixed_keeps_f32_master_weights() {
    // pure bf16 rounds every small update away; f32 master weights add them up
    assert_eq!(scale_after("bf16-true", 100), 1.0);
    let mixed = scale_after("bf16-mixed", 100);
    assert!((mixed - 0.99).abs() < 0.004, "{mixed}: 1 - 100 · 1e-4, rounded to bf16");
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
    t.fit_with(&mut z, DataLoader::new(x.clone(), x, 1).unwrap(), None::<DataLoader>).unwrap();
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
