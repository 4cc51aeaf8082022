//! `precision = "16-mixed"`: f16 compute, f32 master weights and torch's dynamic loss
//! scaling (`torch.amp.GradScaler`), on the CPU.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use lightning::prelude::*;
use lightning::serde_json;
use lightning::GradScalerState;

/// What the hooks saw in one training step.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// The loss `on_before_backward` got (scaled).
    loss: f32,
    /// `w`'s gradient in `on_after_backward` (scaled) and `on_before_optimizer_step` (unscaled).
    grad_after_backward: (f32, Option<DType>),
    grad_before_step: (f32, Option<DType>),
    /// The scaler after the step, from `on_train_batch_end`.
    scaler: Option<GradScalerState>,
    /// `w` (the f16 copy the module computes with) after the step.
    w: f32,
}

/// `factor · mean(w · x)`, one weight: its gradient is `factor · mean(x)`.
#[lightning_module]
struct Probe {
    vars: VarMap,
    w: Var,
    factor: f64,
    lr: f64,
    seen: Vec<Seen>,
}

fn scalar(t: &Tensor) -> f32 {
    t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()[0]
}

#[lightning_module]
impl Probe {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        self.w.as_tensor().broadcast_mul(&batch.0)?.mean_all()?.affine(self.factor, 0.0)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&self.vars, self.lr)
    }
    fn on_before_backward(&mut self, loss: &Tensor) {
        self.seen.push(Seen { loss: scalar(loss), ..Seen::default() });
    }
    fn on_after_backward(&mut self, grads: &Gradients) {
        let g = grads.get(self.w.as_tensor()).unwrap();
        self.seen.last_mut().unwrap().grad_after_backward = (scalar(g), Some(g.dtype()));
    }
    fn on_before_optimizer_step(&mut self, grads: &Gradients) {
        let g = grads.get(self.w.as_tensor()).unwrap();
        self.seen.last_mut().unwrap().grad_before_step = (scalar(g), Some(g.dtype()));
    }
    fn on_train_batch_end(&mut self, trainer: &mut TrainerState) {
        let w = scalar(self.w.as_tensor());
        let s = self.seen.last_mut().unwrap();
        (s.scaler, s.w) = (trainer.grad_scaler(), w);
    }
}

fn probe(factor: f64, lr: f64) -> Probe {
    let vars = VarMap::new();
    let w = Var::ones(1, DType::F32, &Device::Cpu).unwrap();
    vars.data().lock().unwrap().insert("w".into(), w.clone());
    Probe { vars, w, factor, lr, seen: vec![] }
}

/// Batches of two rows `[x, 1]`, one batch per value of `xs`.
fn rows(xs: &[f32]) -> DataLoader {
    let x: Vec<f32> = xs.iter().flat_map(|&x| [x, 1.0]).collect();
    let x = Tensor::from_vec(x, (xs.len() * 2, 1), &Device::Cpu).unwrap();
    DataLoader::new(x.clone(), x, 2).unwrap()
}

fn trainer(scaler: GradScaler, dir: &std::path::Path, epochs: usize) -> Trainer {
    Trainer::builder()
        .accelerator(Accelerator::Cpu)
        .default_root_dir(dir)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .num_sanity_val_steps(0)
        .max_epochs(epochs)
        .precision(Precision::F16Mixed)
        .grad_scaler(scaler)
        .build()
        .unwrap()
}

/// torch's `GradScaler.update()` (`_amp_update_scale_`) and the step it skips, written out:
/// returns the scale each step used, and the (scale, growth tracker) after each step.
fn torch_scaler(init: f64, interval: u64, found_inf: &[bool]) -> (Vec<f64>, Vec<(f64, u64)>) {
    let (mut scale, mut tracker) = (init as f32, 0u64);
    let (mut used, mut after) = (vec![], vec![]);
    for &inf in found_inf {
        used.push(scale as f64);
        if inf {
            scale = (scale as f64 * 0.5) as f32;
            tracker = 0;
        } else if tracker + 1 == interval {
            scale = (scale as f64 * 2.0) as f32;
            tracker = 0;
        } else {
            tracker += 1;
        }
        after.push((scale as f64, tracker));
    }
    (used, after)
}

