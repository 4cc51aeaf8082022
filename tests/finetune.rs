//! Fine-tuning: frozen parameters, a group added while training, Lightning's backbone
//! schedule, checkpoint and resume after the unfreeze, and loading pretrained weights.

mod rank_zero;
use rank_zero::RankZeroOfTwo;

use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder, VarMap};
use lightning::finetune::{load_pretrained, BackboneFinetuning, BaseFinetuning, Finetuner, Finetuning};
use lightning::prelude::*;
use lightning::{Error, HasParameters};

#[lightning_module]
struct Net {
    vars: VarMap,
    backbone: Linear,
    head: Linear,
}

#[lightning_module]
impl Net {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        let h = self.backbone.forward(&batch.0)?.tanh()?;
        self.head.forward(&h)?.sub(&batch.1)?.sqr()?.mean_all()
    }
    fn configure_optimizers(&mut self, trainer: &mut TrainerState) -> lightning::Result<Sgd> {
        let config = SgdConfig { lr: 0.1, momentum: 0.9, ..Default::default() };
        Sgd::with_config(Params::trainable(&self.vars, trainer), config)
    }
}

fn net() -> Net {
    let vars = VarMap::new();
    let vb = lightning::seeded_var_builder(&vars, 5, DType::F32, &Device::Cpu);
    let backbone = candle_nn::linear(3, 8, vb.pp("backbone.fc")).unwrap();
    Net { head: candle_nn::linear(8, 1, vb.pp("head")).unwrap(), backbone, vars }
}

fn data() -> DataLoader {
    let x = Tensor::arange(0f32, 36., &Device::Cpu).unwrap().reshape((12, 3)).unwrap();
    let x = (x / 36.0).unwrap();
    let y = x.sum_keepdim(1).unwrap().sin().unwrap();
    DataLoader::new(x, y, 4).unwrap().shuffle(9)
}

fn values(vars: &VarMap, prefix: &str) -> Vec<f32> {
    let data = vars.data().lock().unwrap();
    let mut named: Vec<_> = data.iter().filter(|(k, _)| k.starts_with(prefix)).collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    named.iter().flat_map(|(_, v)| v.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect()
}

/// One epoch: its index, every group's rate at its first step, the backbone's weights at its end.
type Epoch = (usize, Vec<f64>, Vec<f32>);

/// Per epoch, what [`Epoch`] holds.
#[derive(Clone, Default)]
struct Record(Arc<Mutex<Vec<Epoch>>>);

#[callback]
impl Record {
    fn on_before_optimizer_step(&mut self, trainer: &mut TrainerState, optimizer: &mut Sgd) {
        let mut r = self.0.lock().unwrap();
        if r.last().map(|e| e.0) != Some(trainer.current_epoch()) {
            let lrs = (0..optimizer.num_groups()).map(|g| optimizer.learning_rate(g)).collect();
            r.push((trainer.current_epoch(), lrs, Vec::new()));
        }
    }
    fn on_train_epoch_end(&mut self, module: &mut impl HasParameters) {
        if let Some(last) = self.0.lock().unwrap().last_mut() {
            last.2 = values(module.parameters(), "backbone.");
        }
    }
}

fn trainer<C: lightning::CallbackTuple>(dir: &std::path::Path, epochs: usize, cbs: C) -> Trainer<C::List> {
    Trainer::builder()
        .accelerator(Accelerator::Cpu)
        .default_root_dir(dir)
        .max_epochs(epochs)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .callbacks(cbs)
        .build()
        .unwrap()
}

#[test]
fn frozen_parameters_stay_unchanged_and_get_no_optimizer_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = net();
    let (backbone0, head0) = (values(&model.vars, "backbone."), values(&model.vars, "head."));
    let mut t = trainer(dir.path(), 2, (BackboneFinetuning::new(),));
    let ckpt = t.fit(&mut model, Data::loader(data())).unwrap().last_checkpoint.unwrap();
    assert_eq!(values(&model.vars, "backbone."), backbone0, "the frozen backbone did not move");
    assert_ne!(values(&model.vars, "head."), head0, "the head trained");
    let ck = Checkpoint::load(&ckpt).unwrap();
    let opt = &ck.optimizers[0];
    assert!(opt.tensors.keys().all(|k| k.starts_with("head.")), "{:?}", opt.tensors.keys());
    assert!(opt.tensors.contains_key("head.weight.momentum_buffer"));
    assert_eq!(opt.meta.steps.keys().collect::<Vec<_>>(), ["head.bias", "head.weight"]);
    assert_eq!(ck.frozen, Some(vec!["backbone.fc.bias".to_string(), "backbone.fc.weight".to_string()]));
}

