//! The fit loop, in the order of Lightning's hook-order test (reference §2.3, §2.7).

use std::path::Path;

use candle_core::Var;

use super::closure::{ensure_called, Closure};
use super::manual::Manual;
use super::resume::Resume;
use super::source::{self, Which};
use super::stop::{self, StopReason};
use super::{dispatch, estimate, eval, hooks, logs, save, TrainerConfig};
use crate::logging::store::LoopKind;
use crate::{
    CallbackList, DataModule, Error, Flow, Gradients, Interval, LightningModule, Loader, LrScheduler, Optimizer,
    Optimizers, Result, Stage, TrainerState, TransferBatch,
};

/// Where training starts: an epoch, and batches already done in it.
struct Start {
    epoch: usize,
    skip_batches: usize,
}

/// The trainable variables: the module's, sorted by name (a `VarMap`'s own order is not
/// stable). Every parameter an optimizer holds is one of them (`foreign_params::check`).
fn sorted_vars<M: LightningModule>(model: &M) -> Vec<Var> {
    let data = model.parameters().data().lock().unwrap_or_else(|p| p.into_inner());
    let mut named: Vec<(&String, &Var)> = data.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    named.into_iter().map(|(_, v)| v.clone()).collect()
}

/// Steps the scheduler if it runs on this `interval` and `count` hits its frequency, then
/// sets every parameter group's rate from its initial one.
fn step_scheduler<M: LightningModule>(
    state: &mut TrainerState,
    model: &mut M,
    optim: &mut M::Optim,
    interval: Interval,
    count: usize,
) -> Result<()> {
    let Some((sched, cfg)) = optim.parts().1 else { return Ok(()) };
    if cfg.interval != interval || count % cfg.frequency.max(1) != 0 {
        return Ok(());
    }
    let metric = match &cfg.monitor {
        None => None,
        // under DDP, the ranks' mean: every rank's scheduler steps alike
        Some(key) => match state.monitored_metric(key)? {
            Some(v) => Some(v),
            None => {
                let logged: Vec<String> = state.callback_metrics()?.into_keys().collect();
                return Err(Error::config(
                    "monitor",
                    crate::logging::store::not_logged("the LR scheduler", key, &logged),
                ));
            }
        },
    };
    dispatch::lr_scheduler_step(state, model, sched, metric)?;
    if let Some(why) = sched.past_end() {
        return Err(Error::config("lr_scheduler", why));
    }
    apply_scheduler_rates::<M>(state, optim);
    Ok(())
}

/// Sets every parameter group's rate to the scheduler's rate now. Called when the scheduler
/// is attached (torch's constructor sets the step-0 rate: `LinearLR`'s `start_factor × lr`,
/// `OneCycleLR`'s `max_lr / div_factor`; after a resume, the restored schedule's rate) and
/// after each scheduler step.
fn apply_scheduler_rates<M: LightningModule>(state: &mut TrainerState, optim: &mut M::Optim) {
    if let (opt, Some((sched, _))) = optim.parts() {
        for g in 0..opt.num_groups() {
            let lr = sched.learning_rate(opt.initial_learning_rate(g));
            opt.set_learning_rate(g, lr);
        }
        if let Some(m) = sched.momentum() {
            opt.set_momentum(m);
        }
    }
    record_learning_rates::<M>(state, optim);
}

/// Refreshes `state.learning_rates` (what `LearningRateMonitor` logs). The optimizers are fixed
/// for the run, so the names are built at the first call and later calls (every scheduler
/// step) only update the values, in the same order.
fn record_learning_rates<M: LightningModule>(state: &mut TrainerState, optim: &mut M::Optim) {
    let fresh = state.learning_rates.is_empty();
    let many = optim.count() > 1;
    let mut k = 0;
    for i in 0..optim.count() {
        let Some(o) = optim.get(i) else { continue };
        for g in 0..o.num_groups() {
            let lr = o.learning_rate(g);
            if fresh {
                let base = format!("lr-{}", o.name());
                let base = if many { format!("{base}-{i}") } else { base };
                let name = if g == 0 { base } else { format!("{base}/pg{}", g + 1) };
                state.learning_rates.push((name, lr));
            } else if let Some(slot) = state.learning_rates.get_mut(k) {
                slot.1 = lr;
            }
            k += 1;
        }
    }
}