#[test]
fn inf_gradients_skip_the_step_and_back_off_good_steps_grow_the_scale() {
    let dir = tempfile::tempdir().unwrap();
    // x = inf or NaN makes the gradient of w inf or NaN whatever the scale
    let xs = [1.0, 1.0, 1.0, f32::INFINITY, 1.0, f32::NAN, f32::INFINITY, 1.0, 1.0, 1.0, 1.0, 1.0];
    let bad: Vec<bool> = xs.iter().map(|x| !x.is_finite()).collect();
    let mut m = probe(1.0, 0.125);
    let mut t = trainer(GradScaler::default().init_scale(1024.0).growth_interval(3), dir.path(), 1);
    let out = t.fit(&mut m, Data::loader(rows(&xs))).unwrap();
    assert_eq!(out.global_step, xs.len(), "a skipped step still counts, as in Lightning");

    let (used, after) = torch_scaler(1024.0, 3, &bad);
    let mut w = 1.0f32;
    for (i, s) in m.seen.iter().enumerate() {
        let st = s.scaler.unwrap();
        assert_eq!((st.scale, st.growth_tracker), after[i], "step {i}: scale and growth tracker as torch's");
        assert_eq!((st.growth_factor, st.backoff_factor, st.growth_interval), (2.0, 0.5, 3));
        if bad[i] {
            assert!(!s.grad_before_step.0.is_finite(), "step {i}");
            assert_eq!(s.w, w, "step {i}: skipped, the weight is unchanged");
            continue;
        }
        // the loss w · mean(x, 1) = w went to backward times the scale; the hook after
        // backward sees scaled f32 gradients, the one before the step unscaled ones
        assert_eq!(s.loss, w * used[i] as f32, "step {i}");
        assert_eq!(s.grad_after_backward, (used[i] as f32, Some(DType::F32)), "step {i}");
        assert_eq!(s.grad_before_step, (1.0, Some(DType::F32)), "step {i}");
        w -= 0.125;
        assert_eq!(s.w, w, "step {i}: SGD stepped");
    }
    // the trace, by hand: grown at step 2 and 9, backed off at 3, 5 and 6
    assert_eq!((after[2], after[3], after[6], after[9]), ((2048.0, 0), (1024.0, 0), (256.0, 0), (512.0, 0)));
    // after fit the module holds its f32 master weight: 9 good steps
    assert_eq!(m.w.dtype(), DType::F32);
    assert_eq!(scalar(m.w.as_tensor()), 1.0 - 0.125 * 9.0);
}

/// A loss multiplied by 2^-20 (about 1e-6), inputs 2^-7: d loss / dw = 2^-27 (7.5e-9). In
/// the f16 backward, each row's product 2^-20 / 2 · 2^-7 = 2^-28 is under f16's smallest
/// number (2^-24, 6e-8) and flushes to zero; every value here is a power of two, so exact.
const FACTOR: f64 = 1.0 / (1u64 << 20) as f64;
const X: f32 = 1.0 / 128.0;
const TRUE_GRAD: f32 = 1.0 / (1u64 << 27) as f32;

/// `grad_before_step` of every step, the scales and the final f32 weight of a 10-step run.
fn underflow_run(scaler: GradScaler) -> (Vec<f32>, Vec<f64>, f32) {
    let dir = tempfile::tempdir().unwrap();
    let mut m = probe(FACTOR, 1024.0);
    let mut t = trainer(scaler, dir.path(), 1);
    let xs = [X; 10];
    let x = Tensor::from_vec(xs.iter().flat_map(|&x| [x, x]).collect(), (20, 1), &Device::Cpu).unwrap();
    t.fit(&mut m, Data::loader(DataLoader::new(x.clone(), x, 2).unwrap())).unwrap();
    let grads = m.seen.iter().map(|s| s.grad_before_step.0).collect();
    let scales = m.seen.iter().map(|s| s.scaler.unwrap().scale).collect();
    assert_eq!(m.w.dtype(), DType::F32);
    (grads, scales, scalar(m.w.as_tensor()))
}

#[test]
fn scaling_keeps_gradients_that_flush_to_zero_in_f16() {
    // scale 1 (no scaling): the f16 gradients flush to zero and nothing trains
    let (grads, _, w) = underflow_run(GradScaler::default().init_scale(1.0));
    assert!(grads.iter().all(|&g| g == 0.0), "{grads:?}");
    assert_eq!(w, 1.0);
    // torch's default 2^16: the seed gradient 65536 of an f16 loss overflows f16 (max
    // 65504), so the first step is skipped and the scale backs off; then it trains
    let (grads, scales, w) = underflow_run(GradScaler::default());
    assert!(!grads[0].is_finite());
    assert_eq!(scales[0], 32768.0);
    assert!(scales[1..].iter().all(|&s| s == 32768.0), "{scales:?}");
    assert!(grads[1..].iter().all(|&g| g == TRUE_GRAD), "the true gradient 2^-27, unscaled in f32: {grads:?}");
    // nine SGD steps of 1024 · 2^-27 = 2^-17 on the f32 master weight
    assert_eq!(w, 1.0 - 9.0 / (1 << 17) as f32);
}

