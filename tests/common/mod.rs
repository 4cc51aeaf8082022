//! A module and a callback that implement every hook they may and record each call,
//! as Lightning's `HookedModel` / `HookedCallback` do in its hook-order test.
#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;

use candle_core::{backprop::GradStore, DType, Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder, VarMap};
use lightning::prelude::*;
use lightning::serde_json::{json, Value};

pub type Log = Rc<RefCell<Vec<String>>>;

pub fn data(n: usize) -> DataLoader {
    let x = Tensor::arange(0f32, (2 * n) as f32, &Device::Cpu).unwrap().reshape((n, 2)).unwrap();
    let x = (x / (2 * n) as f64).unwrap();
    let y = x.sum_keepdim(1).unwrap();
    DataLoader::new(x, y, 1).unwrap()
}

thread_local! {
    /// Whether the recorders add ` dl=N` to the hooks given a `dataloader_idx`, as
    /// `scripts/make_hook_order_multi.py` records Lightning's (this thread's trainer only).
    pub static RECORD_DL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// ` dl=N` when [`RECORD_DL`] is on.
fn dl(idx: usize) -> String {
    if RECORD_DL.with(std::cell::Cell::get) {
        format!(" dl={idx}")
    } else {
        String::new()
    }
}

#[lightning_module]
pub struct Recorder {
    pub vars: VarMap,
    layer: Linear,
    pub log: Log,
    /// `training_step` fails at this batch.
    pub fail_at: Option<usize>,
    /// `on_train_batch_start` returns `Flow::SkipEpoch` at this batch.
    pub skip_at: Option<usize>,
    pub n_batches: usize,
    /// Batches `training_step` saw, as (batch_idx, first input value).
    pub seen: Vec<(usize, f32)>,
}

impl Recorder {
    pub fn new(log: &Log) -> Self {
        let vars = VarMap::new();
        let layer = candle_nn::linear(2, 1, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu)).unwrap();
        Recorder { vars, layer, log: log.clone(), fail_at: None, skip_at: None, n_batches: 4, seen: Vec::new() }
    }
}

#[lightning_module]
impl Recorder {
    #[not_hook]
    fn rec(&self, hook: &str) {
        self.log.borrow_mut().push(format!("[M] {hook}"));
    }

