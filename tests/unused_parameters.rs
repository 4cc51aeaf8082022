//! The unused-parameter guard: parameters the optimizer holds that get no gradient are an
//! error at the first optimizer step of a fit, unless `allow_unused_parameters(true)`.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use lightning::prelude::*;
use lightning::{Error, TrainerBuilder};

/// Two linears, optionally with candle-nn's fast `LayerNorm` (no backward) between them.
#[lightning_module]
struct TwoLinears {
    vars: VarMap,
    l1: candle_nn::Linear,
    ln: Option<candle_nn::LayerNorm>,
    l2: candle_nn::Linear,
}

#[lightning_module]
impl TwoLinears {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> lightning::Result<Tensor> {
        let mut h = self.l1.forward(&batch.0)?.relu()?;
        if let Some(ln) = &self.ln {
            h = ln.forward(&h)?;
        }
        Ok(self.l2.forward(&h)?.sub(&batch.1)?.sqr()?.mean_all()?)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&self.vars, 0.01)
    }
}

fn model(with_layer_norm: bool) -> TwoLinears {
    let vars = VarMap::new();
    let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
    let l1 = candle_nn::linear(4, 8, vb.pp("l1")).unwrap();
    let ln = with_layer_norm.then(|| candle_nn::layer_norm(8, 1e-5, vb.pp("ln")).unwrap());
    let l2 = candle_nn::linear(8, 1, vb.pp("l2")).unwrap();
    TwoLinears { vars, l1, ln, l2 }
}

fn data() -> DataLoader {
    let x = Tensor::arange(0f32, 32., &Device::Cpu).unwrap().reshape((8, 4)).unwrap();
    let y = x.sum_keepdim(1).unwrap();
    DataLoader::new(x, y, 4).unwrap()
}

fn builder(dir: &tempfile::TempDir) -> TrainerBuilder<()> {
    Trainer::builder()
        .default_root_dir(dir.path())
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .enable_checkpointing(false)
        .enable_logger(false)
        .max_epochs(2)
}

fn l1_weight(m: &TwoLinears) -> Vec<f32> {
    m.l1.weight().flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn a_fast_layer_norm_between_linears_is_an_error_naming_the_first_linear() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = builder(&dir).build().unwrap();
    let mut m = model(true);
    let e = t.fit(&mut m, Data::loader(data())).unwrap_err();
    let Error::UnusedParameters { names } = &e else { panic!("{e:?}") };
    assert_eq!(names, &["l1.bias", "l1.weight", "ln.bias", "ln.weight"]);
    let msg = e.to_string();
    for part in ["l1.weight", "LayerNorm", "no_bwd", "layer_norm_slow", "allow_unused_parameters(true)"] {
        assert!(msg.contains(part), "`{part}` missing from: {msg}");
    }
}

#[test]
fn allow_unused_parameters_trains_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = builder(&dir).allow_unused_parameters(true).build().unwrap();
    let mut m = model(true);
    let (w1, w2) = (l1_weight(&m), m.l2.weight().flatten_all().unwrap().to_vec1::<f32>().unwrap());
    assert_eq!(t.fit(&mut m, Data::loader(data())).unwrap().global_step, 4);
    assert_eq!(l1_weight(&m), w1, "no gradient reaches l1 through candle-nn's fast LayerNorm");
    assert_ne!(m.l2.weight().flatten_all().unwrap().to_vec1::<f32>().unwrap(), w2);
}

#[test]
fn a_model_whose_parameters_all_get_gradients_is_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = builder(&dir).build().unwrap();
    let mut m = model(false);
    let w1 = l1_weight(&m);
    assert_eq!(t.fit(&mut m, Data::loader(data())).unwrap().global_step, 4);
    assert_ne!(l1_weight(&m), w1);
}

/// Manual optimization with two optimizers: `b` is used only when `use_b`.
#[lightning_module]
struct Manual {
    vars: VarMap,
    a: candle_core::Var,
    b: candle_core::Var,
    use_b: bool,
}

