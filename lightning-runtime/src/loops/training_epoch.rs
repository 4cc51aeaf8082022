//! Lightning's `_TrainingEpochLoop`: one epoch's training batches, each an `advance`
//! (transfer, batch hooks, one optimization step) and an `on_advance_end` (validation when
//! due, schedulers, the time limit, signals, stop requests).

use super::fit_loop::FitLoop;
use super::optimization::Window;
use super::RunCtx;
use crate::logging::store::LoopKind;
use crate::profiler::{self, actions};
use crate::trainer::source::Refetch;
use crate::trainer::{dispatch, hooks, logs, save};
use crate::{
    CallbackList, DataModule, Error, Flow, Interval, LightningModule, Loader, Loaders, Result, StepOutput,
    TransferBatch,
};

/// One epoch of training.
#[derive(Debug)]
pub(crate) struct TrainingEpochLoop {
    /// The epoch (0-based).
    pub epoch: usize,
    /// Batches already done in it (a resumed epoch starts after them).
    pub skip: usize,
    /// `accumulate_grad_batches` for this epoch.
    pub k: usize,
    /// `on_train_batch_start` asked to skip the rest of the epoch.
    pub skipped: bool,
    /// The epoch's last batch ran.
    pub finished: bool,
}

/// What `advance` leaves for `on_advance_end`.
struct Advanced {
    batch_idx: usize,
    last: bool,
    stepped: bool,
}