    fn configure_callbacks(&mut self) {
        self.rec("configure_callbacks");
    }
    fn prepare_data(&mut self) {
        self.rec("prepare_data");
    }
    fn setup(&mut self, stage: Stage) {
        self.rec("setup");
        let _ = stage;
    }
    fn configure_model(&mut self) {
        self.rec("configure_model");
    }
    fn configure_optimizers(&mut self) -> lightning::Result<(Sgd, StepLr)> {
        self.rec("configure_optimizers");
        Ok((Sgd::new(&self.vars, 0.01)?, StepLr::new(1, 0.5)))
    }
    fn train_dataloader(&mut self) -> DataLoader {
        self.rec("train_dataloader");
        data(self.n_batches)
    }
    fn val_dataloader(&mut self) -> DataLoader {
        self.rec("val_dataloader");
        data(self.n_batches)
    }
    fn test_dataloader(&mut self) -> DataLoader {
        self.rec("test_dataloader");
        data(self.n_batches)
    }
    fn predict_dataloader(&mut self) -> DataLoader {
        self.rec("predict_dataloader");
        data(self.n_batches)
    }
    fn teardown(&mut self) {
        self.rec("teardown");
    }
    fn on_fit_start(&mut self) {
        self.rec("on_fit_start");
    }
    fn on_fit_end(&mut self) {
        self.rec("on_fit_end");
    }
    fn on_train_start(&mut self) {
        self.rec("on_train_start");
    }
    fn on_train_end(&mut self) {
        self.rec("on_train_end");
    }
    fn on_validation_start(&mut self) {
        self.rec("on_validation_start");
    }
    fn on_validation_end(&mut self) {
        self.rec("on_validation_end");
    }
    fn on_test_start(&mut self) {
        self.rec("on_test_start");
    }
    fn on_test_end(&mut self) {
        self.rec("on_test_end");
    }
    fn on_predict_start(&mut self) {
        self.rec("on_predict_start");
    }
    fn on_predict_end(&mut self) {
        self.rec("on_predict_end");
    }
    fn on_train_epoch_start(&mut self) {
        self.rec("on_train_epoch_start");
    }
    fn on_train_epoch_end(&mut self) {
        self.rec("on_train_epoch_end");
    }
    fn on_validation_epoch_start(&mut self) {
        self.rec("on_validation_epoch_start");
    }
    fn on_validation_epoch_end(&mut self) {
        self.rec("on_validation_epoch_end");
    }
    fn on_test_epoch_start(&mut self) {
        self.rec("on_test_epoch_start");
    }
    fn on_test_epoch_end(&mut self) {
        self.rec("on_test_epoch_end");
    }
    fn on_predict_epoch_start(&mut self) {
        self.rec("on_predict_epoch_start");
    }
    fn on_predict_epoch_end(&mut self) {
        self.rec("on_predict_epoch_end");
    }
    fn on_before_batch_transfer(&mut self, batch: (Tensor, Tensor), dataloader_idx: usize) -> (Tensor, Tensor) {
        self.rec(&format!("on_before_batch_transfer{}", dl(dataloader_idx)));
        batch
    }
    fn transfer_batch_to_device(
        &mut self,
        batch: (Tensor, Tensor),
        device: &Device,
        dataloader_idx: usize,
    ) -> lightning::Result<(Tensor, Tensor)> {
        self.rec(&format!("transfer_batch_to_device{}", dl(dataloader_idx)));
        TransferBatch::to_device(batch, device)
    }
    fn on_after_batch_transfer(&mut self, batch: (Tensor, Tensor), dataloader_idx: usize) -> (Tensor, Tensor) {
        self.rec(&format!("on_after_batch_transfer{}", dl(dataloader_idx)));
        batch
    }
    fn on_train_batch_start(&mut self, batch_idx: usize) -> Flow {
        self.rec("on_train_batch_start");
        if self.skip_at == Some(batch_idx) {
            Flow::SkipEpoch
        } else {
            Flow::Continue
        }
    }
    fn on_batch_begin(&mut self, batch: (Tensor, Tensor)) -> (Tensor, Tensor) {
        self.rec("on_batch_begin");
        batch
    }
    fn on_train_batch_end(&mut self, outputs: &StepOutput) {
        self.rec("on_train_batch_end");
        assert!(outputs.loss.is_some());
    }
    fn on_validation_batch_start(&mut self, dataloader_idx: usize) {
        self.rec(&format!("on_validation_batch_start{}", dl(dataloader_idx)));
    }
    fn on_validation_batch_end(&mut self, dataloader_idx: usize) {
        self.rec(&format!("on_validation_batch_end{}", dl(dataloader_idx)));
    }
    fn on_test_batch_start(&mut self, dataloader_idx: usize) {
        self.rec(&format!("on_test_batch_start{}", dl(dataloader_idx)));
    }
    fn on_test_batch_end(&mut self, dataloader_idx: usize) {
        self.rec(&format!("on_test_batch_end{}", dl(dataloader_idx)));
    }
    fn on_predict_batch_start(&mut self, dataloader_idx: usize) {
        self.rec(&format!("on_predict_batch_start{}", dl(dataloader_idx)));
    }
    fn on_predict_batch_end(&mut self, outputs: &Tensor, dataloader_idx: usize) {
        self.rec(&format!("on_predict_batch_end{}", dl(dataloader_idx)));
        let _ = outputs;
    }
    #[not_hook]
    fn loss(&self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        self.layer.forward(&batch.0)?.sub(&batch.1)?.sqr()?.mean_all()
    }
    fn training_step(&mut self, batch: &(Tensor, Tensor), batch_idx: usize) -> lightning::Result<Tensor> {
        self.rec("training_step");
        if self.fail_at == Some(batch_idx) {
            return Err(lightning::Error::msg(format!("planned failure at batch {batch_idx}")));
        }
        self.seen.push((batch_idx, batch.0.flatten_all()?.get(0)?.to_scalar::<f32>()?));
        Ok(self.loss(batch)?)
    }
    fn validation_step(
        &mut self,
        batch: &(Tensor, Tensor),
        dataloader_idx: usize,
        trainer: &mut TrainerState,
    ) -> lightning::Result<Tensor> {
        self.rec(&format!("validation_step{}", dl(dataloader_idx)));
        let loss = self.loss(batch)?;
        trainer.log("val_loss", &loss)?;
        Ok(loss)
    }
    fn test_step(
        &mut self,
        batch: &(Tensor, Tensor),
        dataloader_idx: usize,
        trainer: &mut TrainerState,
    ) -> lightning::Result<Tensor> {
        self.rec(&format!("test_step{}", dl(dataloader_idx)));
        let loss = self.loss(batch)?;
        trainer.log("test_loss", &loss)?;
        Ok(loss)
    }
    fn predict_step(&mut self, batch: &(Tensor, Tensor), dataloader_idx: usize) -> candle_core::Result<Tensor> {
        self.rec(&format!("predict_step{}", dl(dataloader_idx)));
        self.layer.forward(&batch.0)
    }
    fn optimizer_step(
        &mut self,
        optimizer: &mut Sgd,
        optimizer_closure: &mut impl OptimizerClosure<Self>,
    ) -> lightning::Result<()> {
        self.rec("optimizer_step");
        optimizer_closure.step(self, optimizer)
    }
    fn on_before_zero_grad(&mut self) {
        self.rec("on_before_zero_grad");
    }
    fn optimizer_zero_grad(&mut self, grads: &mut Gradients) {
        self.rec("optimizer_zero_grad");
        grads.clear();
    }
    fn on_before_backward(&mut self) {
        self.rec("on_before_backward");
    }
    fn backward(&mut self, loss: &Tensor) -> candle_core::Result<GradStore> {
        self.rec("backward");
        loss.backward()
    }
    fn on_after_backward(&mut self) {
        self.rec("on_after_backward");
    }
    fn on_before_optimizer_step(&mut self) {
        self.rec("on_before_optimizer_step");
    }
    fn configure_gradient_clipping(
        &mut self,
        grads: &mut Gradients,
        gradient_clip_val: Option<f64>,
        gradient_clip_algorithm: GradientClipAlgorithm,
    ) -> lightning::Result<()> {
        self.rec("configure_gradient_clipping");
        grads.clip(gradient_clip_val, gradient_clip_algorithm)
    }
    fn lr_scheduler_step(&mut self, scheduler: &mut StepLr, metric: Option<f64>) {
        self.rec("lr_scheduler_step");
        scheduler.step(metric);
    }
    fn on_validation_model_zero_grad(&mut self) {
        self.rec("on_validation_model_zero_grad");
    }
    fn on_validation_model_eval(&mut self) {
        self.rec("on_validation_model_eval");
    }
    fn on_validation_model_train(&mut self) {
        self.rec("on_validation_model_train");
    }
    fn on_test_model_eval(&mut self) {
        self.rec("on_test_model_eval");
    }
    fn on_test_model_train(&mut self) {
        self.rec("on_test_model_train");
    }
    fn on_predict_model_eval(&mut self) {
        self.rec("on_predict_model_eval");
    }
    fn on_save_checkpoint(&mut self, checkpoint: &mut Checkpoint) {
        self.rec("on_save_checkpoint");
        checkpoint.extra.insert("module_saw".into(), json!(checkpoint.global_step));
    }
    fn on_load_checkpoint(&mut self, checkpoint: &mut Checkpoint) {
        self.rec("on_load_checkpoint");
        assert!(checkpoint.extra.contains_key("module_saw"));
    }
}

