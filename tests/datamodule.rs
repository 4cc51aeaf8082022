//! A DataModule in Lightning's order (reference §2.6, §3): its prepare_data/setup before
//! the callbacks' and the module's, teardown first, its loaders, its state in checkpoints.

mod common;

use candle_core::{Device, Tensor};
use common::{data, take, Hooked, Log, Recorder};
use lightning::prelude::*;
use lightning::serde_json::{json, Value};
use lightning::{datamodule, DataModule};

struct Dm {
    log: Log,
    loaded: Option<Value>,
}

impl Dm {
    fn rec(&self, s: &str) {
        self.log.borrow_mut().push(format!("[D] {s}"));
    }
}

#[datamodule]
impl DataModule for Dm {
    type Batch = (Tensor, Tensor);
    type Loader = DataLoader;
    fn prepare_data(&mut self) -> lightning::Result<()> {
        self.rec("prepare_data");
        Ok(())
    }
    fn setup(&mut self, stage: Stage) -> lightning::Result<()> {
        self.rec(&format!("setup({stage})"));
        Ok(())
    }
    fn teardown(&mut self, stage: Stage) -> lightning::Result<()> {
        self.rec(&format!("teardown({stage})"));
        Ok(())
    }
    fn train_dataloader(&mut self) -> lightning::Result<Option<DataLoader>> {
        self.rec("train_dataloader");
        Ok(Some(data(2)))
    }
    fn val_dataloader(&mut self) -> lightning::Result<Option<DataLoader>> {
        self.rec("val_dataloader");
        Ok(Some(data(2)))
    }
    fn test_dataloader(&mut self) -> lightning::Result<Option<DataLoader>> {
        self.rec("test_dataloader");
        Ok(Some(data(2)))
    }
    fn predict_dataloader(&mut self) -> lightning::Result<Option<DataLoader>> {
        self.rec("predict_dataloader");
        Ok(Some(data(2)))
    }
    fn state_dict(&mut self) -> lightning::Result<Value> {
        self.rec("state_dict");
        Ok(json!({"seen": true}))
    }
    fn load_state_dict(&mut self, state: &Value) -> lightning::Result<()> {
        self.rec("load_state_dict");
        self.loaded = Some(state.clone());
        Ok(())
    }
}

/// The same, with two of the three batch-transfer hooks: they replace the module's.
struct Transferring(Dm);

#[datamodule]
impl DataModule for Transferring {
    type Batch = (Tensor, Tensor);
    type Loader = DataLoader;
    fn train_dataloader(&mut self) -> lightning::Result<Option<DataLoader>> {
        self.0.train_dataloader()
    }
    fn on_before_batch_transfer(&mut self, batch: (Tensor, Tensor), _: usize) -> lightning::Result<(Tensor, Tensor)> {
        self.0.rec("on_before_batch_transfer");
        Ok(batch)
    }
    fn transfer_batch_to_device(
        &mut self,
        batch: (Tensor, Tensor),
        device: &Device,
        _: usize,
    ) -> lightning::Result<(Tensor, Tensor)> {
        self.0.rec("transfer_batch_to_device");
        TransferBatch::to_device(batch, device)
    }
}

