//! `BasePredictionWriter` (write intervals batch, epoch, both) and
//! `Trainer::return_predictions(false)`.

use std::fs;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use lightning::prelude::*;

/// Predicts twice its input.
#[lightning_module]
struct Doubler {
    vars: VarMap,
}

#[lightning_module]
impl Doubler {
    fn predict_step(&mut self, batch: &(Tensor, Tensor)) -> lightning::Result<Tensor> {
        Ok((&batch.0 * 2.0)?)
    }
}

/// 10 rows (0..10) in batches of 4: 3 batches of 4, 4 and 2 rows.
fn inputs() -> DataLoader {
    let x = Tensor::arange(0f32, 10., &Device::Cpu).unwrap().reshape((10, 1)).unwrap();
    DataLoader::new(x.clone(), x, 4).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn text(v: &[f32]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" ")
}

/// Writes `batch_<idx>.txt` per batch and `epoch.txt` with every prediction, one batch a line.
struct FileWriter {
    dir: PathBuf,
    batches_seen: Vec<usize>,
    epochs: usize,
}

impl FileWriter {
    fn new(dir: &Path) -> Self {
        FileWriter { dir: dir.to_path_buf(), batches_seen: Vec::new(), epochs: 0 }
    }
}

impl PredictionWriter for FileWriter {
    type Batch = (Tensor, Tensor);
    type Prediction = Tensor;

    fn write_on_batch_end(
        &mut self,
        trainer: &TrainerState,
        prediction: &Tensor,
        batch: &(Tensor, Tensor),
        batch_idx: usize,
        dataloader_idx: usize,
    ) -> lightning::Result<()> {
        assert_eq!((dataloader_idx, trainer.stage()), (0, Stage::Predict));
        assert_eq!(prediction.dims()[0], batch.0.dims()[0]);
        fs::write(self.dir.join(format!("batch_{batch_idx}.txt")), text(&values(prediction)))?;
        self.batches_seen.push(batch_idx);
        Ok(())
    }

    fn write_on_epoch_end(&mut self, _: &TrainerState, predictions: &[Tensor]) -> lightning::Result<()> {
        let lines: Vec<String> = predictions.iter().map(|p| text(&values(p))).collect();
        fs::write(self.dir.join("epoch.txt"), lines.join("\n"))?;
        self.epochs += 1;
        Ok(())
    }
}

fn trainer<W>(writer: BasePredictionWriter<W>) -> Trainer<(BasePredictionWriter<W>,)>
where
    W: PredictionWriter,
    W::Prediction: Clone,
{
    Trainer::builder().enable_progress_bar(false).enable_logger(false).callbacks((writer,)).build().unwrap()
}

fn read(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name)).unwrap()
}

#[test]
fn batch_and_epoch_writer_writes_every_batch_and_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let writer = BasePredictionWriter::new(FileWriter::new(dir.path())).write_interval(WriteInterval::BatchAndEpoch);
    let mut t = trainer(writer);
    let preds = t.predict(&mut Doubler { vars: VarMap::new() }, Data::loader(inputs())).unwrap();
    assert_eq!(preds.len(), 3, "predictions are returned by default");
    assert_eq!(read(dir.path(), "batch_0.txt"), "0 2 4 6");
    assert_eq!(read(dir.path(), "batch_1.txt"), "8 10 12 14");
    assert_eq!(read(dir.path(), "batch_2.txt"), "16 18");
    assert_eq!(read(dir.path(), "epoch.txt"), "0 2 4 6\n8 10 12 14\n16 18");
    let w = t.callbacks().0.writer();
    assert_eq!((w.batches_seen.clone(), w.epochs), (vec![0, 1, 2], 1));
}

#[test]
fn return_predictions_false_returns_none_while_the_writer_sees_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = trainer(BasePredictionWriter::new(FileWriter::new(dir.path())));
    let mut model = Doubler { vars: VarMap::new() };
    let preds = t.return_predictions(false).predict(&mut model, Data::loader(inputs())).unwrap();
    assert!(preds.is_empty(), "no predictions kept: {}", preds.len());
    assert_eq!(t.callbacks().0.writer().batches_seen, [0, 1, 2]);
    assert_eq!(read(dir.path(), "batch_2.txt"), "16 18");
    assert!(!dir.path().join("epoch.txt").exists(), "a batch-interval writer writes no epoch file");
    // the setting is for one `predict`, as `ckpt_path` is
    let preds = t.predict(&mut model, Data::loader(inputs())).unwrap();
    assert_eq!(preds.iter().map(values).collect::<Vec<_>>()[2], [16., 18.]);
    assert_eq!(t.callbacks().0.writer().batches_seen, [0, 1, 2, 0, 1, 2]);
}

/// An epoch-interval writer gets every prediction at the end even when the trainer keeps
/// none (the callback keeps them, as Lightning's loop does for it).
#[test]
fn epoch_writer_gets_all_predictions_without_return_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let writer = BasePredictionWriter::new(FileWriter::new(dir.path())).write_interval("epoch".parse().unwrap());
    let mut t = trainer(writer);
    let preds = t.return_predictions(false).predict(&mut Doubler { vars: VarMap::new() }, Data::loader(inputs()));
    assert!(preds.unwrap().is_empty());
    assert_eq!(read(dir.path(), "epoch.txt"), "0 2 4 6\n8 10 12 14\n16 18");
    assert!(!dir.path().join("batch_0.txt").exists());
    assert_eq!(t.callbacks().0.writer().epochs, 1);
}

/// Only `write_on_batch_end`: an epoch interval is an error naming the missing method.
struct BatchOnly(usize);

impl PredictionWriter for BatchOnly {
    type Batch = (Tensor, Tensor);
    type Prediction = Tensor;
    fn write_on_batch_end(
        &mut self,
        _: &TrainerState,
        _: &Tensor,
        _: &(Tensor, Tensor),
        _: usize,
        _: usize,
    ) -> lightning::Result<()> {
        self.0 += 1;
        Ok(())
    }
}

#[test]
fn a_writer_without_the_interval_s_method_is_an_error() {
    let mut t = trainer(BasePredictionWriter::new(BatchOnly(0)).write_interval(WriteInterval::Epoch));
    let e = t.predict(&mut Doubler { vars: VarMap::new() }, Data::loader(inputs())).unwrap_err().to_string();
    assert!(e.contains("write_on_epoch_end") && e.contains("BasePredictionWriter"), "{e}");
    let mut t = trainer(BasePredictionWriter::new(BatchOnly(0)));
    t.predict(&mut Doubler { vars: VarMap::new() }, Data::loader(inputs())).unwrap();
    assert_eq!(t.callbacks().0.writer().0, 3);
}