pub struct Hooked {
    pub log: Log,
    pub loaded: Option<Value>,
}

impl Hooked {
    pub fn new(log: &Log) -> Self {
        Hooked { log: log.clone(), loaded: None }
    }
}

#[callback]
impl Hooked {
    #[not_hook]
    fn rec(&self, hook: &str) {
        self.log.borrow_mut().push(format!("[C] {hook}"));
    }
    fn setup(&mut self) {
        self.rec("setup");
    }
    fn teardown(&mut self) {
        self.rec("teardown");
    }
    fn on_fit_start(&mut self) {
        self.rec("on_fit_start");
    }
    fn on_fit_end(&mut self) {
        self.rec("on_fit_end");
    }
    fn on_sanity_check_start(&mut self, trainer: &TrainerState) {
        self.rec("on_sanity_check_start");
        assert!(!trainer.sanity_checking());
    }
    fn on_sanity_check_end(&mut self) {
        self.rec("on_sanity_check_end");
    }
    fn on_train_start(&mut self) {
        self.rec("on_train_start");
    }
    fn on_train_end(&mut self) {
        self.rec("on_train_end");
    }
    fn on_validation_start(&mut self) {
        self.rec("on_validation_start");
    }
    fn on_validation_end(&mut self) {
        self.rec("on_validation_end");
    }
    fn on_test_start(&mut self) {
        self.rec("on_test_start");
    }
    fn on_test_end(&mut self) {
        self.rec("on_test_end");
    }
    fn on_predict_start(&mut self) {
        self.rec("on_predict_start");
    }
    fn on_predict_end(&mut self) {
        self.rec("on_predict_end");
    }
    fn on_train_epoch_start(&mut self) {
        self.rec("on_train_epoch_start");
    }
    fn on_train_epoch_end(&mut self) {
        self.rec("on_train_epoch_end");
    }
    fn on_validation_epoch_start(&mut self) {
        self.rec("on_validation_epoch_start");
    }
    fn on_validation_epoch_end(&mut self) {
        self.rec("on_validation_epoch_end");
    }
    fn on_test_epoch_start(&mut self) {
        self.rec("on_test_epoch_start");
    }
    fn on_test_epoch_end(&mut self) {
        self.rec("on_test_epoch_end");
    }
    fn on_predict_epoch_start(&mut self) {
        self.rec("on_predict_epoch_start");
    }
    fn on_predict_epoch_end(&mut self) {
        self.rec("on_predict_epoch_end");
    }
    fn on_train_batch_start(&mut self) {
        self.rec("on_train_batch_start");
    }
    fn on_batch_begin(&mut self, batch: (Tensor, Tensor)) -> (Tensor, Tensor) {
        self.rec("on_batch_begin");
        batch
    }
    fn on_train_batch_end(&mut self) {
        self.rec("on_train_batch_end");
    }
    fn on_validation_batch_start(&mut self, dataloader_idx: usize) {
        self.rec(&format!("on_validation_batch_start{}", dl(dataloader_idx)));
    }
    fn on_validation_batch_end(&mut self, dataloader_idx: usize) {
        self.rec(&format!("on_validation_batch_end{}", dl(dataloader_idx)));
    }
    fn on_test_batch_start(&mut self, dataloader_idx: usize) {
        self.rec(&format!("on_test_batch_start{}", dl(dataloader_idx)));
    }
    fn on_test_batch_end(&mut self, dataloader_idx: usize) {
        self.rec(&format!("on_test_batch_end{}", dl(dataloader_idx)));
    }
    fn on_predict_batch_start(&mut self, dataloader_idx: usize) {
        self.rec(&format!("on_predict_batch_start{}", dl(dataloader_idx)));
    }
    fn on_predict_batch_end(&mut self, dataloader_idx: usize) {
        self.rec(&format!("on_predict_batch_end{}", dl(dataloader_idx)));
    }
    fn on_before_zero_grad(&mut self) {
        self.rec("on_before_zero_grad");
    }
    fn on_before_backward(&mut self) {
        self.rec("on_before_backward");
    }
    fn on_after_backward(&mut self) {
        self.rec("on_after_backward");
    }
    fn on_before_optimizer_step(&mut self) {
        self.rec("on_before_optimizer_step");
    }
    fn on_save_checkpoint(&mut self) {
        self.rec("on_save_checkpoint");
    }
    fn on_load_checkpoint(&mut self) {
        self.rec("on_load_checkpoint");
    }
    fn state_dict(&mut self) -> Value {
        self.rec("state_dict");
        json!({"foo": true})
    }
    fn load_state_dict(&mut self, state_dict: &Value) {
        self.rec("load_state_dict");
        self.loaded = Some(state_dict.clone());
    }
    fn on_exception(&mut self, exception: &lightning::Error) {
        self.rec("on_exception");
        let _ = exception;
    }
}

pub fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.borrow_mut())
}
