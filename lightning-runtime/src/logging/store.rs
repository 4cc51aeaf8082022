//! The logged metrics of a run: step values, epoch accumulators and `callback_metrics`.

use std::cell::Cell;
use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

use super::{Log, LogScope, MetricValue, Reduce};
use crate::dist::{Buf, Collective};
use crate::{Error, Result};

/// The loop a value was logged in; each has its own epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LoopKind {
    Train,
    Val,
    Test,
}

#[derive(Debug)]
struct Entry {
    name: String,
    loop_kind: LoopKind,
    on_step: bool,
    on_epoch: bool,
    prog_bar: bool,
    logger: bool,
    reduce: Reduce,
    /// The latest step value, and whether a logger has not seen it yet.
    step: Option<MetricValue>,
    step_fresh: bool,
    /// This epoch's accumulator (sum weighted by batch size, or max/min) and its weight.
    acc: Option<MetricValue>,
    weight: f64,
    epoch: Option<f64>,
    epoch_fresh: bool,
    /// The evaluation loader that logged it this epoch (`Some(None)`: not a loader's batch).
    owner: Option<Option<usize>>,
    /// What `callback_metrics[name]` shows: the latest step value, or the epoch value once computed.
    current: Option<MetricValue>,
}

impl Entry {
    /// A name logged for the first time; `log` sets its options.
    fn new(name: &str, loop_kind: LoopKind) -> Self {
        Entry {
            name: name.to_owned(),
            loop_kind,
            on_step: false,
            on_epoch: false,
            prog_bar: false,
            logger: true,
            reduce: Reduce::Mean,
            step: None,
            step_fresh: false,
            acc: None,
            weight: 0.0,
            epoch: None,
            epoch_fresh: false,
            current: None,
            owner: None,
        }
    }

    /// Reads the epoch's reduced value back (one read), due to the loggers and shown as `name`.
    fn close_epoch(&mut self, syncs: &Cell<usize>) -> Result<()> {
        let total = match &self.acc {
            None => f64::NAN,
            Some(acc) => read(acc, syncs)?,
        };
        self.set_epoch(total, self.weight);
        Ok(())
    }

    /// The epoch value from the accumulated total and weight (summed over the ranks under DDP).
    fn set_epoch(&mut self, total: f64, weight: f64) {
        let v = if self.reduce == Reduce::Mean { total / weight } else { total };
        self.epoch = Some(v);
        self.epoch_fresh = true;
        self.current = Some(MetricValue::Host(v));
    }
}

/// Everything logged in a run, keyed by loop and name (a handful of entries, so a `Vec`).
#[derive(Debug, Default)]
pub struct MetricStore {
    entries: Vec<Entry>,
    /// Loops whose epoch has ended: a value logged now is folded into the epoch value at once.
    ended: Vec<LoopKind>,
    syncs: Cell<usize>,
}

fn read(v: &MetricValue, syncs: &Cell<usize>) -> Result<f64> {
    match v {
        MetricValue::Host(x) => Ok(*x),
        MetricValue::Device(t) => {
            syncs.set(syncs.get() + 1);
            Ok(t.to_dtype(DType::F64)?.reshape(())?.to_scalar::<f64>()?)
        }
    }
}

fn scaled(v: &MetricValue, w: f64) -> Result<MetricValue> {
    Ok(match v {
        MetricValue::Host(x) => MetricValue::Host(x * w),
        MetricValue::Device(t) => {
            // f32 at least, so a bf16 loss summed over an epoch keeps its precision
            MetricValue::Device(crate::devices::precision::widen(t)?.affine(w, 0.0)?)
        }
    })
}

fn combine(acc: &MetricValue, v: &MetricValue, reduce: Reduce) -> Result<MetricValue> {
    use MetricValue::{Device, Host};
    if let (Host(a), Host(b)) = (acc, v) {
        return Ok(Host(match reduce {
            Reduce::Mean | Reduce::Sum => a + b,
            Reduce::Max => a.max(*b),
            Reduce::Min => a.min(*b),
        }));
    }
    let like = match (acc, v) {
        (Device(t), _) | (_, Device(t)) => t.clone(),
        _ => unreachable!("both host values returned above"),
    };
    let tensor = |m: &MetricValue| -> Result<Tensor> {
        Ok(match m {
            Device(t) => t.to_dtype(like.dtype())?,
            Host(x) => Tensor::new(&[*x], like.device())?.to_dtype(like.dtype())?,
        })
    };
    let (a, b) = (tensor(acc)?, tensor(v)?);
    Ok(Device(match reduce {
        Reduce::Mean | Reduce::Sum => (a + b)?,
        Reduce::Max => a.maximum(&b)?,
        Reduce::Min => a.minimum(&b)?,
    }))
}