/// A module whose optimizer holds every parameter, frozen or not (torch's
/// `SGD(model.parameters())`), with weight decay, which would move a frozen weight that got
/// a zero gradient.
#[lightning_module]
struct All {
    vars: VarMap,
    inner: Net,
}

#[lightning_module]
impl All {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        let h = self.inner.backbone.forward(&batch.0)?.tanh()?;
        self.inner.head.forward(&h)?.sub(&batch.1)?.sqr()?.mean_all()
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::with_config(&self.vars, SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 0.1, ..Default::default() })
    }
}

fn all() -> All {
    let inner = net();
    All { vars: inner.vars.clone(), inner }
}

#[test]
fn an_optimizer_holding_frozen_parameters_gives_them_no_step_or_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = all();
    let backbone0 = values(&model.vars, "backbone.");
    let mut t = trainer(dir.path(), 2, (BackboneFinetuning::new(),));
    let ckpt = t.fit(&mut model, Data::loader(data())).unwrap().last_checkpoint.unwrap();
    assert_eq!(values(&model.vars, "backbone."), backbone0);
    let opt = &Checkpoint::load(&ckpt).unwrap().optimizers[0];
    assert!(opt.tensors.keys().all(|k| k.starts_with("head.")), "{:?}", opt.tensors.keys());
    assert_eq!(opt.meta.steps["backbone.fc.weight"], 0);
    // a run that freezes nothing records no frozen set
    let mut plain = all();
    let ckpt = trainer(&dir.path().join("plain"), 1, ()).fit(&mut plain, Data::loader(data())).unwrap();
    assert_eq!(Checkpoint::load(&ckpt.last_checkpoint.unwrap()).unwrap().frozen, None);
}

#[test]
fn under_ddp_frozen_parameters_get_no_gradient_from_the_mean() {
    // the DDP mean gives every variable a gradient (zeros where a rank had none): frozen
    // ones must lose it again, or weight decay would shrink them
    let dir = tempfile::tempdir().unwrap();
    let mut model = all();
    let backbone0 = values(&model.vars, "backbone.");
    let mut t = Trainer::builder()
        .accelerator(Accelerator::Cpu)
        .default_root_dir(dir.path())
        .max_epochs(2)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .ddp(Arc::new(RankZeroOfTwo))
        .callbacks((BackboneFinetuning::new(),))
        .build()
        .unwrap();
    let ckpt = t.fit(&mut model, Data::loader(data())).unwrap().last_checkpoint.unwrap();
    assert_eq!(values(&model.vars, "backbone."), backbone0);
    let opt = &Checkpoint::load(&ckpt).unwrap().optimizers[0];
    assert!(opt.tensors.keys().all(|k| k.starts_with("head.")), "{:?}", opt.tensors.keys());
}

/// Lightning 2.6's `BackboneFinetuning.finetune_function`, written out: the backbone's rate
/// at the start of each epoch from `unfreeze` on, given the first group's rate `lr`.
fn lightning_rates(
    epochs: usize,
    unfreeze: usize,
    lr: f64,
    ratio: f64,
    initial: Option<f64>,
    align: bool,
    lambda: impl Fn(usize) -> f64,
) -> Vec<Option<f64>> {
    let mut previous = None;
    (0..epochs)
        .map(|epoch| {
            if epoch == unfreeze {
                // initial_backbone_lr = backbone_initial_lr or current_lr * backbone_initial_ratio_lr
                previous = Some(initial.unwrap_or(lr * ratio));
            } else if epoch > unfreeze {
                // next = lambda_func(epoch + 1) * previous_backbone_lr; capped at current_lr when should_align
                let next = lambda(epoch + 1) * previous.unwrap();
                previous = Some(if align && next > lr { lr } else { next });
            }
            previous
        })
        .collect()
}

fn backbone_rates(record: &Record) -> Vec<Option<f64>> {
    record.0.lock().unwrap().iter().map(|(_, lrs, _)| lrs.get(1).copied()).collect()
}

