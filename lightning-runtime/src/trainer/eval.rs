//! The validation, test and predict loops (reference §2.3 rows 12–31, §2.4).

use std::sync::atomic::{AtomicBool, Ordering};

use super::source::{self, RunLoader, Which};
use super::{dispatch, hooks, logs, save, Limit, TrainerConfig};
use crate::logging::store::LoopKind;
use crate::{CallbackList, DataModule, LightningModule, Loader, Result, Stage, TrainerState, TransferBatch};

/// Validation and test share one shape; this generates both from their hook names.
macro_rules! eval_loop {
    ($fn:ident, $kind:ident, $eval:ident, $train:ident, $start:ident, $epoch_start:ident, $batch_start:ident,
     $step:ident, $batch_end:ident, $epoch_end:ident, $end:ident) => {
        /// One run of the loop over `n` batches of `loader`.
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $fn<
            M: LightningModule,
            L: CallbackList<M>,
            DM: DataModule<Batch = M::Batch>,
            D: Loader<Batch = M::Batch>,
        >(
            state: &mut TrainerState,
            model: &mut M,
            cbs: &mut L,
            dm: &mut DM,
            loader: &mut D,
            n: usize,
            optim: Option<&mut M::Optim>,
        ) -> Result<()> {
            let was_training = state.training;
            state.set_training(false);
            state.num_eval_batches = n;
            dispatch::$eval(state, model)?;
            dispatch::$start(state, model, cbs)?;
            let outer = state.running;
            state.running = LoopKind::$kind;
            state.metrics.epoch_start(LoopKind::$kind);
            dispatch::$epoch_start(state, model, cbs)?;
            let device = state.device.clone();
            for (i, batch) in loader.batches(0).take(n).enumerate() {
                let batch = hooks::transfer(state, model, dm, batch?, &device, 0)?;
                state.batch_size = batch.batch_size().unwrap_or(1);
                dispatch::$batch_start(state, model, cbs, &batch, i, 0)?;
                let out = dispatch::$step(state, model, &batch, i, 0)?;
                dispatch::$batch_end(state, model, cbs, &out, &batch, i, 0)?;
            }
            // epoch values are ready for the epoch-end hooks, as in Lightning's `epoch_end_reached`
            let world = state.world.clone();
            state.metrics.epoch_end(LoopKind::$kind, world.as_deref())?;
            dispatch::$epoch_end(state, model, cbs)?;
            if state.sanity_checking {
                // Lightning drops what the sanity check logged
                state.metrics.discard(LoopKind::$kind);
            } else {
                logs::after_epoch(state, LoopKind::$kind)?;
            }
            // Checkpoint callbacks run last, so a save they ask for lands before the module's hook.
            dispatch::$end(state, model, cbs, |state, model, cbs| save::flush(state, model, cbs, dm, optim))?;
            // DDP: EarlyStopping or a hook on any rank stops them all
            state.sync_should_stop()?;
            // Lightning calls the `*_model_train` hook only when it is overridden (the
            // dispatcher calls no hook nobody wrote).
            dispatch::$train(state, model)?;
            state.set_training(was_training);
            state.running = outer;
            Ok(())
        }
    };
}

eval_loop!(
    validation,
    Val,
    on_validation_model_eval,
    on_validation_model_train,
    on_validation_start,
    on_validation_epoch_start,
    on_validation_batch_start,
    validation_step,
    on_validation_batch_end,
    on_validation_epoch_end,
    on_validation_end
);

eval_loop!(
    test,
    Test,
    on_test_model_eval,
    on_test_model_train,
    on_test_start,
    on_test_epoch_start,
    on_test_batch_start,
    test_step,
    on_test_batch_end,
    on_test_epoch_end,
    on_test_end
);

/// Under DDP, `validate`, `test` and `predict` read one shard per rank, as the fit loop does
/// (Lightning's `DistributedSampler`), so that each sample is evaluated once and metrics
/// reduced over the ranks count it once. A set that does not split evenly is padded by
/// repeating its first samples; as Lightning, say so once per process.
fn shard<D: Loader>(state: &TrainerState, loader: &mut D, stage: Stage) -> Result<()> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let (rank, world) = (state.global_rank(), state.world_size());
    if world == 1 {
        return Ok(());
    }
    loader.shard(rank, world)?;
    if !WARNED.swap(true, Ordering::Relaxed) {
        crate::dist::rank_zero_warn(format_args!(
            "`{stage}` under DDP: each of the {world} ranks evaluates its shard of the data; a set whose size \
             is not a multiple of {world} is padded by repeating its first samples, which then count twice in \
             the reduced metrics (for exact figures, use such a size or one process)"
        ));
    }
    Ok(())
}

