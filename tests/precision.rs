//! The `precision` flag on the CPU: every precision trains in its dtype; parameters of the
//! wrong dtype are refused at `fit` with a typed error, never run wrongly.

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
        let after = m.l.weight().to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        assert_ne!(before, after, "{p} trained");
        assert!(after.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn mismatched_parameters_and_unknown_names_are_refused() {
    let refused = |p: &str, dtype: DType, want: &str| {
        let e = fit(p, &mut net(dtype)).unwrap_err();
        assert!(matches!(e, lightning::Error::Config { flag: "precision", .. }), "{p}: {e}");
        assert!(e.to_string().contains(want), "{p}: {e}");
    };
    refused("bf16-mixed", DType::F32, "parameter `bias` is F32");
    refused("16-true", DType::F32, "parameter `bias` is F32");
    refused("fp8", DType::F32, "unknown precision");
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
    let w = candle_core::Var::ones(1, DType::BF16, &Device::Cpu).unwrap();
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
    m.w.as_tensor().to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap()[0]
}

#[test]
fn bf16_mixed_keeps_f32_master_weights() {
    // pure bf16 rounds every small update away; f32 master weights add them up
    assert_eq!(scale_after("bf16-true", 100), 1.0);
    let mixed = scale_after("bf16-mixed", 100);
    assert!((mixed - 0.99).abs() < 0.004, "{mixed}: 1 - 100 · 1e-4, rounded to bf16");
}