#[test]
fn scaler_state_is_checkpointed_and_resumed() {
    let dir = tempfile::tempdir().unwrap();
    // per epoch: good, bad, good, good; interval 3 leaves a growth tracker of 2 at its end
    let xs = [1.0, f32::INFINITY, 1.0, 1.0];
    let scaler = GradScaler::default().init_scale(1024.0).growth_interval(3);
    let run = |sub: &str, epochs: usize, resume: Option<&std::path::Path>| {
        let mut m = probe(1.0, 0.125);
        let mut t = trainer(scaler, &dir.path().join(sub), epochs);
        if let Some(ck) = resume {
            t.resume_from(ck);
        }
        let out = t.fit(&mut m, Data::loader(rows(&xs)));
        (m, out)
    };
    let (straight, done) = run("a", 2, None);
    done.unwrap();
    let (_, first) = run("b", 1, None);
    let ck = first.unwrap().last_checkpoint.unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ck.join("trainer_state.json")).unwrap()).unwrap();
    let saved = &json["grad_scaler"];
    assert_eq!(saved["scale"], 512.0, "{json}");
    assert_eq!(saved["_growth_tracker"], 2);
    assert_eq!(saved["growth_interval"], 3);
    let (resumed, out) = run("b", 2, Some(&ck));
    assert_eq!(out.unwrap().global_step, 8);
    // the second epoch's first step grows the restored scale (tracker 2 + 1 = interval):
    // a fresh scaler would have tracker 1 there
    let trace = |m: &Probe| m.seen.iter().map(|s| s.scaler.unwrap()).collect::<Vec<_>>();
    assert_eq!(trace(&resumed), trace(&straight)[4..], "as an uninterrupted run");
    assert_eq!(trace(&resumed)[0].growth_tracker, 0);
    assert_eq!(scalar(resumed.w.as_tensor()), scalar(straight.w.as_tensor()));

    // a damaged state is refused, naming the field, before anything changes
    let mut json = json;
    json["grad_scaler"]["scale"] = (-1.0).into();
    std::fs::write(ck.join("trainer_state.json"), serde_json::to_vec(&json).unwrap()).unwrap();
    let (m, out) = run("c", 2, Some(&ck));
    let e = out.unwrap_err();
    assert!(matches!(&e, lightning::Error::CheckpointField { field, .. } if field == "grad_scaler"), "{e}");
    assert!(e.to_string().contains("scale must be a finite number > 0"), "{e}");
    assert_eq!(scalar(m.w.as_tensor()), 1.0, "the weights stay as they were");
}

/// A two-layer regression, its loss computed in f16 (as the module computes).
#[lightning_module]
struct Reg {
    vars: VarMap,
    l1: candle_nn::Linear,
    l2: candle_nn::Linear,
}

#[lightning_module]
impl Reg {
    fn training_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        use candle_nn::Module;
        let out = self.l2.forward(&self.l1.forward(&batch.0)?.tanh()?)?;
        let loss = out.sub(&batch.1)?.sqr()?.mean_all()?;
        trainer.log_with("train_loss", &loss, Log::new().on_epoch(true))?;
        Ok(loss)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Adam> {
        Adam::new(&self.vars, AdamConfig { lr: 0.02, ..Default::default() })
    }
}

fn reg_fit(precision: Precision, dir: &std::path::Path) -> (Reg, lightning::FitOutcome) {
    let vars = VarMap::new();
    let vb = seeded_var_builder(&vars, 5, DType::F32, &Device::Cpu);
    let mut m = Reg {
        l1: candle_nn::linear(3, 8, vb.pp("l1")).unwrap(),
        l2: candle_nn::linear(8, 1, vb.pp("l2")).unwrap(),
        vars,
    };
    let x = (Tensor::arange(0f32, 36., &Device::Cpu).unwrap().reshape((12, 3)).unwrap() / 36.0).unwrap();
    let y = (x.sum_keepdim(1).unwrap().sin().unwrap() + 1.0).unwrap();
    let mut t = Trainer::builder()
        .accelerator(Accelerator::Cpu)
        .default_root_dir(dir)
        .enable_progress_bar(false)
        .max_epochs(6)
        .precision(precision)
        .build()
        .unwrap();
    let out = t.fit(&mut m, Data::loader(DataLoader::new(x, y, 4).unwrap())).unwrap();
    (m, out)
}