fn only(prefix: &str, log: &[String]) -> Vec<String> {
    log.iter().filter(|l| l.starts_with(prefix)).cloned().collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn builder(dir: &tempfile::TempDir) -> lightning::TrainerBuilder {
    Trainer::builder()
        .accelerator(Accelerator::Cpu)
        .default_root_dir(dir.path())
        .max_epochs(1)
        .limit_train_batches(2)
        .limit_val_batches(2)
}

#[test]
fn fit_with_a_datamodule_follows_lightning() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let mut dm = Dm { log: log.clone(), loaded: None };
    let mut model = Recorder::new(&log);
    let mut t = builder(&dir).callbacks((Hooked::new(&log),)).build().unwrap();
    let out = t.fit(&mut model, Data::datamodule(&mut dm)).unwrap();
    let all = take(&log);
    // exactly §2.6's datamodule records
    let want = ["prepare_data", "setup(fit)", "val_dataloader", "train_dataloader", "state_dict", "teardown(fit)"];
    assert_eq!(only("[D]", &all), want.iter().map(|h| format!("[D] {h}")).collect::<Vec<_>>());
    // the datamodule goes first for prepare_data, setup and teardown; the module's loaders are not asked
    assert_eq!(
        all[..6],
        strs(&[
            "[M] configure_callbacks",
            "[D] prepare_data",
            "[M] prepare_data",
            "[D] setup(fit)",
            "[C] setup",
            "[M] setup"
        ])
    );
    assert_eq!(all[all.len() - 3..], strs(&["[D] teardown(fit)", "[C] teardown", "[M] teardown"]));
    assert!(!all.iter().any(|l| l.starts_with("[M]") && l.ends_with("_dataloader")));
    // its state is saved after the callbacks' and before their on_save_checkpoint
    let i = all.iter().position(|l| l == "[D] state_dict").unwrap();
    assert_eq!(all[i - 1..i + 2], strs(&["[C] state_dict", "[D] state_dict", "[C] on_save_checkpoint"]));

    // resuming gives it back its state, after the module's on_load_checkpoint
    let mut dm2 = Dm { log: log.clone(), loaded: None };
    let mut t2 = builder(&dir).max_epochs(2).callbacks((Hooked::new(&log),)).build().unwrap();
    t2.resume_from(out.last_checkpoint.unwrap());
    t2.fit(&mut Recorder::new(&log), Data::datamodule(&mut dm2)).unwrap();
    let all = take(&log);
    let i = all.iter().position(|l| l == "[D] load_state_dict").unwrap();
    assert_eq!(all[i - 1..i + 2], strs(&["[M] on_load_checkpoint", "[D] load_state_dict", "[C] on_load_checkpoint"]));
    assert_eq!(dm2.loaded, Some(json!({"seen": true})));
}

#[test]
fn validate_test_and_predict_with_a_datamodule() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let mut t = builder(&dir).build().unwrap();
    let mut dm = Dm { log: log.clone(), loaded: None };
    let mut model = Recorder::new(&log);
    t.validate(&mut model, Data::datamodule(&mut dm)).unwrap();
    assert_eq!(
        only("[D]", &take(&log)),
        strs(&["[D] prepare_data", "[D] setup(validate)", "[D] val_dataloader", "[D] teardown(validate)"])
    );
    t.test(&mut model, Data::datamodule(&mut dm)).unwrap();
    assert_eq!(
        only("[D]", &take(&log)),
        strs(&["[D] prepare_data", "[D] setup(test)", "[D] test_dataloader", "[D] teardown(test)"])
    );
    let preds = t.predict(&mut model, Data::datamodule(&mut dm)).unwrap();
    assert_eq!(preds.len(), 2);
    let d = only("[D]", &take(&log));
    assert_eq!((d[2].as_str(), d.last().unwrap().as_str()), ("[D] predict_dataloader", "[D] teardown(predict)"));
}

#[test]
fn a_datamodules_transfer_hooks_replace_the_modules_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::default();
    let mut dm = Transferring(Dm { log: log.clone(), loaded: None });
    let mut t = builder(&dir).limit_val_batches(0).enable_checkpointing(false).build().unwrap();
    t.fit(&mut Recorder::new(&log), Data::datamodule(&mut dm)).unwrap();
    let all = take(&log);
    let transfer = |l: &&String| l.contains("batch_transfer") || l.contains("transfer_batch");
    // per batch: the datamodule's two hooks, then the module's third (Lightning's `_DataHookSelector`)
    let seen: Vec<&str> = all.iter().filter(transfer).map(String::as_str).collect();
    let batch = ["[D] on_before_batch_transfer", "[D] transfer_batch_to_device", "[M] on_after_batch_transfer"];
    assert_eq!(seen, [batch, batch].concat());
}
