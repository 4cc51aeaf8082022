//! `BasePredictionWriter`: hands every predict batch, or the whole epoch's predictions, to a
//! writer of yours, so predictions can go to disk instead of memory.

use std::str::FromStr;

use crate::{Error, Result, TrainerState};

/// When a [`BasePredictionWriter`] writes (Lightning's `write_interval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteInterval {
    /// After every predict batch: [`PredictionWriter::write_on_batch_end`] (`"batch"`).
    Batch,
    /// Once, at the end of the predict epoch, with all its predictions:
    /// [`PredictionWriter::write_on_epoch_end`] (`"epoch"`).
    Epoch,
    /// Both (`"batch_and_epoch"`).
    BatchAndEpoch,
}

impl WriteInterval {
    /// Whether the writer writes after each batch.
    pub fn on_batch(self) -> bool {
        matches!(self, WriteInterval::Batch | WriteInterval::BatchAndEpoch)
    }
    /// Whether the writer writes at the epoch's end.
    pub fn on_epoch(self) -> bool {
        matches!(self, WriteInterval::Epoch | WriteInterval::BatchAndEpoch)
    }
}

impl FromStr for WriteInterval {
    type Err = Error;
    /// Lightning's spellings: `batch`, `epoch`, `batch_and_epoch`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "batch" => Ok(WriteInterval::Batch),
            "epoch" => Ok(WriteInterval::Epoch),
            "batch_and_epoch" => Ok(WriteInterval::BatchAndEpoch),
            other => {
                Err(Error::config("write_interval", format!("`{other}` is not one of batch, epoch, batch_and_epoch")))
            }
        }
    }
}

/// What a [`BasePredictionWriter`] calls: Lightning's `write_on_batch_end` and
/// `write_on_epoch_end`, for one module's batch and prediction types. Implement the one(s)
/// your [`WriteInterval`] uses; the other's default is an error saying it is missing, as
/// Lightning raises `NotImplementedError`.
///
/// Lightning also passes `pl_module` and the sampler's `batch_indices`: the module is not
/// passed (a writer writes what it is given), and our loaders do not report which samples
/// a batch holds, so there are no `batch_indices` (`batch_idx` and the loader's batch size
/// locate an unshuffled batch).
pub trait PredictionWriter {
    /// The module's batch type (`LightningModule::Batch`).
    type Batch;
    /// What the module's `predict_step` returns (`LightningModule::Prediction`).
    type Prediction;

    /// Writes one batch's prediction; `trainer` gives the rank and the log directory.
    fn write_on_batch_end(
        &mut self,
        trainer: &TrainerState,
        prediction: &Self::Prediction,
        batch: &Self::Batch,
        batch_idx: usize,
        dataloader_idx: usize,
    ) -> Result<()> {
        let _ = (trainer, prediction, batch, batch_idx, dataloader_idx);
        Err(missing("write_on_batch_end", "batch"))
    }

    /// Writes the epoch's predictions, one per batch, in batch order.
    fn write_on_epoch_end(&mut self, trainer: &TrainerState, predictions: &[Self::Prediction]) -> Result<()> {
        let _ = (trainer, predictions);
        Err(missing("write_on_epoch_end", "epoch"))
    }
}

fn missing(method: &str, interval: &str) -> Error {
    Error::config(
        "BasePredictionWriter",
        format!(
            "its write interval includes `{interval}`, but the writer does not implement `{method}`: \
             implement it, or choose the interval the writer implements"
        ),
    )
}