#[test]
fn f16_mixed_ends_with_the_f32_master_weights_and_saves_them() {
    let dir = tempfile::tempdir().unwrap();
    let (m, out) = reg_fit(Precision::F16Mixed, &dir.path().join("mixed"));
    {
        let vars = m.vars.data().lock().unwrap();
        for (name, t) in [("l1.weight", m.l1.weight()), ("l2.bias", m.l2.bias().unwrap())] {
            assert_eq!(t.dtype(), DType::F32, "{name}");
            assert_eq!(vars[name].id(), t.id(), "{name} is the VarMap's variable");
        }
    }
    let ck = out.last_checkpoint.clone().unwrap();
    let saved = candle_core::safetensors::load(ck.join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(saved.values().all(|t| t.dtype() == DType::F32), "{saved:?}");
    assert_eq!(saved["l1.weight"].to_vec2::<f32>().unwrap(), m.l1.weight().to_vec2::<f32>().unwrap());
    // the f32 masters hold what f16 cannot: some weight is not an f16 value
    let w = m.l1.weight().flatten_all().unwrap();
    let round_trip = w.to_dtype(DType::F16).unwrap().to_dtype(DType::F32).unwrap();
    assert_ne!(w.to_vec1::<f32>().unwrap(), round_trip.to_vec1::<f32>().unwrap());
    // it trained as f32 does, near enough (one Adam step fewer: the first is skipped, as
    // the f16 loss's seed gradient 2^16 overflows f16)
    let (_, plain) = reg_fit(Precision::F32True, &dir.path().join("f32"));
    let (a, b) = (out.metrics["train_loss_epoch"], plain.metrics["train_loss_epoch"]);
    assert!(a != 0.0 && (a - b).abs() < 0.1 * b.abs().max(1e-3), "{a} vs {b}");
}

/// Manual optimization: `manual_backward` scales, `step` unscales (the underflow case).
#[lightning_module]
struct ManualProbe {
    vars: VarMap,
    w: Var,
    scales: Vec<f64>,
}

#[lightning_module(manual_optimization)]
impl ManualProbe {
    fn training_step(
        &mut self,
        batch: &(Tensor, Tensor),
        trainer: &mut TrainerState,
        manual: &mut impl ManualOptimization<Self>,
    ) -> lightning::Result<()> {
        let loss = self.w.as_tensor().broadcast_mul(&batch.0)?.mean_all()?.affine(FACTOR, 0.0)?;
        manual.zero_grad()?;
        manual.backward(self, trainer, &loss)?;
        manual.step(self, trainer, 0)?;
        self.scales.push(trainer.grad_scaler().unwrap().scale);
        Ok(())
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&self.vars, 1024.0)
    }
}

fn manual_run(init_scale: f64) -> f32 {
    let dir = tempfile::tempdir().unwrap();
    let vars = VarMap::new();
    let w = Var::ones(1, DType::F32, &Device::Cpu).unwrap();
    vars.data().lock().unwrap().insert("w".into(), w.clone());
    let mut m = ManualProbe { vars, w, scales: vec![] };
    let x = Tensor::full(X, (20, 1), &Device::Cpu).unwrap();
    let mut t = trainer(GradScaler::default().init_scale(init_scale), dir.path(), 1);
    let out = t.fit(&mut m, Data::loader(DataLoader::new(x.clone(), x, 2).unwrap())).unwrap();
    assert_eq!(out.global_step, 10);
    assert!(m.scales.iter().all(|&s| s == init_scale), "{:?}", m.scales);
    assert_eq!(m.w.dtype(), DType::F32);
    scalar(m.w.as_tensor())
}

#[test]
fn manual_backward_scales_and_step_unscales() {
    // unscaled, the f16 gradients flush to zero; scaled by 2^10 and unscaled before the
    // step, ten steps of exactly 1024 · 2^-27 (unscaled twice or never, they would not be)
    assert_eq!(manual_run(1.0), 1.0);
    assert_eq!(manual_run(1024.0), 1.0 - 10.0 / (1 << 17) as f32);
}

#[test]
fn flag_strings_and_settings_are_checked() {
    for s in ["16-mixed", "16"] {
        assert_eq!(s.parse::<Precision>().unwrap(), Precision::F16Mixed);
    }
    assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::Bf16Mixed);
    assert_eq!(Precision::F16Mixed.to_string(), "16-mixed");
    let cfg = lightning::TrainerConfig { precision: Some(Precision::F16Mixed), ..Default::default() };
    let v = serde_json::to_value(&cfg).unwrap();
    assert_eq!(v["precision"], "16-mixed");
    let back: lightning::TrainerConfig = serde_json::from_value(v).unwrap();
    assert_eq!(back.precision, Some(Precision::F16Mixed));
    // a scaler that would do nothing is refused, as are settings torch refuses
    let e = Trainer::builder().grad_scaler(GradScaler::default()).build().unwrap_err();
    assert!(e.to_string().contains("only under precision \"16-mixed\""), "{e}");
    let e = Trainer::builder().precision(Precision::Bf16Mixed).grad_scaler(GradScaler::default()).build().unwrap_err();
    assert!(e.to_string().contains("precision is \"bf16-mixed\""), "{e}");
    let e = Trainer::builder()
        .precision(Precision::F16Mixed)
        .grad_scaler(GradScaler::default().growth_factor(0.5))
        .build()
        .unwrap_err();
    assert!(
        matches!(e, lightning::Error::Config { flag: "grad_scaler", .. }) && e.to_string().contains("growth_factor")
    );
}
