//! Checkpoints: one safetensors file with the module's weights, and the trainer's and
//! callbacks' state as JSON in its metadata. Written atomically.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::optim::{OptimizerMeta, OptimizerState};
use crate::{Error, Result};

const META_KEY: &str = "candle_lightning";
const FORMAT: u32 = 2;

/// A checkpoint, as the `on_save_checkpoint` / `on_load_checkpoint` hooks see it.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    /// The epoch being run when it was saved.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub global_step: usize,
    /// Training batches done in `epoch`.
    pub batches_done: usize,
    /// Whether `epoch` had finished training (saved in `on_train_epoch_end`).
    pub epoch_complete: bool,
    /// The module's weights by variable name.
    pub state_dict: BTreeMap<String, Tensor>,
    /// Each stateful callback's `state_dict`, by its state key.
    pub callbacks: BTreeMap<String, Value>,
    /// Anything the hooks add.
    pub extra: serde_json::Map<String, Value>,
    /// Each optimizer's state (parameter-keyed buffers, steps, learning rates).
    pub optimizers: Vec<OptimizerState>,
    /// The learning-rate scheduler's state.
    pub scheduler: Option<Value>,
    /// The datamodule's `state_dict`, if it keeps one.
    pub datamodule: Option<Value>,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    format: u32,
    epoch: usize,
    global_step: usize,
    batches_done: usize,
    epoch_complete: bool,
    callbacks: BTreeMap<String, Value>,
    extra: serde_json::Map<String, Value>,
    #[serde(default)]
    optimizers: Vec<OptimizerMeta>,
    #[serde(default)]
    scheduler: Option<Value>,
    #[serde(default)]
    datamodule: Option<Value>,
}

/// Tensor-name prefixes in the file: the module's weights and the optimizer's buffers.
const WEIGHTS: &str = "state_dict/";
const OPTIMIZER: &str = "optimizer/";

/// The variables of a `VarMap`, by name.
pub fn module_state(params: &VarMap) -> BTreeMap<String, Tensor> {
    let data = params.data().lock().unwrap_or_else(|p| p.into_inner());
    data.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
}

