//! Checkpoints: a directory `name.ckpt/` of three files, written atomically:
//! - `model.safetensors`: the weights, named as in the `VarMap` (Python's
//!   `safetensors.torch.load_file` reads it);
//! - `optimizer.safetensors`: the optimizers' buffers (`{i}/{name}`), with their counters and
//!   the LR scheduler's state as JSON in its metadata (absent in weights-only checkpoints);
//! - `trainer_state.json`: format version, epoch, global step, batch within the epoch,
//!   callback and datamodule states, hyperparameters, what the hooks added, and the crc32c
//!   of each other file (`checksums`, checked on load; older checkpoints have none);
//! - `extra.safetensors`, only when hooks added tensors (an EMA callback's averages).
//!
//! Format 2 (one safetensors file holding everything) is still read.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checkpoints::ckpt_files::{self, remove_any, sync_dir, Tag};
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
    /// The dropout generator's state ([`crate::nn::DropoutState`]), so that a resumed fit
    /// draws the masks an uninterrupted one would (absent in older checkpoints).
    pub dropout: Option<crate::nn::DropoutState>,
    /// The loss scaler's state under `16-mixed` (Lightning's `checkpoint["MixedPrecision"]`),
    /// in `trainer_state.json`; a resume under `16-mixed` continues from it.
    pub grad_scaler: Option<crate::GradScalerState>,
    /// The parameters frozen for fine-tuning when it was saved, by name (`None` in older
    /// checkpoints: a resume then keeps what the callbacks froze in `setup`).
    pub frozen: Option<Vec<String>>,
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
    /// Format 2 only: format 3 keeps the optimizers' and the scheduler's state in
    /// `optimizer.safetensors`, so `trainer_state.json` omits these two.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    optimizers: Vec<OptimizerMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scheduler: Option<Value>,
    #[serde(default)]
    datamodule: Option<Value>,
    #[serde(default)]
    hyper_parameters: Option<Value>,
    #[serde(default)]
    weights_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dropout: Option<crate::nn::DropoutState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grad_scaler: Option<crate::GradScalerState>,
    frozen: Option<Vec<String>>,
    /// The crc32c of each other file of the directory, by file name (absent before checksums).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    checksums: BTreeMap<String, u32>,
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
            dropout: self.dropout,
            grad_scaler: self.grad_scaler,
            frozen: self.frozen,
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

/// The variables of a `VarMap` themselves, by name.
pub(crate) fn module_vars(params: &VarMap) -> BTreeMap<String, Var> {
    let data = params.data().lock().unwrap_or_else(|p| p.into_inner());
    data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn synced_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// `(dir, name)` of a checkpoint path.
fn parts(path: &Path) -> Result<(PathBuf, OsString)> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let name = path.file_name().ok_or_else(|| Error::bad_file(path, "a checkpoint path needs a file name"))?;
    Ok((dir, name.to_os_string()))
}

/// A checkpoint directory set aside (`.NAME.old-PID-N`) by a save killed between its two renames.
fn recover(path: &Path) -> Option<PathBuf> {
    set_aside(path).into_iter().find(|p| p.join(STATE_FILE).is_file())
}

/// The `.NAME.old-PID-N` copies of `path` that saves set aside (by any process).
fn set_aside(path: &Path) -> Vec<PathBuf> {
    let Ok((dir, name)) = parts(path) else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| ckpt_files::parse(&e.file_name()).is_some_and(|(n, tag, _)| n == name && tag == Tag::Old))
        .map(|e| e.path())
        .collect()
}

/// Why a path given as a checkpoint cannot be read, in words that say what to do.
fn missing(path: &Path) -> Error {
    use std::io::{Error as IoError, ErrorKind};
    let is_loop = std::fs::metadata(path).err().and_then(|e| e.raw_os_error()) == Some(ELOOP);
    let reason = if is_loop {
        "a symbolic link loop (the link points back to itself): give the checkpoint's real path"
    } else {
        "no such checkpoint"
    };
    Error::io(path, IoError::new(ErrorKind::NotFound, reason))
}

/// Linux's and macOS's "too many levels of symbolic links".
#[cfg(target_os = "linux")]
const ELOOP: i32 = 40;
#[cfg(not(target_os = "linux"))]
const ELOOP: i32 = 62;

