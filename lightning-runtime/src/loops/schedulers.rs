//! The learning-rate schedulers: stepping on an interval, setting the optimizers' rates
//! from the schedule, and the names `LearningRateMonitor` logs.

use crate::{Error, Interval, LrScheduler, Optimizer, Optimizers, Result, TrainerState};

/// Steps the scheduler if it runs on this `interval` and `count` hits its frequency (via
/// `step`, the module's `lr_scheduler_step` hook), then sets every parameter group's rate
/// from its initial one.
pub(crate) fn step<O: Optimizers>(
    state: &mut TrainerState,
    optim: &mut O,
    interval: Interval,
    count: usize,
    step: impl FnOnce(&mut TrainerState, &mut O::Scheduler, Option<f64>) -> Result<()>,
) -> Result<()> {
    let Some((sched, cfg)) = optim.parts().1 else { return Ok(()) };
    if state.tuning || cfg.interval != interval || !count.is_multiple_of(cfg.frequency.max(1)) {
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
    step(state, sched, metric)?;
    if let Some(why) = sched.past_end() {
        return Err(Error::config("lr_scheduler", why));
    }
    apply_rates(state, optim);
    Ok(())
}

/// Sets every parameter group's rate to the scheduler's rate now. Called when the scheduler
/// is attached (torch's constructor sets the step-0 rate: `LinearLR`'s `start_factor × lr`,
/// `OneCycleLR`'s `max_lr / div_factor`; after a resume, the restored schedule's rate) and
/// after each scheduler step.
pub(crate) fn apply_rates<O: Optimizers>(state: &mut TrainerState, optim: &mut O) {
    if let (opt, Some((sched, _))) = optim.parts() {
        for g in 0..opt.num_groups() {
            let lr = sched.learning_rate(opt.initial_learning_rate(g));
            opt.set_learning_rate(g, lr);
        }
        if let Some(m) = sched.momentum() {
            opt.set_momentum(m);
        }
    }
    record_rates(state, optim);
}

/// Sets the first optimizer's rates to those of the scheduler a callback put in place of the
/// module's (`StochasticWeightAveraging`'s SWALR), if any; the first time, says that it
/// replaced the module's own, as Lightning does. Called at every epoch start.
pub(crate) fn apply_replaced<O: Optimizers>(state: &mut TrainerState, optim: &mut O) {
    let Some(swa) = &mut state.replaced_scheduler else { return };
    let (opt, sched) = optim.parts();
    for (g, lr) in swa.rates().iter().enumerate().take(opt.num_groups()) {
        opt.set_learning_rate(g, *lr);
    }
    if !std::mem::replace(&mut swa.announced, true) && sched.is_some() {
        crate::dist::rank_zero_only(|| {
            eprintln!("Swapping the module's LR scheduler for `SWALR` (StochasticWeightAveraging)")
        });
    }
    record_rates(state, optim);
}

/// One epoch step of the replacing scheduler, and its rates on the optimizer.
pub(crate) fn step_replaced<O: Optimizers>(state: &mut TrainerState, optim: &mut O) {
    if let Some(swa) = &mut state.replaced_scheduler {
        swa.step();
        apply_replaced(state, optim);
    }
}

/// Refreshes `state.learning_rates` (what `LearningRateMonitor` logs). The names are built at
/// the first call and again when a group was added (fine-tuning); other calls (every
/// scheduler step) only update the values, in the same order.
pub(crate) fn record_rates<O: Optimizers>(state: &mut TrainerState, optim: &mut O) {
    let groups: usize = (0..optim.count()).filter_map(|i| optim.get(i).map(|o| o.num_groups())).sum();
    if groups != state.learning_rates.len() {
        state.learning_rates.clear();
    }
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
/// interval); a scheduler that cycles momentum needs an optimizer with one. Returns whether
/// the scheduler is a plateau one.
pub(crate) fn check<O: Optimizers>(optim: &mut O) -> Result<bool> {
    let needs = <O::Scheduler as LrScheduler>::NEEDS_METRIC;
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

/// A schedule that cannot start (OneCycleLR's empty warm-up) fails before any step.
pub(crate) fn check_start<O: Optimizers>(optim: &mut O) -> Result<()> {
    if let (_, Some((sched, _))) = optim.parts() {
        if let Some(why) = sched.past_end() {
            return Err(Error::config("lr_scheduler", why));
        }
    }
    Ok(())
}
