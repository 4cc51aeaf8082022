//! Checkpoints: a directory `name.ckpt/` of three files, written atomically:
//! - `model.safetensors`: the weights, named as in the `VarMap` (Python's
//!   `safetensors.torch.load_file` reads it);
//! - `optimizer.safetensors`: the optimizers' buffers (`{i}/{name}`), with their counters and
//!   the LR scheduler's state as JSON in its metadata (absent in weights-only checkpoints);
//! - `trainer_state.json`: format version, epoch, global step, batch within the epoch,
//!   callback and datamodule states, hyperparameters, and what the hooks added;
//! - `extra.safetensors`, only when hooks added tensors (an EMA callback's averages).
//!
//! Format 2 (one safetensors file holding everything) is still read.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::optim::{OptimizerMeta, OptimizerState};
use crate::{Error, Result};

const META_KEY: &str = "candle_lightning";
const FORMAT: u32 = 3;
const LEGACY_FORMAT: u32 = 2;
const WEIGHTS_FILE: &str = "model.safetensors";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "trainer_state.json";
const EXTRA_FILE: &str = "extra.safetensors";

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
    /// Tensors the hooks add (an EMA callback's averages), by name; saved in
    /// `extra.safetensors` when there are any.
    pub tensors: BTreeMap<String, Tensor>,
    /// Each optimizer's state (parameter-keyed buffers, steps, learning rates).
    pub optimizers: Vec<OptimizerState>,
    /// The learning-rate scheduler's state.
    pub scheduler: Option<Value>,
    /// The datamodule's `state_dict`, if it keeps one.
    pub datamodule: Option<Value>,
    /// The module's `#[hparams]` field (Lightning's `hyper_parameters`).
    pub hyper_parameters: Option<Value>,
    /// Weights and counters only (`ModelCheckpoint::save_weights_only`): it cannot resume training.
    pub weights_only: bool,
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
    #[serde(default)]
    hyper_parameters: Option<Value>,
    #[serde(default)]
    weights_only: bool,
}

impl Meta {
    /// The checkpoint these counters and states describe, with the tensors read beside them.
    fn into_checkpoint(
        self,
        state_dict: BTreeMap<String, Tensor>,
        optimizers: Vec<OptimizerState>,
        scheduler: Option<Value>,
    ) -> Checkpoint {
        Checkpoint {
            epoch: self.epoch,
            global_step: self.global_step,
            batches_done: self.batches_done,
            epoch_complete: self.epoch_complete,
            state_dict,
            callbacks: self.callbacks,
            extra: self.extra,
            tensors: BTreeMap::new(),
            optimizers,
            scheduler,
            datamodule: self.datamodule,
            hyper_parameters: self.hyper_parameters,
            weights_only: self.weights_only,
        }
    }
}

/// `"{i}/{name}"`, the key of optimizer `i`'s buffer `name`, split into its parts.
fn optimizer_key(key: &str) -> Option<(usize, &str)> {
    let (i, k) = key.split_once('/')?;
    Some((i.parse().ok()?, k))
}

/// Tensor-name prefixes in the file: the module's weights and the optimizer's buffers.
const WEIGHTS: &str = "state_dict/";
const OPTIMIZER: &str = "optimizer/";

/// The variables of a `VarMap`, by name.
pub fn module_state(params: &VarMap) -> BTreeMap<String, Tensor> {
    let data = params.data().lock().unwrap_or_else(|p| p.into_inner());
    data.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
}

fn synced_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// `(dir, name)` of a checkpoint path, and its sibling names for temporary and replaced copies.
fn parts(path: &Path) -> Result<(PathBuf, String)> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let name = path.file_name().ok_or_else(|| Error::bad_file(path, "a checkpoint path needs a file name"))?;
    Ok((dir, name.to_string_lossy().into_owned()))
}

/// A checkpoint directory left as `.name.old-PID` by a save killed between its two renames.
fn recover(path: &Path) -> Option<PathBuf> {
    set_aside(path).into_iter().find(|p| p.join(STATE_FILE).is_file())
}