/// One run of an evaluation loop over `n` batches.
type LoopFn<M, L, DM, D> = fn(
    &mut TrainerState,
    &mut M,
    &mut L,
    &mut DM,
    &mut D,
    usize,
    Option<&mut <M as LightningModule>::Optim>,
) -> Result<()>;

/// `validate` / `test`: set-up, one run of the loop unless its limit is 0, teardown.
/// With a zero limit the loader is not even requested (Lightning §2.4).
#[allow(clippy::too_many_arguments)]
fn run_eval<M, L, DM, D>(
    stage: Stage,
    which: Which,
    limit: Limit,
    flag: &'static str,
    state: &mut TrainerState,
    model: &mut M,
    cbs: &mut L,
    dm: &mut DM,
    mut given: Option<D>,
    run: LoopFn<M, L, DM, RunLoader<D, DM, M>>,
) -> Result<()>
where
    M: LightningModule,
    L: CallbackList<M>,
    DM: DataModule<Batch = M::Batch>,
    D: Loader<Batch = M::Batch>,
{
    hooks::setup(stage, state, model, cbs, dm)?;
    if !limit.is_zero() {
        if let Some(mut loader) = source::get(&mut given, state, model, dm, which)? {
            shard(state, &mut loader, stage)?;
            let n = limit.apply(loader.len(), flag)?;
            if which == Which::Val {
                state.num_val_batches = n;
            }
            run(state, model, cbs, dm, &mut loader, n, None)?;
        }
    }
    hooks::teardown(stage, state, model, cbs, dm)
}

pub(crate) fn run_validate<M, L, DM, D>(
    cfg: &TrainerConfig,
    state: &mut TrainerState,
    model: &mut M,
    cbs: &mut L,
    dm: &mut DM,
    given: Option<D>,
) -> Result<()>
where
    M: LightningModule,
    L: CallbackList<M>,
    DM: DataModule<Batch = M::Batch>,
    D: Loader<Batch = M::Batch>,
{
    let limit = cfg.limit_val_batches;
    run_eval(Stage::Validate, Which::Val, limit, "limit_val_batches", state, model, cbs, dm, given, validation)
}

pub(crate) fn run_test<M, L, DM, D>(
    cfg: &TrainerConfig,
    state: &mut TrainerState,
    model: &mut M,
    cbs: &mut L,
    dm: &mut DM,
    given: Option<D>,
) -> Result<()>
where
    M: LightningModule,
    L: CallbackList<M>,
    DM: DataModule<Batch = M::Batch>,
    D: Loader<Batch = M::Batch>,
{
    let limit = cfg.limit_test_batches;
    run_eval(Stage::Test, Which::Test, limit, "limit_test_batches", state, model, cbs, dm, given, test)
}

pub(crate) fn run_predict<M, L, DM, D>(
    cfg: &TrainerConfig,
    state: &mut TrainerState,
    model: &mut M,
    cbs: &mut L,
    dm: &mut DM,
    mut given: Option<D>,
) -> Result<Vec<M::Prediction>>
where
    M: LightningModule,
    L: CallbackList<M>,
    DM: DataModule<Batch = M::Batch>,
    D: Loader<Batch = M::Batch>,
{
    hooks::setup(Stage::Predict, state, model, cbs, dm)?;
    let mut predictions = Vec::new();
    if !cfg.limit_predict_batches.is_zero() {
        if let Some(mut loader) = source::get(&mut given, state, model, dm, Which::Predict)? {
            shard(state, &mut loader, Stage::Predict)?;
            let n = cfg.limit_predict_batches.apply(loader.len(), "limit_predict_batches")?;
            predictions.reserve(n);
            state.set_training(false);
            dispatch::on_predict_model_eval(state, model)?;
            dispatch::on_predict_start(state, model, cbs)?;
            dispatch::on_predict_epoch_start(state, model, cbs)?;
            let device = state.device.clone();
            for (i, batch) in loader.batches(0).take(n).enumerate() {
                let batch = hooks::transfer(state, model, dm, batch?, &device, 0)?;
                dispatch::on_predict_batch_start(state, model, cbs, &batch, i, 0)?;
                let p = dispatch::predict_step(state, model, &batch, i, 0)?;
                dispatch::on_predict_batch_end(state, model, cbs, &p, &batch, i, 0)?;
                predictions.push(p);
            }
            dispatch::on_predict_epoch_end(state, model, cbs)?;
            dispatch::on_predict_end(state, model, cbs)?;
        }
    }
    hooks::teardown(Stage::Predict, state, model, cbs, dm)?;
    Ok(predictions)
}