/// Where a `log` call comes from: the running hook, its log scope and loop, and the batch's
/// size (the weight of the value in the epoch's mean).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LogSite {
    pub scope: LogScope,
    pub hook: &'static str,
    pub loop_kind: LoopKind,
    pub batch_size: usize,
    /// The evaluation loader logging, when there are several.
    pub dataloader_idx: Option<usize>,
}

impl MetricStore {
    /// Device-to-host reads done so far (each costs a sync on a GPU).
    pub fn syncs(&self) -> usize {
        self.syncs.get()
    }

    /// One `log` call from `site`: `synced` is the ranks' reduced value under `sync_dist`.
    pub(crate) fn log(
        &mut self,
        name: &str,
        value: MetricValue,
        synced: Option<MetricValue>,
        opts: Log,
        site: LogSite,
    ) -> Result<()> {
        let LogSite { scope, hook, loop_kind, batch_size, dataloader_idx } = site;
        let (default_step, default_epoch) = match scope {
            LogScope::TrainStep => (true, false),
            LogScope::EvalStep | LogScope::EpochOnly => (false, true),
            LogScope::Forbidden => return Err(Error::LogNotAllowed { hook, name: name.to_owned() }),
        };
        let on_step = opts.on_step.unwrap_or(default_step);
        let on_epoch = opts.on_epoch.unwrap_or(default_epoch);
        if scope == LogScope::EpochOnly && on_step {
            return Err(Error::msg(format!(
                "`{name}`: `{hook}` runs once per epoch, so it can't log with on_step=true; use on_epoch"
            )));
        }
        if !on_step && !on_epoch {
            return Err(Error::msg(format!("`{name}`: on_step and on_epoch are both false, so it would go nowhere")));
        }
        let idx = match self.entries.iter().position(|e| e.loop_kind == loop_kind && e.name == name) {
            Some(i) => i,
            None => {
                self.entries.push(Entry::new(name, loop_kind));
                self.entries.len() - 1
            }
        };
        // Lightning: one name from two loaders would mix their epoch means
        let owner = *self.entries[idx].owner.get_or_insert(dataloader_idx);
        if let Some(i) = dataloader_idx.filter(|_| owner != dataloader_idx) {
            let first = owner.map_or("outside the batch hooks".into(), |d| format!("by loader {d}"));
            return Err(Error::msg(format!(
                "`{name}` is logged by loader {i} in `{hook}`, but this epoch it was logged {first} with \
                 `add_dataloader_idx(false)`: the loaders would share one epoch mean; log a name per loader, \
                 or keep `add_dataloader_idx` on for `{name}/dataloader_idx_N`"
            )));
        }
        let ended = self.ended.contains(&loop_kind);
        // `sync_dist`: the ranks' reduced value is the step value, and the epoch value when the
        // epoch has ended; a running epoch sums this rank's own, reduced at its end
        let (value, epoch_value) = match synced {
            None => (value, None),
            Some(s) if ended => (s.clone(), Some(s)),
            Some(s) => (s, Some(value)),
        };
        let syncs = &self.syncs;
        let e = &mut self.entries[idx];
        // the latest call's options apply, as in Lightning
        (e.on_step, e.on_epoch, e.prog_bar, e.logger, e.reduce) =
            (on_step, on_epoch, opts.prog_bar, opts.logger, opts.reduce);
        if on_epoch {
            let w = opts.batch_size.unwrap_or(batch_size).max(1) as f64;
            let v = epoch_value.as_ref().unwrap_or(&value);
            // Sum, Max and Min accumulate in f32 at least too
            let add = if e.reduce == Reduce::Mean { scaled(v, w)? } else { scaled(v, 1.0)? };
            e.acc = Some(match &e.acc {
                Some(a) => combine(a, &add, e.reduce)?,
                None => add,
            });
            e.weight += w;
            if ended {
                // logged from an epoch-end hook: the epoch value is due now
                e.close_epoch(syncs)?;
            }
        }
        if on_step {
            e.step_fresh = true;
            e.current = Some(value.clone());
            e.step = Some(value);
        }
        Ok(())
    }

    /// A training batch starts: step values of earlier batches are no longer due to a logger.
    #[inline]
    pub(crate) fn batch_start(&mut self, loop_kind: LoopKind) {
        for e in &mut self.entries {
            if e.loop_kind == loop_kind {
                e.step_fresh = false;
            }
        }
    }