/// Lightning's `BasePredictionWriter`: after every predict batch
/// ([`WriteInterval::Batch`], the default) and/or at the end of the predict epoch
/// ([`WriteInterval::Epoch`]) it hands the predictions to your [`PredictionWriter`].
///
/// With `trainer.return_predictions(false).predict(..)` (Lightning's
/// `return_predictions=False`) the trainer keeps no predictions, so a batch-interval writer
/// lets outputs larger than memory go to disk. An epoch-interval writer needs every
/// prediction at the end: as Lightning's loop does for it, this callback keeps them (one
/// clone each, cheap for tensors, which share their storage) until `write_on_epoch_end`,
/// then drops them.
///
/// ```
/// use lightning::callbacks::{BasePredictionWriter, PredictionWriter, WriteInterval};
/// use lightning::TrainerState;
/// use candle_core::Tensor;
///
/// struct Rows(Vec<usize>);
/// impl PredictionWriter for Rows {
///     type Batch = (Tensor, Tensor);
///     type Prediction = Tensor;
///     fn write_on_batch_end(&mut self, _: &TrainerState, p: &Tensor, _: &(Tensor, Tensor), _: usize, _: usize) -> lightning::Result<()> {
///         self.0.push(p.dim(0)?); // a real writer writes a file here
///         Ok(())
///     }
/// }
/// let writer = BasePredictionWriter::new(Rows(Vec::new())); // WriteInterval::Batch
/// let both = BasePredictionWriter::new(Rows(Vec::new())).write_interval(WriteInterval::BatchAndEpoch);
/// # let _ = (writer, both);
/// // trainer = Trainer::builder().callbacks((writer,)).build()?;
/// // trainer.return_predictions(false).predict(&mut model, Data::loader(inputs))?;
/// ```
#[derive(Debug)]
pub struct BasePredictionWriter<W: PredictionWriter> {
    writer: W,
    interval: WriteInterval,
    /// The epoch's predictions, for an epoch-interval writer.
    kept: Vec<W::Prediction>,
}

impl<W: PredictionWriter> BasePredictionWriter<W> {
    /// Writes after every batch.
    pub fn new(writer: W) -> Self {
        BasePredictionWriter { writer, interval: WriteInterval::Batch, kept: Vec::new() }
    }
    /// When to write (Lightning's `write_interval`, default `Batch`).
    pub fn write_interval(mut self, interval: WriteInterval) -> Self {
        self.interval = interval;
        self
    }
    /// The interval.
    pub fn interval(&self) -> WriteInterval {
        self.interval
    }
    /// The writer.
    pub fn writer(&self) -> &W {
        &self.writer
    }
    /// The writer, to change it between runs.
    pub fn writer_mut(&mut self) -> &mut W {
        &mut self.writer
    }
}

#[lightning_macros::callback]
impl<W: PredictionWriter> BasePredictionWriter<W>
where
    W::Prediction: Clone,
{
    fn on_predict_epoch_start(&mut self) {
        self.kept.clear();
    }

    fn on_predict_batch_end(
        &mut self,
        trainer: &mut TrainerState,
        outputs: &W::Prediction,
        batch: &W::Batch,
        batch_idx: usize,
        dataloader_idx: usize,
    ) -> Result<()> {
        if self.interval.on_batch() {
            self.writer.write_on_batch_end(trainer, outputs, batch, batch_idx, dataloader_idx)?;
        }
        if self.interval.on_epoch() {
            self.kept.push(outputs.clone());
        }
        Ok(())
    }

    fn on_predict_epoch_end(&mut self, trainer: &mut TrainerState) -> Result<()> {
        if self.interval.on_epoch() {
            let kept = std::mem::take(&mut self.kept);
            self.writer.write_on_epoch_end(trainer, &kept)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_as_lightning_spells_them() {
        assert_eq!("batch".parse::<WriteInterval>().unwrap(), WriteInterval::Batch);
        assert_eq!("epoch".parse::<WriteInterval>().unwrap(), WriteInterval::Epoch);
        let both: WriteInterval = "batch_and_epoch".parse().unwrap();
        assert!(both.on_batch() && both.on_epoch());
        assert!(!WriteInterval::Epoch.on_batch() && !WriteInterval::Batch.on_epoch());
        let e = "step".parse::<WriteInterval>().unwrap_err().to_string();
        assert!(e.contains("write_interval") && e.contains("batch_and_epoch"), "{e}");
    }
}