#[test]
fn the_backbone_rate_follows_lightnings_arithmetic() {
    let dir = tempfile::tempdir().unwrap();
    let record = Record::default();
    let cb = BackboneFinetuning::new().unfreeze_backbone_at_epoch(1).lambda_func(|_| 1.5);
    let mut t = trainer(dir.path(), 8, (cb, record.clone()));
    t.fit(&mut net(), Data::loader(data())).unwrap();
    let want = lightning_rates(8, 1, 0.1, 0.1, None, true, |_| 1.5);
    // 0.01, ×1.5 each epoch: 0.015, 0.0225, 0.03375, 0.050625, 0.0759375, then capped at 0.1
    assert_eq!(want[7], Some(0.1));
    assert!((want[6].unwrap() - 0.0759375).abs() < 1e-15);
    let got = backbone_rates(&record);
    assert_eq!(got.len(), 8);
    for (g, w) in got.iter().zip(&want) {
        match (g, w) {
            (Some(g), Some(w)) => assert!((g - w).abs() < 1e-15, "{got:?} vs {want:?}"),
            _ => assert_eq!(g, w, "{got:?} vs {want:?}"),
        }
    }
    assert_eq!(t.callbacks().0.previous_backbone_lr(), Some(0.1));

    // Lightning's default lambda (×2), a given initial rate and no alignment
    let record = Record::default();
    let cb = BackboneFinetuning::new().unfreeze_backbone_at_epoch(2).backbone_initial_lr(0.03).should_align(false);
    let mut t = trainer(&dir.path().join("b"), 5, (cb, record.clone()));
    t.fit(&mut net(), Data::loader(data())).unwrap();
    let want = lightning_rates(5, 2, 0.1, 0.1, Some(0.03), false, lightning::finetune::multiplicative);
    assert_eq!(want, [None, None, Some(0.03), Some(0.06), Some(0.12)]);
    assert_eq!(backbone_rates(&record), want);
}

#[test]
fn unfreezing_adds_a_group_that_then_trains() {
    let dir = tempfile::tempdir().unwrap();
    let record = Record::default();
    let mut model = net();
    let backbone0 = values(&model.vars, "backbone.");
    let cb = BackboneFinetuning::new().unfreeze_backbone_at_epoch(1);
    let mut t = trainer(dir.path(), 3, (cb, record.clone()));
    t.fit(&mut model, Data::loader(data())).unwrap();
    let r = record.0.lock().unwrap();
    assert_eq!(r[0].1, [0.1], "one group while frozen");
    assert_eq!(r[0].2, backbone0, "unchanged in epoch 0");
    assert_eq!(r[1].1.len(), 2, "the backbone's group was added at epoch 1");
    assert!((r[1].1[1] - 0.01).abs() < 1e-15, "0.1 × backbone_initial_ratio_lr");
    assert_ne!(r[1].2, backbone0, "and it trained in epoch 1");
    assert_ne!(r[2].2, r[1].2);
}

/// A schedule of one's own: freeze, then unfreeze without a rate (the first group's / 10).
struct OwnSchedule;

impl BaseFinetuning for OwnSchedule {
    fn freeze_before_training(&mut self, ft: &mut Finetuner<'_>) -> lightning::Result<()> {
        ft.freeze("backbone.").map(|_| ())
    }
    fn finetune_function<O: Optimizer>(
        &mut self,
        ft: &mut Finetuner<'_>,
        epoch: usize,
        optimizer: &mut O,
    ) -> lightning::Result<()> {
        if epoch == 1 {
            let added = ft.unfreeze_and_add_param_group(optimizer, "backbone.", None, 4.0, true)?;
            assert_eq!(added, ["backbone.fc.bias", "backbone.fc.weight"]);
            assert_eq!(ft.trainer().frozen_parameters().count(), 0);
        }
        Ok(())
    }
}

#[test]
fn a_base_finetuning_of_ones_own_runs_as_a_callback() {
    let dir = tempfile::tempdir().unwrap();
    let record = Record::default();
    let mut t = trainer(dir.path(), 2, (Finetuning(OwnSchedule), record.clone()));
    t.fit(&mut net(), Data::loader(data())).unwrap();
    assert_eq!(backbone_rates(&record), [None, Some(0.1 / 4.0)]);
}

#[test]
fn a_prefix_that_matches_nothing_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = trainer(dir.path(), 1, (BackboneFinetuning::new().prefix("backbon3."),));
    let err = t.fit(&mut net(), Data::loader(data())).unwrap_err().to_string();
    assert!(err.contains("no parameter of the module starts with `backbon3.`"), "{err}");
    assert!(err.contains("backbone.fc.weight"), "{err}");
}

#[test]
fn a_resume_after_the_unfreeze_has_the_group_and_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let cb = || BackboneFinetuning::new().unfreeze_backbone_at_epoch(1).lambda_func(|_| 1.5);
    let mut straight = net();
    let mut t = trainer(&dir.path().join("a"), 4, (cb(),));
    t.fit(&mut straight, Data::loader(data())).unwrap();

    let mut first = net();
    let mut t = trainer(&dir.path().join("b"), 2, (cb(),));
    let ckpt = t.fit(&mut first, Data::loader(data())).unwrap().last_checkpoint.unwrap();
    let ck = Checkpoint::load(&ckpt).unwrap();
    let meta = &ck.optimizers[0].meta;
    assert_eq!(meta.groups.len(), 2, "{:?}", meta.groups);
    assert_eq!(meta.groups[1], ["backbone.fc.bias", "backbone.fc.weight"]);
    assert!(ck.optimizers[0].tensors.contains_key("backbone.fc.weight.momentum_buffer"));
    assert_eq!(ck.frozen, Some(vec![]));

    let mut resumed = net();
    let record = Record::default();
    let mut t = trainer(&dir.path().join("b"), 4, (cb(), record.clone()));
    t.resume_from(&ckpt);
    t.fit(&mut resumed, Data::loader(data())).unwrap();
    assert_eq!(values(&resumed.vars, ""), values(&straight.vars, ""), "bit-identical after resume");
    // epochs 2 and 3 (0.01 at epoch 1): × 1.5 from the restored previous rate, twice
    let rates = backbone_rates(&record);
    assert!((rates[0].unwrap() - 0.015).abs() < 1e-15 && (rates[1].unwrap() - 0.0225).abs() < 1e-15, "{rates:?}");
}