/// Plateau schedulers need a metric (Lightning requires `monitor` for them, on either
/// interval); a scheduler that cycles momentum needs an optimizer with one.
fn check_scheduler<M: LightningModule>(optim: &mut M::Optim) -> Result<bool> {
    let needs = <<M::Optim as Optimizers>::Scheduler as LrScheduler>::NEEDS_METRIC;
    if let (opt, Some((sched, cfg))) = optim.parts() {
        if needs && cfg.monitor.is_none() {
            return Err(Error::config("monitor", "this LR scheduler needs a metric: return it with `SchedulerConfig::every_epoch().monitor(\"val_loss\")`"));
        }
        if sched.momentum().is_some() && opt.momentum().is_none() {
            let name = opt.name();
            return Err(Error::config(
                "cycle_momentum",
                format!("the scheduler cycles momentum, which {name} has none of (torch: \"optimizer must support momentum or beta1 with `cycle_momentum` option enabled\"): use SGD, RMSprop, Adam or AdamW, or turn it off with `.cycle_momentum(false)`"),
            ));
        }
    }
    Ok(needs)
}

/// Lightning's rules: several optimizers need manual optimization, and manual
/// optimization takes no clipping or accumulation flags.
fn check_optimization<M: LightningModule>(cfg: &TrainerConfig, optim: &M::Optim) -> Result<()> {
    if M::AUTOMATIC_OPTIMIZATION {
        if optim.count() > 1 {
            return Err(Error::config(
                dispatch::name::CONFIGURE_OPTIMIZERS,
                format!(
                    "{} optimizers need manual optimization: write `#[lightning_module(manual_optimization)]`",
                    optim.count()
                ),
            ));
        }
    } else {
        if cfg.accumulate_grad_batches != 1 {
            return Err(Error::config(
                "accumulate_grad_batches",
                concat!("not with manual optimization: accumulate in ", dispatch::hook_name!(training_step)),
            ));
        }
        if cfg.gradient_clip_val.is_some() {
            let reason = concat!("not with manual optimization: clip in ", dispatch::hook_name!(training_step));
            return Err(Error::config("gradient_clip_val", reason));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run<M, L, DM, T, V>(
    cfg: &TrainerConfig,
    state: &mut TrainerState,
    model: &mut M,
    cbs: &mut L,
    dm: &mut DM,
    mut train: Option<T>,
    mut val: Option<V>,
    resume: Option<&Path>,
) -> Result<StopReason>
where
    M: LightningModule,
    L: CallbackList<M>,
    DM: DataModule<Batch = M::Batch>,
    T: Loader<Batch = M::Batch>,
    V: Loader<Batch = M::Batch>,
{
    hooks::setup(Stage::Fit, state, model, cbs, dm)?;
    // dropout masks start from the trainer's seed; a resume continues the checkpoint's draws
    crate::nn::set_dropout_state(crate::nn::DropoutState { seed: cfg.dropout_seed(), counter: 0 });
    let mut pending = match resume {
        Some(path) => Some(Resume::read(path, state, model, cbs, dm)?),
        None => None,
    };
    let start = match pending.as_ref().map(Resume::start) {
        Some((epoch, skip_batches)) => Start { epoch, skip_batches },
        None => Start { epoch: 0, skip_batches: 0 },
    };
    let resumed = pending.is_some();
    let (rank, world) = (state.global_rank(), state.world_size());
    // a loader given to fit is known now, and one from train_dataloader or the datamodule
    // is fetched now when configure_optimizers reads estimated_stepping_batches (Lightning
    // then calls those hooks early): sharded, counted and estimated before it
    let fetched_early = train.is_some() || M::ESTIMATE_IN_CONFIGURE_OPTIMIZERS;
    let mut early_train = if fetched_early { source::get(&mut train, state, model, dm, Which::Train)? } else { None };
    let early_len = match &mut early_train {
        Some(t) => {
            if world > 1 {
                t.shard(rank, world)?;
            }
            state.num_training_batches = cfg.limit_train_batches.apply(t.len(), "limit_train_batches")?;
            Some(t.len())
        }
        None => None,
    };
    state.stepping_batches = Some(estimate::stepping_batches(cfg, cfg.accumulate_grad_batches, early_len));
    let mut optim = dispatch::configure_optimizers(state, model)?;
    let plateau = check_scheduler::<M>(&mut optim)?;
    check_optimization::<M>(cfg, &optim)?;
    super::foreign_params::check(model, &mut optim)?;
    if let Some(dtype) = cfg.precision.and_then(|p| p.master_dtype()) {
        for i in 0..optim.count() {
            if let Some(o) = optim.get(i) {
                o.use_master_weights_from(dtype, &state.masters)?;
            }
        }
    }
    if let Some(r) = pending.take() {
        // the weights, the optimizers' and the scheduler's states and the step counter, all or none
        r.apply(state, &mut optim)?;
    }
    // a schedule that cannot start (OneCycleLR's empty warm-up) fails here, before any step
    if let (_, Some((sched, _))) = optim.parts() {
        if let Some(why) = sched.past_end() {
            return Err(Error::config("lr_scheduler", why));
        }
    }
    apply_scheduler_rates::<M>(state, &mut optim);
    let vars = sorted_vars(model);
    if let Some(world) = &state.world {
        // DDP: every replica starts from rank 0's parameters
        crate::dist::broadcast_parameters(world.as_ref(), &vars)?;
        // and rank 0's master weights under mixed precision, in the same order
        let masters: Vec<Var> = vars.iter().filter_map(|v| state.masters.get(&v.id()).cloned()).collect();
        crate::dist::broadcast_parameters(world.as_ref(), &masters)?;
    }
    let mut grads = Gradients::new(vars);
    let mut guard = super::unused::UnusedGuard::new(cfg.allow_unused_parameters, optim.count());
    if cfg.enable_model_summary {
        // parameters no optimizer holds are frozen: Lightning's "Non-trainable params"
        let mut held = std::collections::HashSet::new();
        for i in 0..optim.count() {
            if let Some(o) = optim.get(i) {
                held.extend(o.named_parameters().into_iter().map(|(_, v)| v.id()));
            }
        }
        let all = held.is_empty();
        print!("{}", crate::summary::summarize_trainable(model, |v| all || held.contains(&v.id())));
    }
    dispatch::on_fit_start(state, model, cbs)?;

    let val_enabled = M::IMPL_VALIDATION_STEP && !cfg.limit_val_batches.is_zero();
    let sanity = val_enabled && !resumed && cfg.num_sanity_val_steps > 0;
    let mut val_loader = None;
    if sanity {
        dispatch::on_sanity_check_start(state, model, cbs)?;
        val_loader = source::get(&mut val, state, model, dm, Which::Val)?;
        if let Some(vl) = &mut val_loader {
            let n = cfg.limit_val_batches.apply(vl.len(), "limit_val_batches")?.min(cfg.num_sanity_val_steps);
            if n > 0 {
                state.sanity_checking = true;
                eval::validation(state, model, cbs, dm, vl, n, None)?;
                state.sanity_checking = false;
            }
        }
        dispatch::on_sanity_check_end(state, model, cbs)?;
    }
    let train_loader =
        if fetched_early { early_train } else { source::get(&mut train, state, model, dm, Which::Train)? };
    let mut train_loader =
        train_loader.ok_or(Error::MissingHook { module: M::NAME, hook: dispatch::name::TRAIN_DATALOADER })?;
    if val_enabled && !sanity {
        val_loader = source::get(&mut val, state, model, dm, Which::Val)?;
    }
    if world > 1 {
        train_loader.shard(rank, world)?;
        if let Some(vl) = &mut val_loader {
            vl.shard(rank, world)?;
        }
    }
    let num_train = cfg.limit_train_batches.apply(train_loader.len(), "limit_train_batches")?;
    let sized = train_loader.len() != usize::MAX;
    let num_val = match &val_loader {
        Some(v) if val_enabled => cfg.limit_val_batches.apply(v.len(), "limit_val_batches")?,
        _ => 0,
    };
    state.num_training_batches = num_train;
    state.num_val_batches = num_val;
    state.stepping_batches =
        Some(estimate::stepping_batches(cfg, cfg.accumulate_grad_batches, Some(train_loader.len())));
    if sized && start.skip_batches > num_train {
        return Err(Error::CheckpointField {
            path: resume.map(Path::to_path_buf),
            field: "batches_done".into(),
            reason: format!(
                "is {}, more than the {num_train} training batches of an epoch here (a changed loader, batch size or world size?)",
                start.skip_batches
            ),
        });
    }
    let val_check_batch = match cfg.val_check_interval {
        super::Limit::Batches(n) => n.max(1),
        other => other.apply(num_train, "val_check_interval")?.max(1),
    };

    let mut stopped = StopReason::NoTrainingBatches;
    if num_train == 0 {
        let limit = if train_loader.len() > 0 { " after `limit_train_batches`" } else { "" };
        crate::dist::rank_zero_warn(format_args!("the training loader has no batches{limit}: `fit` trains nothing"));
    } else {
        dispatch::on_train_start(state, model, cbs)?;
        let device = state.device.clone();
        let clip = (cfg.gradient_clip_val, cfg.gradient_clip_algorithm);
        let max_epochs = cfg.effective_max_epochs();
        let steps_done = |s: &TrainerState| cfg.max_steps.is_some_and(|m| s.global_step >= m);
        let mut total_batch_idx = 0usize;
        let started = std::time::Instant::now();
        state.current_epoch = start.epoch;
        let mut skip = start.skip_batches;
        // Lightning defers a stop request until min_epochs and min_steps are met
        let may_stop = |s: &TrainerState| {
            cfg.min_epochs.is_none_or(|m| s.current_epoch >= m) && cfg.min_steps.is_none_or(|m| s.global_step >= m)
        };
        let stop_now = |s: &mut TrainerState| {
            if s.should_stop && !may_stop(s) {
                s.should_stop = false;
                s.stop_reason = None;
            }
            s.should_stop
        };
        warn_if_nothing_to_do(cfg, state.global_step, max_epochs, &start, resume);
        let mut timed_out = false;
        while !(max_epochs.is_some_and(|m| state.current_epoch >= m) || steps_done(state) || stop_now(state)) {
            let epoch = state.current_epoch;
            state.batches_done = skip;
            state.metrics.epoch_start(LoopKind::Train);
            if skip == 0 {
                dispatch::on_train_epoch_start(state, model, cbs)?;
            }
            // read after on_train_epoch_start: GradientAccumulationScheduler sets it there
            let k = state.accumulate_grad_batches.max(1);
            let val_this_epoch = num_val > 0 && cfg.check_val_every_n_epoch.is_none_or(|n| (epoch + 1) % n == 0);
            let mut skipped = false;
            let mut epoch_finished = false;
            // one batch of look-ahead for loaders of unknown length (streams), as Lightning's
            // data fetcher: a stream's end is seen at its last batch, so epoch-end validation
            // and schedulers work for it too; a sized loader's last batch is known by count
            // overfit_batches: the same batches every epoch (the loader's epoch-0 order)
            let order = if cfg.overfit_batches.is_some() { 0 } else { epoch };
            let mut batches = train_loader.batches(order).take(num_train).enumerate().skip(skip).peekable();
            while let Some((i, batch)) = batches.next() {
                let batch = hooks::transfer(state, model, dm, batch?, &device, 0)?;
                state.batch_size = batch.batch_size().unwrap_or(1);
                state.metrics.batch_start(LoopKind::Train);
                if dispatch::on_train_batch_start(state, model, cbs, &batch, i)? == Flow::SkipEpoch {
                    skipped = true;
                    break;
                }
                let batch = dispatch::on_batch_begin(state, model, cbs, batch, i)?;
                let last = i + 1 == num_train || (!sized && batches.peek().is_none());
                let stepped;
                let step_before = state.global_step;
                let outputs = if M::AUTOMATIC_OPTIMIZATION {
                    let window_end = (i + 1) % k == 0 || last;
                    let (optimizer, _) = optim.parts();
                    let mut closure = Closure::<M, L> {
                        state: &mut *state,
                        callbacks: &mut *cbs,
                        batch: &batch,
                        batch_idx: i,
                        grads: &mut grads,
                        zero_grad: i % k == 0 || i == skip,
                        sync: window_end,
                        clip,
                        output: None,
                        stepped: false,
                        guard: &mut guard,
                    };
                    if window_end {
                        dispatch::optimizer_step(model, epoch, i, optimizer, &mut closure)?;
                        ensure_called(&closure)?;
                    } else {
                        crate::OptimizerClosure::call(&mut closure, model, optimizer)?;
                    }
                    stepped = closure.stepped;
                    let outputs = closure.output.take().unwrap_or_default();
                    if stepped {
                        state.global_step += 1;
                        if !plateau {
                            step_scheduler(state, model, &mut optim, Interval::Step, i + 1)?;
                        }
                    }
                    outputs
                } else {
                    // the module steps its optimizers; every step counts, as in Lightning
                    let mut manual = Manual::<M, L> {
                        callbacks: &mut *cbs,
                        optim: &mut optim,
                        grads: &mut grads,
                        steps: 0,
                        guard: &mut guard,
                    };
                    let outputs = dispatch::training_step(state, model, &batch, i, &mut manual)?;
                    state.global_step += manual.steps;
                    stepped = manual.steps > 0;
                    outputs
                };
                if cfg.detect_anomaly {
                    if let Some(loss) = &outputs.loss {
                        let value = loss.to_dtype(candle_core::DType::F64)?.sum_all()?.to_scalar::<f64>()?;
                        if !value.is_finite() {
                            let (epoch, step) = (state.current_epoch, step_before);
                            return Err(Error::NonFiniteLoss { value, epoch, step, batch_idx: i });
                        }
                    }
                }
                if last {
                    epoch_finished = true;
                }
                if last && !plateau && M::AUTOMATIC_OPTIMIZATION {
                    step_scheduler(state, model, &mut optim, Interval::Epoch, epoch + 1)?;
                }
                state.batches_done = i + 1;
                total_batch_idx += 1;
                // the checkpoints the callbacks asked for are written before the module's hook
                dispatch::on_train_batch_end(state, model, cbs, &outputs, &batch, i, |state, model, cbs, _, _, _| {
                    save::flush(state, model, cbs, &mut *dm, Some(&mut optim))
                })?;
                logs::after_train_batch(state, stepped)?;
                // DDP: a stop asked for on any rank, or a signal any rank received, stops every
                // rank at this batch
                let signal = state.sync_stop_and_signal()?;
                let counter = if cfg.check_val_every_n_epoch.is_none() { total_batch_idx } else { i + 1 };
                let interval_is_epoch = cfg.val_check_interval == super::Limit::Fraction(1.0);
                if val_this_epoch
                    && (counter % val_check_batch == 0
                        || (last && interval_is_epoch)
                        || (state.should_stop && may_stop(state)))
                {
                    if let Some(vl) = &mut val_loader {
                        dispatch::on_validation_model_zero_grad(state, model)?;
                        eval::validation(state, model, cbs, dm, vl, num_val, Some(&mut optim))?;
                    }
                }
                // plateau schedulers on interval "step" step after every optimizer step, once
                // its metrics are logged and any validation ran (Lightning's
                // `update_lr_schedulers("step", update_plateau_schedulers=True)`)
                if plateau && stepped && M::AUTOMATIC_OPTIMIZATION {
                    step_scheduler(state, model, &mut optim, Interval::Step, i + 1)?;
                }
                if let Some(m) = cfg.max_time {
                    let out_of_time = started.elapsed() >= m;
                    timed_out |= out_of_time;
                    state.should_stop |= out_of_time;
                    state.sync_should_stop()?; // the ranks' clocks differ
                }
                if let Some(signal) = signal {
                    // between batches the optimizer is consistent: on_exception's checkpoint
                    // keeps it, so a resume from it continues exactly
                    state.stopped_optim = Some(save::optimizer_state(&mut optim)?);
                    return Err(Error::Interrupted { signal, epoch: state.current_epoch, step: state.global_step });
                }
                if steps_done(state) || (state.should_stop && may_stop(state)) {
                    break;
                }
            }
            // Skipped epochs (Flow::SkipEpoch) still step epoch schedulers (Lightning PR #21307).
            if skipped && !plateau && M::AUTOMATIC_OPTIMIZATION {
                step_scheduler(state, model, &mut optim, Interval::Epoch, epoch + 1)?;
            }
            skip = 0;
            // A checkpoint saved now resumes at the next epoch only if this one is done;
            // after `max_steps` or `should_stop` mid-epoch it resumes at the next batch.
            state.at_epoch_end = skipped || epoch_finished;
            let world = state.world.clone();
            state.metrics.epoch_end(LoopKind::Train, world.as_deref())?;
            dispatch::on_train_epoch_end(state, model, cbs)?;
            state.sync_should_stop()?;
            save::flush(state, model, cbs, dm, Some(&mut optim))?;
            logs::after_epoch(state, LoopKind::Train)?;
            state.at_epoch_end = false;
            // Plateau schedulers step after validation and the epoch-end hooks (Lightning's
            // `update_plateau_schedulers`), with the metric they monitor.
            if plateau && M::AUTOMATIC_OPTIMIZATION && epoch_finished {
                step_scheduler(state, model, &mut optim, Interval::Epoch, epoch + 1)?;
            }
            state.current_epoch += 1;
        }
        stopped = if steps_done(state) {
            StopReason::MaxSteps(cfg.max_steps.unwrap_or_default())
        } else if let Some(m) = max_epochs.filter(|&m| state.current_epoch >= m) {
            StopReason::MaxEpochs(m)
        } else if timed_out {
            StopReason::MaxTime(cfg.max_time.unwrap_or_default())
        } else {
            StopReason::ShouldStop(state.stop_reason.clone())
        };
        stop::report(state, &stopped);
        dispatch::on_train_end(state, model, cbs)?;
    }
    dispatch::on_fit_end(state, model, cbs)?;
    hooks::teardown(Stage::Fit, state, model, cbs, dm)?;
    Ok(stopped)
}

/// Lightning warns when `fit` has nothing to do: `max_epochs=0`, or a resumed run already
/// past `max_epochs` or `max_steps`.
fn warn_if_nothing_to_do(
    cfg: &TrainerConfig,
    step: usize,
    max_epochs: Option<usize>,
    start: &Start,
    resume: Option<&Path>,
) {
    let from = resume.map(|p| format!(" (resumed from {})", p.display())).unwrap_or_default();
    if let Some(m) = max_epochs.filter(|&m| start.epoch >= m) {
        let what = if m == 0 {
            "`max_epochs=0`".to_string()
        } else {
            format!("epoch {} is past `max_epochs={m}`", start.epoch)
        };
        crate::dist::rank_zero_warn(format_args!(
            "{what}{from}: `fit` trains nothing; raise `max_epochs` to train more"
        ));
    } else if let Some(m) = cfg.max_steps.filter(|&m| step >= m) {
        crate::dist::rank_zero_warn(format_args!(
            "step {step} is past `max_steps={m}`{from}: `fit` trains nothing; raise `max_steps` to train more"
        ));
    }
}