    /// A loop starts an epoch: its accumulators restart; `callback_metrics` keeps its values.
    pub(crate) fn epoch_start(&mut self, loop_kind: LoopKind) {
        self.ended.retain(|l| *l != loop_kind);
        for e in self.entries.iter_mut().filter(|e| e.loop_kind == loop_kind) {
            e.acc = None;
            e.weight = 0.0;
            e.epoch_fresh = false;
            e.step_fresh = false;
            e.owner = None;
        }
    }

    /// A loop's epoch ended: epoch values are computed (one read per metric). Under DDP
    /// (`world` of more than one rank) the totals and weights of mean and sum metrics are
    /// summed over the ranks first, and max and min metrics take the max (min) over the
    /// ranks, so every rank computes the same epoch values.
    pub(crate) fn epoch_end(&mut self, loop_kind: LoopKind, world: Option<&dyn Collective>) -> Result<()> {
        if !self.ended.contains(&loop_kind) {
            self.ended.push(loop_kind);
        }
        let syncs = &self.syncs;
        let closing = |e: &&mut Entry| e.loop_kind == loop_kind && e.on_epoch && e.acc.is_some();
        let Some(world) = world.filter(|w| w.world_size() > 1) else {
            for e in self.entries.iter_mut().filter(closing) {
                e.close_epoch(syncs)?;
            }
            return Ok(());
        };
        let mut entries: Vec<&mut Entry> = self.entries.iter_mut().filter(closing).collect();
        // every rank must reduce the same metrics, in the same order: check the count first,
        // so that a mismatch is an error on every rank rather than a mismatched reduction
        let mut count = [entries.len() as f64];
        world.all_reduce_sum(Buf::F64(&mut count))?;
        if count[0] != (entries.len() * world.world_size()) as f64 {
            return Err(Error::Config {
                flag: "ddp",
                reason: format!(
                    "the ranks logged different epoch metrics ({} here, {} in all): log the same names on every rank",
                    entries.len(),
                    count[0]
                ),
            });
        }
        // sums: (total, weight) of mean and sum metrics; extremes: max, and -min as a max
        let mut sums = Vec::with_capacity(2 * entries.len());
        let mut extremes = Vec::with_capacity(entries.len());
        for e in &entries {
            let value = match &e.acc {
                Some(acc) => read(acc, syncs)?,
                None => f64::NAN,
            };
            match e.reduce {
                Reduce::Mean | Reduce::Sum => sums.extend([value, e.weight]),
                Reduce::Max => extremes.push(value),
                Reduce::Min => extremes.push(-value),
            }
        }
        world.all_reduce_sum(Buf::F64(&mut sums))?;
        world.all_reduce_max(Buf::F64(&mut extremes))?;
        let (mut sums, mut extremes) = (sums.chunks_exact(2), extremes.into_iter());
        for e in entries.iter_mut() {
            match e.reduce {
                Reduce::Mean | Reduce::Sum => {
                    let pair = sums.next().expect("one pair per summed metric");
                    e.set_epoch(pair[0], pair[1]);
                }
                Reduce::Max => e.set_epoch(extremes.next().expect("one value per max metric"), 1.0),
                Reduce::Min => e.set_epoch(-extremes.next().expect("one value per min metric"), 1.0),
            }
        }
        Ok(())
    }

    /// Drops what a loop logged (Lightning discards the sanity check's metrics).
    pub(crate) fn discard(&mut self, loop_kind: LoopKind) {
        self.entries.retain(|e| e.loop_kind != loop_kind);
        self.ended.retain(|l| *l != loop_kind);
    }

    fn step_key(e: &Entry) -> String {
        if e.on_epoch {
            format!("{}_step", e.name)
        } else {
            e.name.clone()
        }
    }

    fn epoch_key(e: &Entry) -> String {
        if e.on_step {
            format!("{}_epoch", e.name)
        } else {
            e.name.clone()
        }
    }

    /// Step values a logger has not seen yet (marked seen).
    pub(crate) fn take_step_metrics(&mut self) -> Result<Vec<(String, f64)>> {
        let mut out = Vec::new();
        for e in self.entries.iter_mut().filter(|e| e.step_fresh) {
            e.step_fresh = false;
            if let (true, Some(v)) = (e.logger, &e.step) {
                out.push((Self::step_key(e), read(v, &self.syncs)?));
            }
        }
        Ok(out)
    }