/// A file of a checkpoint directory given instead of the directory.
fn inside_checkpoint(path: &Path) -> Option<Error> {
    let name = path.file_name()?.to_str()?;
    let dir = path.parent()?;
    let ours = [WEIGHTS_FILE, OPTIMIZER_FILE, STATE_FILE, EXTRA_FILE].contains(&name);
    (ours && dir.join(STATE_FILE).is_file()).then(|| {
        Error::bad_file(
            path,
            format!("`{name}` is one file of a checkpoint: pass the `.ckpt` directory: {}", dir.display()),
        )
    })
}

/// The counters a resume trusts, each at most this: no run reaches it, and adding to any
/// value below it cannot overflow.
const MAX_COUNTER: usize = 1 << 53;

impl Meta {
    /// Parses `trainer_state.json` (or a format-2 file's metadata), each counter checked
    /// first: a whole number in range, so that a resume cannot wrap or index past anything.
    fn parse(text: &[u8], path: &Path) -> Result<Meta> {
        let bad = |r: String| Error::bad_file(path, r);
        let raw: Value = serde_json::from_slice(text).map_err(|e| bad(format!("{STATE_FILE}: {e}")))?;
        for field in ["epoch", "global_step", "batches_done"] {
            let v = &raw[field];
            if v.as_u64().is_none_or(|n| n > MAX_COUNTER as u64) {
                return Err(Error::CheckpointField {
                    path: Some(path.to_path_buf()),
                    field: field.into(),
                    reason: format!("is {v}, not a count in range (a whole number from 0 to 2^53)"),
                });
            }
        }
        serde_json::from_value(raw).map_err(|e| bad(format!("{STATE_FILE}: {e}")))
    }
}

/// Checks a file's bytes against the crc32c recorded for it (checkpoints from before
/// checksums have none and are taken as they are).
fn verify(checksums: &BTreeMap<String, u32>, dir: &Path, file: &str, bytes: &[u8]) -> Result<()> {
    let Some(&expected) = checksums.get(file) else { return Ok(()) };
    let found = crc32c::crc32c(bytes);
    if found != expected {
        return Err(Error::ChecksumMismatch { path: dir.join(file), expected, found });
    }
    Ok(())
}

/// Renames the whole temporary directory `tmp` to `path`. A checkpoint already there is
/// renamed aside first and deleted once the new one holds the name.
fn install(tmp: &Path, path: &Path, dir: &Path, name: &std::ffi::OsStr) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path).is_ok() {
        let old = ckpt_files::sibling(dir, name, Tag::Old);
        std::fs::rename(path, &old)?;
        std::fs::rename(tmp, path)?;
        sync_dir(dir);
        remove_any(&old)?;
    } else {
        std::fs::rename(tmp, path)?;
        sync_dir(dir);
    }
    // copies set aside by saves that were killed between their renames are superseded now
    for stale in set_aside(path) {
        if ckpt_files::parse(stale.file_name().unwrap_or_default()).is_some_and(|(_, _, pid)| !ckpt_files::alive(pid)) {
            remove_any(&stale)?;
        }
    }
    Ok(())
}