/// The `.name.old-PID` copies of `path` that saves set aside (by any process).
fn set_aside(path: &Path) -> Vec<PathBuf> {
    let Ok((dir, name)) = parts(path) else { return Vec::new() };
    let prefix = format!(".{name}.old-");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

impl Checkpoint {
    fn meta(&self) -> Meta {
        Meta {
            format: FORMAT,
            epoch: self.epoch,
            global_step: self.global_step,
            batches_done: self.batches_done,
            epoch_complete: self.epoch_complete,
            callbacks: self.callbacks.clone(),
            extra: self.extra.clone(),
            optimizers: Vec::new(),
            scheduler: None,
            datamodule: self.datamodule.clone(),
            hyper_parameters: self.hyper_parameters.clone(),
            weights_only: self.weights_only,
        }
    }

    fn optimizer_bytes(&self) -> Result<Vec<u8>> {
        let metas: Vec<&OptimizerMeta> = self.optimizers.iter().map(|o| &o.meta).collect();
        let json = |r: serde_json::Result<String>| r.map_err(|e| Error::msg(format!("optimizer state: {e}")));
        let info = HashMap::from([
            ("optimizers".to_string(), json(serde_json::to_string(&metas))?),
            ("scheduler".to_string(), json(serde_json::to_string(&self.scheduler))?),
        ]);
        let buffers = self
            .optimizers
            .iter()
            .enumerate()
            .flat_map(|(i, o)| o.tensors.iter().map(move |(k, t)| (format!("{i}/{k}"), t)));
        safetensors::serialize(buffers, Some(info)).map_err(|e| Error::msg(format!("cannot serialize optimizer: {e}")))
    }

    /// Writes the checkpoint directory atomically: its files go to a temporary sibling
    /// directory, each synced, which is then renamed to `path`. A checkpoint it replaces is
    /// first renamed aside and deleted after, so a crash leaves the old checkpoint or the new
    /// one (`load` finds the set-aside copy if the crash fell between the two renames).
    pub fn save(&self, path: &Path) -> Result<()> {
        let (dir, name) = parts(path)?;
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let weights = safetensors::serialize(self.state_dict.iter(), None)
            .map_err(|e| Error::msg(format!("cannot serialize weights: {e}")))?;
        let optimizer = if self.weights_only { None } else { Some(self.optimizer_bytes()?) };
        let extra = match self.tensors.is_empty() {
            true => None,
            false => Some(
                safetensors::serialize(self.tensors.iter(), None)
                    .map_err(|e| Error::msg(format!("cannot serialize the hooks' tensors: {e}")))?,
            ),
        };
        let state = serde_json::to_vec_pretty(&self.meta())
            .map_err(|e| Error::msg(format!("checkpoint trainer state: {e}")))?;
        let pid = std::process::id();
        let tmp = dir.join(format!(".{name}.tmp-{pid}"));
        let old = dir.join(format!(".{name}.old-{pid}"));
        let write = || -> std::io::Result<()> {
            if tmp.exists() {
                remove_any(&tmp)?;
            }
            std::fs::create_dir(&tmp)?;
            synced_write(&tmp.join(WEIGHTS_FILE), &weights)?;
            if let Some(o) = &optimizer {
                synced_write(&tmp.join(OPTIMIZER_FILE), o)?;
            }
            if let Some(t) = &extra {
                synced_write(&tmp.join(EXTRA_FILE), t)?;
            }
            synced_write(&tmp.join(STATE_FILE), &state)?;
            sync_dir(&tmp);
            if path.exists() {
                if old.exists() {
                    remove_any(&old)?;
                }
                std::fs::rename(path, &old)?;
                std::fs::rename(&tmp, path)?;
            } else {
                std::fs::rename(&tmp, path)?;
            }
            sync_dir(&dir);
            // copies left by saves killed between their renames are superseded now
            for stale in set_aside(path) {
                remove_any(&stale)?;
            }
            Ok(())
        };
        write().map_err(|e| {
            let _ = remove_any(&tmp);
            Error::io(path, e)
        })
    }

    /// Reads a checkpoint (a format-3 directory, or a format-2 file); tensors load on the CPU.
    pub fn load(path: &Path) -> Result<Self> {
        let path = match path.exists() {
            true => path.to_path_buf(),
            false => recover(path).ok_or_else(|| {
                Error::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such checkpoint"))
            })?,
        };
        if path.is_file() {
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            return Self::from_bytes(&bytes, &path);
        }
        let bad = |r: String| Error::bad_file(&path, r);
        let state_path = path.join(STATE_FILE);
        let json = std::fs::read(&state_path)
            .map_err(|e| bad(format!("not a checkpoint directory: cannot read {STATE_FILE}: {e}")))?;
        let meta: Meta = serde_json::from_slice(&json).map_err(|e| bad(format!("{STATE_FILE}: {e}")))?;
        if meta.format != FORMAT {
            return Err(bad(format!(
                "checkpoint format {} is not supported (this build reads formats {LEGACY_FORMAT} and {FORMAT})",
                meta.format
            )));
        }
        let weights_path = path.join(WEIGHTS_FILE);
        let state_dict: BTreeMap<String, Tensor> = candle_core::safetensors::load(&weights_path, &Device::Cpu)
            .map_err(|e| bad(format!("{WEIGHTS_FILE}: {e}")))?
            .into_iter()
            .collect();
        let mut optimizers = Vec::new();
        let mut scheduler = None;
        let opt_path = path.join(OPTIMIZER_FILE);
        if !meta.weights_only {
            let bytes = std::fs::read(&opt_path).map_err(|e| bad(format!("cannot read {OPTIMIZER_FILE}: {e}")))?;
            let (_, header) =
                safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("{OPTIMIZER_FILE}: {e}")))?;
            let info = header.metadata().clone().unwrap_or_default();
            let field = |k: &str| -> Result<Value> {
                let text = info.get(k).ok_or_else(|| bad(format!("{OPTIMIZER_FILE} lacks `{k}` metadata")))?;
                serde_json::from_str(text).map_err(|e| bad(format!("{OPTIMIZER_FILE} `{k}`: {e}")))
            };
            let metas: Vec<OptimizerMeta> = serde_json::from_value(field("optimizers")?)
                .map_err(|e| bad(format!("{OPTIMIZER_FILE} optimizers: {e}")))?;
            scheduler = Some(field("scheduler")?).filter(|v| !v.is_null());
            optimizers = metas.into_iter().map(|meta| OptimizerState { tensors: BTreeMap::new(), meta }).collect();
            let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
                .map_err(|e| bad(format!("{OPTIMIZER_FILE}: {e}")))?;
            for (name, t) in tensors {
                let (i, k) =
                    optimizer_key(&name).ok_or_else(|| bad(format!("unexpected optimizer tensor `{name}`")))?;
                let o = optimizers
                    .get_mut(i)
                    .ok_or_else(|| bad(format!("optimizer tensor `{name}` has no optimizer to belong to")))?;
                o.tensors.insert(k.to_owned(), t);
            }
        }
        let mut checkpoint = meta.into_checkpoint(state_dict, optimizers, scheduler);
        let extra_path = path.join(EXTRA_FILE);
        if extra_path.exists() {
            checkpoint.tensors = candle_core::safetensors::load(&extra_path, &Device::Cpu)
                .map_err(|e| bad(format!("{EXTRA_FILE}: {e}")))?
                .into_iter()
                .collect();
        }
        Ok(checkpoint)
    }

    /// Parses a format-2 checkpoint: one safetensors file with everything; `origin` names the
    /// source in errors.
    pub fn from_bytes(bytes: &[u8], origin: &Path) -> Result<Self> {
        let bad = |r: String| Error::bad_file(origin, r);
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a checkpoint (safetensors: {e})")))?;
        let json = header.metadata().as_ref().and_then(|m| m.get(META_KEY)).ok_or_else(|| {
            bad(format!("a safetensors file without `{META_KEY}` metadata is not a candle-lightning checkpoint"))
        })?;
        let mut meta: Meta = serde_json::from_str(json).map_err(|e| bad(format!("checkpoint metadata: {e}")))?;
        if meta.format != LEGACY_FORMAT {
            return Err(bad(format!(
                "checkpoint format {} is not supported (this build reads formats {LEGACY_FORMAT} and {FORMAT})",
                meta.format
            )));
        }
        let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
            .map_err(|e| bad(format!("checkpoint tensors: {e}")))?;
        let mut state_dict = BTreeMap::new();
        let mut optimizers: Vec<OptimizerState> = std::mem::take(&mut meta.optimizers)
            .into_iter()
            .map(|meta| OptimizerState { tensors: BTreeMap::new(), meta })
            .collect();
        for (name, t) in tensors {
            if let Some(k) = name.strip_prefix(WEIGHTS) {
                state_dict.insert(k.to_owned(), t);
            } else if let Some(key) = name.strip_prefix(OPTIMIZER).filter(|r| r.contains('/')) {
                let slot = optimizer_key(key).and_then(|(i, k)| Some((optimizers.get_mut(i)?, k)));
                let (slot, k) =
                    slot.ok_or_else(|| bad(format!("optimizer tensor `{name}` has no optimizer to belong to")))?;
                slot.tensors.insert(k.to_owned(), t);
            } else {
                return Err(bad(format!("unexpected tensor `{name}` (neither weights nor optimizer state)")));
            }
        }
        let scheduler = meta.scheduler.take();
        Ok(meta.into_checkpoint(state_dict, optimizers, scheduler))
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