impl TrainingEpochLoop {
    /// Starts epoch `state.current_epoch`: its logs, and `on_train_epoch_start` unless the
    /// epoch is resumed part-way.
    pub fn new<M, L, DM>(ctx: &mut RunCtx<'_, M, L, DM>, skip: usize) -> Self
    where
        M: LightningModule,
    {
        let state = &mut *ctx.state;
        state.batches_done = skip;
        state.metrics.epoch_start(LoopKind::Train);
        TrainingEpochLoop { epoch: state.current_epoch, skip, k: 1, skipped: false, finished: false }
    }

    /// Where batch `i` sits in its accumulation window.
    pub fn window(&self, i: usize, last: bool) -> Window {
        Window { start: i.is_multiple_of(self.k) || i == self.skip, end: (i + 1).is_multiple_of(self.k) || last }
    }

    /// The epoch's batches. Loaders of unknown length (streams) are read one batch ahead, as
    /// Lightning's data fetcher, so a stream's last batch is known as such and epoch-end
    /// validation and schedulers work for it too.
    pub fn run<M, L, DM, VL, TL>(
        &mut self,
        fit: &mut FitLoop<M, VL>,
        ctx: &mut RunCtx<'_, M, L, DM>,
        train: &mut TL,
    ) -> Result<()>
    where
        M: LightningModule,
        L: CallbackList<M>,
        DM: DataModule<Batch = M::Batch>,
        VL: Loaders<Batch = M::Batch> + Refetch<M, DM>,
        TL: Loader<Batch = M::Batch>,
    {
        if self.skip == 0 {
            dispatch::on_train_epoch_start(ctx.state, ctx.model, ctx.cbs, &mut fit.opt.optim)?;
            // fine-tuning may have added a group or set a rate: what LearningRateMonitor logs
            super::schedulers::record_rates(ctx.state, &mut fit.opt.optim);
        }
        // StochasticWeightAveraging puts SWALR in at an epoch start (or at fit start, resumed)
        super::schedulers::apply_replaced(ctx.state, &mut fit.opt.optim);
        // read after on_train_epoch_start: GradientAccumulationScheduler sets it there
        self.k = ctx.state.accumulate_grad_batches.max(1);
        // overfit_batches: the same batches every epoch (the loader's epoch-0 order)
        let order = if ctx.cfg.overfit_batches.is_some() { 0 } else { self.epoch };
        let mut batches = train.batches(order).take(fit.num_train).enumerate().skip(self.skip).peekable();
        let (num_train, sized) = (fit.num_train, fit.sized);
        loop {
            let Some((i, batch)) = profiler::next(ctx.cbs, actions::TRAIN_NEXT, &mut batches) else { break };
            let last = || i + 1 == num_train || (!sized && batches.peek().is_none());
            profiler::start(ctx.cbs, actions::TRAINING_BATCH);
            let done = self.advance(fit, ctx, i, batch?, last);
            profiler::stop(ctx.cbs, actions::TRAINING_BATCH);
            let Some(done) = done? else {
                self.skipped = true;
                break;
            };
            if self.on_advance_end(fit, ctx, done)? {
                break;
            }
        }
        Ok(())
    }

    /// One batch: transfer, `on_train_batch_start` (which may skip the epoch: `None`),
    /// `on_batch_begin`, the optimization step, anomaly detection, epoch schedulers at the
    /// last batch, `on_train_batch_end` with the checkpoints asked for, the step's logs.
    fn advance<M, L, DM, VL>(
        &mut self,
        fit: &mut FitLoop<M, VL>,
        ctx: &mut RunCtx<'_, M, L, DM>,
        i: usize,
        batch: M::Batch,
        last: impl FnOnce() -> bool,
    ) -> Result<Option<Advanced>>
    where
        M: LightningModule,
        L: CallbackList<M>,
        DM: DataModule<Batch = M::Batch>,
    {
        let RunCtx { cfg, state, model, cbs, dm } = ctx;
        let device = state.device.clone();
        let batch = hooks::transfer(state, *model, *cbs, *dm, batch, &device, 0)?;
        state.batch_size = batch.batch_size().unwrap_or(1);
        state.metrics.batch_start(LoopKind::Train);
        if dispatch::on_train_batch_start(state, *model, *cbs, &batch, i)? == Flow::SkipEpoch {
            return Ok(None);
        }
        let batch = dispatch::on_batch_begin(state, *model, *cbs, batch, i)?;
        // a stream's next batch is read only now, after this batch's start hooks
        let last = last();
        let step_before = state.global_step;
        let (outputs, stepped) = fit.opt.advance(state, *model, *cbs, &batch, i, self.window(i, last))?;
        if cfg.detect_anomaly {
            check_finite(&outputs, state.current_epoch, step_before, i)?;
        }
        self.finished |= last;
        if last {
            fit.opt.update_lr_schedulers(state, *model, *cbs, Interval::Epoch, self.epoch + 1, false)?;
        }
        state.batches_done = i + 1;
        fit.total_batches += 1;
        let optim = &mut fit.opt.optim;
        // the checkpoints the callbacks asked for are written before the module's hook
        dispatch::on_train_batch_end(state, *model, *cbs, &outputs, &batch, i, |state, model, cbs, _, _, _| {
            save::flush(state, model, cbs, &mut **dm, Some(optim))
        })?;
        logs::after_train_batch(state, stepped)?;
        Ok(Some(Advanced { batch_idx: i, last, stepped }))
    }

    /// After a batch: DDP's stop and signal decision, validation when due, plateau schedulers
    /// on interval "step", the time limit, an interrupt. Returns whether the epoch ends here.
    fn on_advance_end<M, L, DM, VL>(
        &mut self,
        fit: &mut FitLoop<M, VL>,
        ctx: &mut RunCtx<'_, M, L, DM>,
        done: Advanced,
    ) -> Result<bool>
    where
        M: LightningModule,
        L: CallbackList<M>,
        DM: DataModule<Batch = M::Batch>,
        VL: Loaders<Batch = M::Batch> + Refetch<M, DM>,
    {
        let Advanced { batch_idx: i, last, stepped } = done;
        // DDP: a stop asked for on any rank, or a signal any rank received, stops every rank
        // at this batch
        let signal = ctx.state.sync_stop_and_signal()?;
        let stopping = ctx.state.should_stop && fit.rules.may_stop(ctx.state);
        if fit.val_check.should_check_val(self.epoch, i, fit.total_batches, last, stopping) {
            if fit.val.is_some() {
                dispatch::on_validation_model_zero_grad(ctx.state, ctx.model, ctx.cbs)?;
                fit.reload_val(ctx)?;
            }
            if let Some(vl) = &mut fit.val {
                super::evaluation::validation(ctx, vl, &fit.val_counts, Some(&mut fit.opt.optim))?;
            }
        }
        // plateau schedulers on interval "step" step after every optimizer step, once its
        // metrics are logged and any validation ran (Lightning's
        // `update_lr_schedulers("step", update_plateau_schedulers=True)`)
        if stepped {
            fit.opt.update_lr_schedulers(ctx.state, ctx.model, ctx.cbs, Interval::Step, i + 1, true)?;
        }
        let state = &mut *ctx.state;
        if let Some(m) = ctx.cfg.max_time {
            let out_of_time = fit.started.elapsed() >= m;
            fit.timed_out |= out_of_time;
            state.should_stop |= out_of_time;
            state.sync_should_stop()?; // the ranks' clocks differ
        }
        if let Some(signal) = signal {
            // between batches the optimizer is consistent: on_exception's checkpoint keeps
            // it, so a resume from it continues exactly
            state.stopped_optim = Some(save::optimizer_state(&mut fit.opt.optim)?);
            return Err(Error::Interrupted { signal, epoch: state.current_epoch, step: state.global_step });
        }
        Ok(fit.rules.steps_done(state) || (state.should_stop && fit.rules.may_stop(state)))
    }
}

/// `detect_anomaly`: a loss that is NaN or infinite stops training with where it happened.
fn check_finite(outputs: &StepOutput, epoch: usize, step: usize, batch_idx: usize) -> Result<()> {
    if let Some(loss) = &outputs.loss {
        let value = loss.to_dtype(candle_core::DType::F64)?.sum_all()?.to_scalar::<f64>()?;
        if !value.is_finite() {
            return Err(Error::NonFiniteLoss { value, epoch, step, batch_idx });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(skip: usize, k: usize) -> TrainingEpochLoop {
        TrainingEpochLoop { epoch: 0, skip, k, skipped: false, finished: false }
    }

    fn windows(e: &TrainingEpochLoop, n: usize) -> Vec<(bool, bool)> {
        (e.skip..n).map(|i| e.window(i, i + 1 == n)).map(|w| (w.start, w.end)).collect()
    }

    #[test]
    fn window_without_accumulation_zeroes_and_steps_every_batch() {
        assert_eq!(windows(&epoch(0, 1), 3), [(true, true); 3]);
    }

    #[test]
    fn window_accumulates_k_batches_and_steps_on_the_epoch_s_last() {
        // accumulate_grad_batches = 3 over 7 batches: windows [0,2], [3,5], [6]
        let w = windows(&epoch(0, 3), 7);
        let starts: Vec<_> = w.iter().enumerate().filter(|(_, w)| w.0).map(|(i, _)| i).collect();
        let ends: Vec<_> = w.iter().enumerate().filter(|(_, w)| w.1).map(|(i, _)| i).collect();
        assert_eq!(starts, [0, 3, 6]);
        assert_eq!(ends, [2, 5, 6]);
    }

    #[test]
    fn window_of_a_resumed_epoch_starts_at_its_first_batch() {
        // resumed after batch 4 with k = 3: batch 4 opens a window (zero the gradients)
        let e = epoch(4, 3);
        assert_eq!(windows(&e, 7), [(true, false), (false, true), (true, true)]);
    }
}