    /// A loop's epoch values a logger has not seen yet (marked seen).
    pub(crate) fn take_epoch_metrics(&mut self, loop_kind: LoopKind) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for e in self.entries.iter_mut().filter(|e| e.loop_kind == loop_kind && e.epoch_fresh) {
            e.epoch_fresh = false;
            if let (true, Some(v)) = (e.logger, e.epoch) {
                out.push((Self::epoch_key(e), v));
            }
        }
        out
    }

    /// The values shown in the progress bar (read back now), named as Lightning shows them:
    /// a value logged both per step and per epoch is `name_step` and, once an epoch ended,
    /// `name_epoch`.
    pub fn progress_bar_metrics(&self) -> Result<Vec<(String, f64)>> {
        let mut out = Vec::new();
        for e in self.entries.iter().filter(|e| e.prog_bar) {
            if e.on_step && e.on_epoch {
                if let Some(v) = &e.step {
                    out.push((format!("{}_step", e.name), read(v, &self.syncs)?));
                }
                if let Some(v) = e.epoch {
                    out.push((format!("{}_epoch", e.name), v));
                }
            } else if let Some(v) = &e.current {
                out.push((e.name.clone(), read(v, &self.syncs)?));
            }
        }
        Ok(out)
    }

    /// Lightning's `callback_metrics`: every logged name with its latest value, plus
    /// `name_step` / `name_epoch` for values logged both ways. Reads device values back.
    pub fn callback_metrics(&self) -> Result<BTreeMap<String, f64>> {
        let mut out = BTreeMap::new();
        for e in &self.entries {
            if let Some(v) = &e.current {
                out.insert(e.name.clone(), read(v, &self.syncs)?);
            }
            if e.on_step && e.on_epoch {
                if let Some(v) = &e.step {
                    out.insert(format!("{}_step", e.name), read(v, &self.syncs)?);
                }
                if let Some(v) = e.epoch {
                    out.insert(format!("{}_epoch", e.name), v);
                }
            }
        }
        Ok(out)
    }

    /// One metric of `callback_metrics`, reading back only that value.
    pub fn get(&self, name: &str) -> Result<Option<f64>> {
        // the entry logged most recently under that name wins, as in Lightning's dict
        for e in self.entries.iter().rev() {
            if e.name == name {
                if let Some(v) = &e.current {
                    return read(v, &self.syncs).map(Some);
                }
            }
            if e.on_step && e.on_epoch {
                if name.strip_suffix("_step") == Some(&e.name) {
                    return e.step.as_ref().map(|v| read(v, &self.syncs)).transpose();
                }
                if name.strip_suffix("_epoch") == Some(&e.name) {
                    return Ok(e.epoch);
                }
            }
        }
        Ok(None)
    }
}

/// The message for a monitored metric that was never logged: who monitors it, the closest
/// logged name ("did you mean", as Lightning users know from misspelled keys) and every
/// logged name.
pub(crate) fn not_logged<S: AsRef<str>>(who: &str, key: &str, logged: &[S]) -> String {
    let names: Vec<&str> = logged.iter().map(|n| n.as_ref()).collect();
    // several evaluation loaders: the key was logged under each loader's name
    let suffixed = format!("{key}/dataloader_idx_0");
    if names.contains(&suffixed.as_str()) {
        return format!(
            "{who} monitors `{key}`, which was not logged: with several loaders each value is logged as \
             `{key}/dataloader_idx_N`; monitor `{suffixed}`, or log `{key}` from one loader with \
             `Log::new().add_dataloader_idx(false)` (logged: {names:?})"
        );
    }
    let closest = logged
        .iter()
        .map(|n| n.as_ref())
        .map(|n| (n, strsim::jaro_winkler(key, n), strsim::damerau_levenshtein(key, n)))
        .filter(|&(_, jw, dl)| dl <= 3 || jw >= 0.9)
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.2.cmp(&a.2)));
    let hint = closest.map_or_else(String::new, |(n, _, _)| format!(": did you mean `{n}`?"));
    format!("{who} monitors `{key}`, which was not logged{hint} (logged: {names:?})")
}

#[cfg(test)]
mod not_logged_tests {
    use super::not_logged;

    #[test]
    fn suggests_the_closest_logged_name() {
        let logged = ["train_loss", "val_acc", "val_loss"];
        assert_eq!(
            not_logged("EarlyStopping", "val_los", &logged),
            "EarlyStopping monitors `val_los`, which was not logged: did you mean `val_loss`? (logged: [\"train_loss\", \"val_acc\", \"val_loss\"])"
        );
        assert!(!not_logged("EarlyStopping", "accuracy", &logged).contains("did you mean"));
        // several validation loaders
        let logged = ["train_loss", "val_loss/dataloader_idx_0", "val_loss/dataloader_idx_1"];
        let msg = not_logged("EarlyStopping", "val_loss", &logged);
        assert!(msg.contains("monitor `val_loss/dataloader_idx_0`"), "{msg}");
        assert!(msg.contains("add_dataloader_idx(false)"), "{msg}");
    }
}