/// The optimizers' states and the scheduler's, from `optimizer.safetensors`.
fn optimizer_state(bytes: &[u8], bad: impl Fn(String) -> Error) -> Result<(Vec<OptimizerState>, Option<Value>)> {
    let (_, header) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("{OPTIMIZER_FILE}: {e}")))?;
    let info = header.metadata().clone().unwrap_or_default();
    let field = |k: &str| -> Result<Value> {
        let text = info.get(k).ok_or_else(|| bad(format!("{OPTIMIZER_FILE} lacks `{k}` metadata")))?;
        serde_json::from_str(text).map_err(|e| bad(format!("{OPTIMIZER_FILE} `{k}`: {e}")))
    };
    let metas: Vec<OptimizerMeta> =
        serde_json::from_value(field("optimizers")?).map_err(|e| bad(format!("{OPTIMIZER_FILE} optimizers: {e}")))?;
    let scheduler = Some(field("scheduler")?).filter(|v| !v.is_null());
    let mut optimizers: Vec<OptimizerState> =
        metas.into_iter().map(|meta| OptimizerState { tensors: BTreeMap::new(), meta }).collect();
    let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| bad(format!("{OPTIMIZER_FILE}: {e}")))?;
    for (name, t) in tensors {
        let (i, k) = optimizer_key(&name).ok_or_else(|| bad(format!("unexpected optimizer tensor `{name}`")))?;
        let o = optimizers
            .get_mut(i)
            .ok_or_else(|| bad(format!("optimizer tensor `{name}` has no optimizer to belong to")))?;
        o.tensors.insert(k.to_owned(), t);
    }
    Ok((optimizers, scheduler))
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
            dropout: self.dropout,
            grad_scaler: self.grad_scaler,
            frozen: self.frozen.clone(),
            checksums: BTreeMap::new(),
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

    /// The files of the checkpoint directory, `trainer_state.json` last, holding the others' crc32c.
    fn files(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let weights = safetensors::serialize(self.state_dict.iter(), None)
            .map_err(|e| Error::msg(format!("cannot serialize weights: {e}")))?;
        let mut files = vec![(WEIGHTS_FILE, weights)];
        if !self.weights_only {
            files.push((OPTIMIZER_FILE, self.optimizer_bytes()?));
        }
        if !self.tensors.is_empty() {
            let extra = safetensors::serialize(self.tensors.iter(), None)
                .map_err(|e| Error::msg(format!("cannot serialize the hooks' tensors: {e}")))?;
            files.push((EXTRA_FILE, extra));
        }
        let mut meta = self.meta();
        meta.checksums = files.iter().map(|(f, b)| (f.to_string(), crc32c::crc32c(b))).collect();
        let state =
            serde_json::to_vec_pretty(&meta).map_err(|e| Error::msg(format!("checkpoint trainer state: {e}")))?;
        files.push((STATE_FILE, state));
        Ok(files)
    }

    /// Writes the checkpoint directory atomically: its files go to a temporary sibling
    /// directory (`.NAME.tmp-PID-N`), each synced, which is then renamed to `path`. A
    /// checkpoint it replaces is first renamed aside (`.NAME.old-PID-N`) and deleted after,
    /// so a crash leaves the old checkpoint or the new one (`load` finds the set-aside copy
    /// if the crash fell between the two renames, and the next run's `ModelCheckpoint` puts
    /// it back and cleans the rest).
    pub fn save(&self, path: &Path) -> Result<()> {
        let (dir, name) = parts(path)?;
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let files = self.files()?;
        let tmp = ckpt_files::sibling(&dir, &name, Tag::Tmp);
        let write = || -> std::io::Result<()> {
            std::fs::create_dir(&tmp)?;
            for (file, bytes) in &files {
                synced_write(&tmp.join(file), bytes)?;
            }
            sync_dir(&tmp);
            install(&tmp, path, &dir, &name)
        };
        write().map_err(|e| {
            let _ = remove_any(&tmp);
            Error::io(path, e)
        })
    }

    /// Reads a checkpoint (a format-3 directory, or a format-2 file); tensors load on the
    /// CPU, each file checked against the crc32c recorded for it.
    pub fn load(path: &Path) -> Result<Self> {
        let path = match path.exists() {
            true => path.to_path_buf(),
            false => recover(path).ok_or_else(|| missing(path))?,
        };
        if path.is_file() {
            if let Some(e) = inside_checkpoint(&path) {
                return Err(e);
            }
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            return Self::from_bytes(&bytes, &path);
        }
        let bad = |r: String| Error::bad_file(&path, r);
        let json = std::fs::read(path.join(STATE_FILE))
            .map_err(|e| bad(format!("not a checkpoint directory: cannot read {STATE_FILE}: {e}")))?;
        let meta = Meta::parse(&json, &path)?;
        if meta.format != FORMAT {
            return Err(bad(format!(
                "checkpoint format {} is not supported (this build reads formats {LEGACY_FORMAT} and {FORMAT})",
                meta.format
            )));
        }
        let read = |file: &str| -> Result<Vec<u8>> {
            let bytes = std::fs::read(path.join(file)).map_err(|e| bad(format!("cannot read {file}: {e}")))?;
            verify(&meta.checksums, &path, file, &bytes)?;
            Ok(bytes)
        };
        let weights = read(WEIGHTS_FILE)?;
        let state_dict: BTreeMap<String, Tensor> = candle_core::safetensors::load_buffer(&weights, &Device::Cpu)
            .map_err(|e| bad(format!("{WEIGHTS_FILE}: {e}")))?
            .into_iter()
            .collect();
        let (optimizers, scheduler) = match meta.weights_only {
            true => (Vec::new(), None),
            false => optimizer_state(&read(OPTIMIZER_FILE)?, bad)?,
        };
        let tensors = match path.join(EXTRA_FILE).exists() || meta.checksums.contains_key(EXTRA_FILE) {
            true => candle_core::safetensors::load_buffer(&read(EXTRA_FILE)?, &Device::Cpu)
                .map_err(|e| bad(format!("{EXTRA_FILE}: {e}")))?
                .into_iter()
                .collect(),
            false => BTreeMap::new(),
        };
        let mut checkpoint = meta.into_checkpoint(state_dict, optimizers, scheduler);
        checkpoint.tensors = tensors;
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
        let mut meta = Meta::parse(json.as_bytes(), origin)?;
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
    /// Nothing is changed if they do not.
    pub fn load_into(&self, params: &VarMap, origin: &Path) -> Result<()> {
        set_all(self.prepare_weights(params, origin)?)
    }

    /// The module's variables, each with its value from this checkpoint on the variable's
    /// device and in its dtype: checked and converted, not yet set ([`set_all`] sets them).
    pub(crate) fn prepare_weights(&self, params: &VarMap, origin: &Path) -> Result<Vec<(Var, Tensor)>> {
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
            if !var.as_tensor().is_contiguous() {
                return Err(mismatch(format!("the module's variable `{name}` is not contiguous, so it cannot be set")));
            }
        }
        // new tensors first: `Var::set` refuses a tensor sharing the variable's storage (one an
        // `on_load_checkpoint` took from the module), and a refusal half way through the
        // (hash-ordered) variables would leave some loaded and some not
        data.iter()
            .map(|(name, var)| {
                let t = self.state_dict[name].to_device(var.device())?.to_dtype(var.dtype())?.copy()?;
                Ok((var.clone(), t))
            })
            .collect()
    }

    /// Checks the optimizers' states against the module's variables before anything is
    /// restored: every buffer of a parameter the module has must have its shape, and every
    /// parameter that has taken a step the same buffers. (What `configure_optimizers` returns
    /// is checked once it has run.)
    pub(crate) fn check_optimizer_state(&self, params: &VarMap, origin: &Path) -> Result<()> {
        let data = params.data().lock().unwrap_or_else(|p| p.into_inner());
        for (i, o) in self.optimizers.iter().enumerate() {
            let bad = |reason: String| optimizer_mismatch(origin, i, reason);
            o.check_buffers().map_err(bad)?;
            for (key, t) in &o.tensors {
                let Some(var) = key.rsplit_once('.').and_then(|(p, _)| data.get(p)) else { continue };
                if t.dims() != var.dims() {
                    return Err(bad(format!(
                        "`{key}` has shape {:?}, the module's parameter {:?}",
                        t.dims(),
                        var.dims()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A resume's error for an optimizer state that does not fit: names the file and what to do.
pub(crate) fn optimizer_mismatch(origin: &Path, index: usize, reason: String) -> Error {
    Error::CheckpointMismatch {
        path: origin.to_path_buf(),
        reason: format!(
            "{OPTIMIZER_FILE}, optimizer {index}: {reason}. Resuming needs the optimizer state of the run \
             that saved it; to start a new fit from these weights, load them with `load_from_checkpoint` \
             and fit without `ckpt_path`"
        ),
    }
}

/// Sets each variable to its new value (from [`Checkpoint::prepare_weights`]).
pub(crate) fn set_all(weights: Vec<(Var, Tensor)>) -> Result<()> {
    for (var, t) in weights {
        var.set(&t)?;
    }
    Ok(())
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
    crate::trainer::dispatch::on_load_checkpoint(&mut state, model, &mut (), &mut ck, |_, _, _, _| Ok(()))?;
    ck.load_into(model.parameters(), path)?;
    Ok(ck)
}