#[lightning_module(manual_optimization)]
impl Manual {
    fn configure_optimizers(&mut self) -> lightning::Result<[Sgd; 2]> {
        Ok([
            Sgd::new(vec![("a".to_string(), self.a.clone())], 0.01)?,
            Sgd::new(vec![("b".to_string(), self.b.clone())], 0.01)?,
        ])
    }
    fn training_step(
        &mut self,
        batch: &(Tensor, Tensor),
        trainer: &mut TrainerState,
        manual: &mut impl ManualOptimization<Self>,
    ) -> lightning::Result<()> {
        let mut y = batch.0.matmul(self.a.as_tensor())?;
        if self.use_b {
            y = y.broadcast_mul(self.b.as_tensor())?;
        }
        let loss = y.sub(&batch.1)?.sqr()?.mean_all()?;
        manual.zero_grad()?;
        manual.backward(self, trainer, &loss)?;
        manual.step(self, trainer, 0)?;
        manual.step(self, trainer, 1)?;
        Ok(())
    }
}

fn manual(use_b: bool) -> Manual {
    let vars = VarMap::new();
    let a = candle_core::Var::zeros((4, 1), DType::F32, &Device::Cpu).unwrap();
    let b = candle_core::Var::ones((1, 1), DType::F32, &Device::Cpu).unwrap();
    vars.data().lock().unwrap().insert("a".into(), a.clone());
    vars.data().lock().unwrap().insert("b".into(), b.clone());
    Manual { vars, a, b, use_b }
}

#[test]
fn manual_optimization_checks_each_optimizers_first_step() {
    let dir = tempfile::tempdir().unwrap();
    let e = builder(&dir).build().unwrap().fit(&mut manual(false), Data::loader(data())).unwrap_err();
    // raised inside `training_step`, so wrapped in the hook's name
    let Error::Hook { hook: "training_step", source } = &e else { panic!("{e:?}") };
    assert!(matches!(&**source, Error::UnusedParameters { names } if names == &["b"]), "{e:?}");
    let mut t = builder(&dir).build().unwrap();
    assert_eq!(t.fit(&mut manual(true), Data::loader(data())).unwrap().global_step, 8);
    let mut t = builder(&dir).allow_unused_parameters(true).build().unwrap();
    assert_eq!(t.fit(&mut manual(false), Data::loader(data())).unwrap().global_step, 8);
}

/// A parameter the optimizer holds outside the module's `VarMap`.
#[lightning_module]
struct Outside {
    vars: VarMap,
    w: candle_core::Var,
}

#[lightning_module]
impl Outside {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> lightning::Result<Tensor> {
        Ok(batch.0.matmul(self.w.as_tensor())?.sub(&batch.1)?.sqr()?.mean_all()?)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(vec![("w".to_string(), self.w.clone())], 0.001)
    }
}

#[test]
fn a_parameter_the_optimizer_holds_outside_the_varmap_is_an_error_at_fit_start() {
    let dir = tempfile::tempdir().unwrap();
    let w = candle_core::Var::zeros((4, 1), DType::F32, &Device::Cpu).unwrap();
    let mut m = Outside { vars: VarMap::new(), w };
    let e = builder(&dir).build().unwrap().fit(&mut m, Data::loader(data())).unwrap_err();
    let lightning::Error::ParametersOutsideModule { module, names } = &e else { panic!("{e}") };
    assert_eq!((*module, names.as_slice()), ("Outside", &["`w` ([4, 1], F32)".to_string()][..]));
    assert!(e.to_string().contains("lightning::var_map"), "{e}");
    // refused before any step
    assert_eq!(m.w.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![0.0; 4]);
    // the same module with `w` in its VarMap trains
    m.vars = lightning::var_map([("w", &m.w)]);
    assert_eq!(builder(&dir).build().unwrap().fit(&mut m, Data::loader(data())).unwrap().global_step, 4);
    assert_ne!(m.w.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![0.0; 4]);
}
