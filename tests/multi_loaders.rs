//! Several validation and test loaders (issue 18, item 1): per-loader epoch means under
//! Lightning's `/dataloader_idx_N` names, `limit_val_batches` and the sanity check per
//! loader, `add_dataloader_idx(false)`, and the `dataloader_idx` the hooks see.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder, VarMap};
use lightning::prelude::*;

/// `n` rows of `y = x + offset`, one row a batch.
fn rows(n: usize, offset: f32) -> DataLoader {
    let x = Tensor::arange(0f32, n as f32, &Device::Cpu).unwrap().reshape((n, 1)).unwrap();
    let y = (&x + offset as f64).unwrap();
    DataLoader::new(x, y, 1).unwrap()
}

#[lightning_module]
struct Probe {
    vars: VarMap,
    layer: Linear,
    /// (dataloader_idx argument, `trainer.dataloader_idx()`, batch_idx) of each validation step.
    seen: Vec<(usize, Option<usize>, usize)>,
    /// Log `val_loss` with `add_dataloader_idx(false)`.
    plain: bool,
    /// `trainer.num_val_batches()` at the last validation epoch's end.
    num_val: usize,
}

impl Probe {
    fn new(plain: bool) -> Self {
        let vars = VarMap::new();
        let layer = candle_nn::linear(1, 1, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu)).unwrap();
        Probe { vars, layer, seen: Vec::new(), plain, num_val: 0 }
    }
}

#[lightning_module]
impl Probe {
    #[not_hook]
    fn loss(&self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        self.layer.forward(&batch.0)?.sub(&batch.1)?.sqr()?.mean_all()
    }
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        self.loss(batch)
    }
    fn validation_step(
        &mut self,
        batch: &(Tensor, Tensor),
        batch_idx: usize,
        dataloader_idx: usize,
        trainer: &mut TrainerState,
    ) -> lightning::Result<()> {
        self.seen.push((dataloader_idx, trainer.dataloader_idx(), batch_idx));
        let loss = self.loss(batch)?;
        trainer.log_with("val_loss", &loss, Log::new().add_dataloader_idx(!self.plain))
    }
    fn on_validation_epoch_end(&mut self, trainer: &mut TrainerState) -> lightning::Result<()> {
        // outside the batch hooks no loader is current, and nothing gets a suffix
        assert_eq!(trainer.dataloader_idx(), None);
        self.num_val = trainer.num_val_batches();
        trainer.log("epochs_seen", 1.0)
    }
    fn test_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<()> {
        let loss = self.loss(batch)?;
        trainer.log("test_loss", &loss)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(&self.vars, 0.01)
    }
}

fn trainer() -> Trainer {
    Trainer::builder()
        .accelerator(Accelerator::Cpu)
        .enable_checkpointing(false)
        .enable_logger(false)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .build()
        .unwrap()
}

#[test]
fn each_loader_gets_its_own_epoch_mean() {
    let mut model = Probe::new(false);
    let mut t = trainer();
    let both = t.validate(&mut model, Data::loaders((rows(4, 1.0), rows(2, 5.0)))).unwrap();
    let first = t.validate(&mut model, Data::loader(rows(4, 1.0))).unwrap();
    let second = t.validate(&mut model, Data::loader(rows(2, 5.0))).unwrap();
    // the same weights, so each loader's mean equals a run over that loader alone
    assert_eq!(both["val_loss/dataloader_idx_0"], first["val_loss"]);
    assert_eq!(both["val_loss/dataloader_idx_1"], second["val_loss"]);
    assert_ne!(first["val_loss"], second["val_loss"]);
    // a value logged at the epoch's end keeps its name
    assert!(both.contains_key("epochs_seen") && !both.contains_key("val_loss"), "{both:?}");
    // each step saw its loader's index, batch_idx counting from 0 in each loader; with one
    // loader `trainer.dataloader_idx()` is None, as Lightning passes no index then
    let mut want = vec![(0, Some(0), 0), (0, Some(0), 1), (0, Some(0), 2), (0, Some(0), 3)];
    want.extend([(1, Some(1), 0), (1, Some(1), 1)]);
    want.extend((0..4).map(|i| (0, None, i)));
    want.extend((0..2).map(|i| (0, None, i)));
    assert_eq!(model.seen, want);
}

#[test]
fn limits_and_the_sanity_check_apply_to_each_loader() {
    let mut model = Probe::new(false);
    let mut t = Trainer::builder()
        .accelerator(Accelerator::Cpu)
        .enable_checkpointing(false)
        .enable_logger(false)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .max_epochs(1)
        .limit_val_batches(0.5)
        .num_sanity_val_steps(1)
        .build()
        .unwrap();
    let val = vec![rows(4, 1.0), rows(8, 2.0)];
    t.fit(&mut model, Data::loader(rows(2, 0.0)).val(val)).unwrap();
    let per_loader = |from: usize| {
        let mut n = [0, 0];
        model.seen[from..].iter().for_each(|s| n[s.0] += 1);
        n
    };
    // sanity check: one batch of each loader; then half of each loader
    assert_eq!(model.seen[..2].iter().map(|s| (s.0, s.2)).collect::<Vec<_>>(), [(0, 0), (1, 0)]);
    assert_eq!(per_loader(2), [2, 4]);
    assert_eq!(model.num_val, 6, "the sum over the loaders");
}

#[test]
fn one_name_from_two_loaders_without_the_suffix_is_an_error() {
    // Lightning: "You called `self.log(val_loss, ...)` twice in `validation_step` with
    // different arguments"
    let mut model = Probe::new(true);
    let err = trainer().validate(&mut model, Data::loaders([rows(2, 1.0), rows(2, 2.0)])).unwrap_err().to_string();
    assert!(err.contains("`val_loss` is logged by loader 1 in `validation_step`"), "{err}");
    assert!(err.contains("add_dataloader_idx"), "{err}");
    // with one loader the option changes nothing
    let mut model = Probe::new(true);
    let one = trainer().validate(&mut model, Data::loader(rows(2, 1.0))).unwrap();
    assert!(one.contains_key("val_loss"));
}

#[test]
fn test_with_three_loaders_of_two_types() {
    let mut model = Probe::new(false);
    let loaders = (rows(2, 1.0), Either::<DataLoader, DataLoader>::Right(rows(3, 2.0)), rows(1, 3.0));
    let metrics = trainer().test(&mut model, Data::loaders(loaders)).unwrap();
    let keys: Vec<_> = metrics.keys().cloned().collect();
    assert_eq!(keys, ["test_loss/dataloader_idx_0", "test_loss/dataloader_idx_1", "test_loss/dataloader_idx_2"]);
}