fn write(path: &std::path::Path, tensors: &[(&str, Tensor)]) {
    let map: std::collections::HashMap<String, Tensor> =
        tensors.iter().map(|(k, t)| (k.to_string(), t.clone())).collect();
    candle_core::safetensors::save(&map, path).unwrap();
}

#[test]
fn pretrained_weights_load_by_name_with_a_prefix_map_and_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pretrained.safetensors");
    let w = Tensor::arange(0f32, 24., &Device::Cpu).unwrap().reshape((8, 3)).unwrap();
    let b = Tensor::ones(8, DType::F64, &Device::Cpu).unwrap();
    let extra = Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap();
    write(&file, &[("features.fc.weight", w.clone()), ("features.fc.bias", b), ("classifier.weight", extra)]);
    let model = net();
    let head0 = values(&model.vars, "head.");
    let report = load_pretrained(&model.vars, &file, &[("features.", "backbone.")]).unwrap();
    assert_eq!(report.loaded, ["backbone.fc.bias", "backbone.fc.weight"]);
    assert_eq!(report.missing, ["head.bias", "head.weight"]);
    assert_eq!(report.unexpected, ["classifier.weight"]);
    let mut want = vec![1f32; 8];
    want.extend(w.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    assert_eq!(values(&model.vars, "backbone."), want, "loaded, f64 converted to the variable's f32");
    assert_eq!(values(&model.vars, "head."), head0);

    // without the map nothing matches: everything is missing or unexpected, nothing fails
    let report = load_pretrained(&net().vars, &file, &[]).unwrap();
    assert!(report.loaded.is_empty() && report.missing.len() == 4 && report.unexpected.len() == 3);
}

#[test]
fn a_shape_mismatch_is_a_typed_error_and_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong.safetensors");
    let bias = Tensor::ones(8, DType::F32, &Device::Cpu).unwrap();
    let wide = Tensor::zeros((8, 4), DType::F32, &Device::Cpu).unwrap();
    write(&file, &[("features.fc.bias", bias), ("features.fc.weight", wide)]);
    let model = net();
    let before = values(&model.vars, "");
    match load_pretrained(&model.vars, &file, &[("features.", "backbone.")]) {
        Err(Error::PretrainedShapes { mismatches, .. }) => {
            assert_eq!(mismatches.len(), 1);
            assert_eq!((mismatches[0].name.as_str(), &mismatches[0].file[..]), ("backbone.fc.weight", &[8, 4][..]));
            assert_eq!(mismatches[0].module, [8, 3]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(values(&model.vars, ""), before, "all or nothing");
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, b"not a safetensors file").unwrap();
    assert!(matches!(load_pretrained(&model.vars, &bad, &[]), Err(Error::BadFile { .. })));
    let none = load_pretrained(&model.vars, dir.path().join("none.safetensors"), &[]);
    assert!(matches!(none, Err(Error::Io { .. })));
    let _ = VarBuilder::from_varmap(&model.vars, DType::F32, &Device::Cpu);
}

/// The user trial's silent no-op: a prefix typo matched nothing, and nothing said so.
#[test]
fn a_file_that_matches_nothing_warns() {
    if std::env::var_os("FINETUNE_WARN_CHILD").is_some() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.safetensors");
        let w = candle_core::Tensor::ones((2, 3), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        candle_core::safetensors::save(&[("features.fc.weight", w)].into_iter().collect(), &file).unwrap();
        let vars = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&vars, candle_core::DType::F32, &candle_core::Device::Cpu);
        let _fc = candle_nn::linear_no_bias(3, 2, vb.pp("backbone.fc")).unwrap();
        let report = lightning::finetune::load_pretrained(&vars, &file, &[("feature.", "backbone.")]).unwrap();
        assert!(report.loaded.is_empty());
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["a_file_that_matches_nothing_warns", "--exact", "--nocapture", "--test-threads=1"])
        .env("FINETUNE_WARN_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("load_pretrained: none of the 1 tensors of")
            && stderr.contains("(the file has `features.fc.weight`, the module `backbone.fc.weight`)"),
        "{stderr}"
    );
}