impl Checkpoint {
    /// Serializes to bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let meta = Meta {
            format: FORMAT,
            epoch: self.epoch,
            global_step: self.global_step,
            batches_done: self.batches_done,
            epoch_complete: self.epoch_complete,
            callbacks: self.callbacks.clone(),
            extra: self.extra.clone(),
            optimizers: self.optimizers.iter().map(|o| o.meta.clone()).collect(),
            scheduler: self.scheduler.clone(),
            datamodule: self.datamodule.clone(),
        };
        let json = serde_json::to_string(&meta).map_err(|e| Error::msg(format!("checkpoint metadata: {e}")))?;
        let info = HashMap::from([(META_KEY.to_string(), json)]);
        let weights = self.state_dict.iter().map(|(k, t)| (format!("{WEIGHTS}{k}"), t));
        let buffers = self
            .optimizers
            .iter()
            .enumerate()
            .flat_map(|(i, o)| o.tensors.iter().map(move |(k, t)| (format!("{OPTIMIZER}{i}/{k}"), t)));
        safetensors::serialize(weights.chain(buffers), Some(info))
            .map_err(|e| Error::msg(format!("cannot serialize checkpoint: {e}")))
    }

    /// Writes the checkpoint atomically: a temporary file in the same directory, synced,
    /// then renamed over `path`. A crash leaves the old file or the new one.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::atomic::write_atomic(path, &self.to_bytes()?)
    }

    /// Reads a checkpoint; tensors are loaded on the CPU.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses bytes written by `to_bytes`; `origin` names the source in errors.
    pub fn from_bytes(bytes: &[u8], origin: &Path) -> Result<Self> {
        let bad = |r: String| Error::bad_file(origin, r);
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a checkpoint (safetensors: {e})")))?;
        let json = header.metadata().as_ref().and_then(|m| m.get(META_KEY)).ok_or_else(|| {
            bad(format!("a safetensors file without `{META_KEY}` metadata is not a candle-lightning checkpoint"))
        })?;
        let meta: Meta = serde_json::from_str(json).map_err(|e| bad(format!("checkpoint metadata: {e}")))?;
        if meta.format != FORMAT {
            return Err(bad(format!(
                "checkpoint format {} is not supported (this build reads format {FORMAT})",
                meta.format
            )));
        }
        let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
            .map_err(|e| bad(format!("checkpoint tensors: {e}")))?;
        let mut state_dict = BTreeMap::new();
        let mut optimizers: Vec<OptimizerState> =
            meta.optimizers.into_iter().map(|meta| OptimizerState { tensors: BTreeMap::new(), meta }).collect();
        for (name, t) in tensors {
            if let Some(k) = name.strip_prefix(WEIGHTS) {
                state_dict.insert(k.to_owned(), t);
            } else if let Some((i, k)) = name.strip_prefix(OPTIMIZER).and_then(|r| r.split_once('/')) {
                let slot = i.parse::<usize>().ok().and_then(|i| optimizers.get_mut(i));
                let slot =
                    slot.ok_or_else(|| bad(format!("optimizer tensor `{name}` has no optimizer to belong to")))?;
                slot.tensors.insert(k.to_owned(), t);
            } else {
                return Err(bad(format!("unexpected tensor `{name}` (neither weights nor optimizer state)")));
            }
        }
        Ok(Checkpoint {
            epoch: meta.epoch,
            global_step: meta.global_step,
            batches_done: meta.batches_done,
            epoch_complete: meta.epoch_complete,
            state_dict,
            callbacks: meta.callbacks,
            extra: meta.extra,
            optimizers,
            scheduler: meta.scheduler,
            datamodule: meta.datamodule,
        })
    }

    /// Copies the weights into the module's variables; names and shapes must match exactly.
    pub fn load_into(&self, params: &VarMap, origin: &Path) -> Result<()> {
        let data = params.data().lock().unwrap_or_else(|p| p.into_inner());
        let mismatch = |reason: String| Error::CheckpointMismatch { path: origin.to_path_buf(), reason };
        let missing: Vec<&String> = data.keys().filter(|k| !self.state_dict.contains_key(*k)).collect();
        let unexpected: Vec<&String> = self.state_dict.keys().filter(|k| !data.contains_key(*k)).collect();
        if !missing.is_empty() || !unexpected.is_empty() {
            return Err(mismatch(format!("missing keys {missing:?}, unexpected keys {unexpected:?}")));
        }
        // check every shape before writing any, so a mismatch leaves the module untouched
        for (name, var) in data.iter() {
            let t = &self.state_dict[name];
            if t.dims() != var.dims() {
                return Err(mismatch(format!(
                    "`{name}` has shape {:?} in the checkpoint, {:?} in the module",
                    t.dims(),
                    var.dims()
                )));
            }
        }
        let converted: Vec<(&Var, Tensor)> = data
            .iter()
            .map(|(name, var)| Ok((var, self.state_dict[name].to_device(var.device())?.to_dtype(var.dtype())?)))
            .collect::<Result<_>>()?;
        for (var, t) in converted {
            var.set(&t)?;
        }
        Ok(())
    }
}

/// Lightning's `load_from_checkpoint`, for inference: reads a checkpoint, lets the module's
/// `on_load_checkpoint` see (and edit) it, then loads the weights into the module's
/// variables, on their device and in their dtype. Nothing is changed if it does not fit.
///
/// ```no_run
/// # fn demo<M: lightning::LightningModule>(model: &mut M) -> lightning::Result<()> {
/// let ckpt = lightning::load_from_checkpoint(model, "checkpoints/epoch=9-step=570.ckpt")?;
/// println!("trained for {} steps", ckpt.global_step);
/// # Ok(()) }
/// ```
pub fn load_from_checkpoint<M: crate::LightningModule>(model: &mut M, path: impl AsRef<Path>) -> Result<Checkpoint> {
    let path = path.as_ref();
    let mut ck = Checkpoint::load(path)?;
    let mut state = crate::TrainerState::new(crate::Stage::Predict, Device::Cpu, PathBuf::from("."));
    model.on_load_checkpoint(&mut state, &mut ck)?;
    ck.load_into(model.parameters(), path)?;
    Ok(ck)
}
