//! The validation, test and predict loops (reference §2.3 rows 12–31, §2.4).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};

use super::RunCtx;
use crate::data::loaders;
use crate::logging::store::LoopKind;
use crate::profiler::{self, actions};
use crate::trainer::source::{self, Which};
use crate::trainer::{dispatch, hooks, logs, save, Limit, TrainerConfig};
use crate::{
    CallbackList, DataModule, EachLoader, LightningModule, Loader, Loaders, Result, Stage, StepOutput, TrainerState,
    TransferBatch,
};

/// The hooks and flags of one evaluation loop: validation or test share one shape.
pub(crate) trait EvalKind {
    /// The logging scope of the loop.
    const KIND: LoopKind;
    /// The stage run alone (`validate`, `test`).
    const STAGE: Stage;
    /// Which `*_dataloader` feeds it.
    const WHICH: Which;
    /// The flag that limits its batches, for messages.
    const LIMIT_FLAG: &'static str;
    /// That flag's value.
    fn limit(cfg: &TrainerConfig) -> Limit;
    fn model_eval<M: LightningModule, L: CallbackList<M>>(s: &mut TrainerState, m: &mut M, c: &mut L) -> Result<()>;
    fn model_train<M: LightningModule, L: CallbackList<M>>(s: &mut TrainerState, m: &mut M, c: &mut L) -> Result<()>;
    fn start<M: LightningModule, L: CallbackList<M>>(s: &mut TrainerState, m: &mut M, c: &mut L) -> Result<()>;
    fn epoch_start<M: LightningModule, L: CallbackList<M>>(s: &mut TrainerState, m: &mut M, c: &mut L) -> Result<()>;
    fn batch_start<M: LightningModule, L: CallbackList<M>>(
        s: &mut TrainerState,
        m: &mut M,
        c: &mut L,
        batch: &M::Batch,
        i: usize,
        dl: usize,
    ) -> Result<()>;
    fn step<M: LightningModule, L: CallbackList<M>>(
        s: &mut TrainerState,
        m: &mut M,
        c: &mut L,
        batch: &M::Batch,
        i: usize,
        dl: usize,
    ) -> Result<StepOutput>;
    fn batch_end<M: LightningModule, L: CallbackList<M>>(
        s: &mut TrainerState,
        m: &mut M,
        c: &mut L,
        out: &StepOutput,
        batch: &M::Batch,
        i: usize,
        dl: usize,
    ) -> Result<()>;
    fn epoch_end<M: LightningModule, L: CallbackList<M>>(s: &mut TrainerState, m: &mut M, c: &mut L) -> Result<()>;
    /// The end hook, with `between` run after the callbacks and before the module.
    fn end<M: LightningModule, L: CallbackList<M>>(
        s: &mut TrainerState,
        m: &mut M,
        c: &mut L,
        between: impl FnOnce(&mut TrainerState, &mut M, &mut L) -> Result<()>,
    ) -> Result<()>;
}

/// Implements [`EvalKind`] for one loop from its hook names.
macro_rules! eval_kind {
    ($ty:ident, $kind:ident, $stage:ident, $which:ident, $flag:ident, $eval:ident, $train:ident, $start:ident,
     $epoch_start:ident, $batch_start:ident, $step:ident, $batch_end:ident, $epoch_end:ident, $end:ident) => {
        pub(crate) struct $ty;
        impl EvalKind for $ty {
            const KIND: LoopKind = LoopKind::$kind;
            const STAGE: Stage = Stage::$stage;
            const WHICH: Which = Which::$which;
            const LIMIT_FLAG: &'static str = stringify!($flag);
            fn limit(cfg: &TrainerConfig) -> Limit {
                cfg.$flag
            }
            fn model_eval<M: LightningModule, L: CallbackList<M>>(
                s: &mut TrainerState,
                m: &mut M,
                c: &mut L,
            ) -> Result<()> {
                dispatch::$eval(s, m, c)
            }
            fn model_train<M: LightningModule, L: CallbackList<M>>(
                s: &mut TrainerState,
                m: &mut M,
                c: &mut L,
            ) -> Result<()> {
                dispatch::$train(s, m, c)
            }
            fn start<M: LightningModule, L: CallbackList<M>>(s: &mut TrainerState, m: &mut M, c: &mut L) -> Result<()> {
                dispatch::$start(s, m, c)
            }
            fn epoch_start<M: LightningModule, L: CallbackList<M>>(
                s: &mut TrainerState,
                m: &mut M,
                c: &mut L,
            ) -> Result<()> {
                dispatch::$epoch_start(s, m, c)
            }
            fn batch_start<M: LightningModule, L: CallbackList<M>>(
                s: &mut TrainerState,
                m: &mut M,
                c: &mut L,
                batch: &M::Batch,
                i: usize,
                dl: usize,
            ) -> Result<()> {
                dispatch::$batch_start(s, m, c, batch, i, dl)
            }
            fn step<M: LightningModule, L: CallbackList<M>>(
                s: &mut TrainerState,
                m: &mut M,
                c: &mut L,
                batch: &M::Batch,
                i: usize,
                dl: usize,
            ) -> Result<StepOutput> {
                dispatch::$step(s, m, c, batch, i, dl)
            }
            fn batch_end<M: LightningModule, L: CallbackList<M>>(
                s: &mut TrainerState,
                m: &mut M,
                c: &mut L,
                out: &StepOutput,
                batch: &M::Batch,
                i: usize,
                dl: usize,
            ) -> Result<()> {
                dispatch::$batch_end(s, m, c, out, batch, i, dl)
            }
            fn epoch_end<M: LightningModule, L: CallbackList<M>>(
                s: &mut TrainerState,
                m: &mut M,
                c: &mut L,
            ) -> Result<()> {
                dispatch::$epoch_end(s, m, c)
            }
            fn end<M: LightningModule, L: CallbackList<M>>(
                s: &mut TrainerState,
                m: &mut M,
                c: &mut L,
                between: impl FnOnce(&mut TrainerState, &mut M, &mut L) -> Result<()>,
            ) -> Result<()> {
                dispatch::$end(s, m, c, between)
            }
        }
    };
}

eval_kind!(
    Validation,
    Val,
    Validate,
    Val,
    limit_val_batches,
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

eval_kind!(
    Test,
    Test,
    Test,
    Test,
    limit_test_batches,
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

/// Lightning's `_EvaluationLoop`: one run over `n` batches of a loader, for validation or
/// test (`K`).
pub(crate) struct EvaluationLoop<K>(PhantomData<K>);

/// The batch hooks of one evaluation run, for each of its loaders in turn.
struct EvalBatches<'r, K, M, L, DM> {
    state: &'r mut TrainerState,
    model: &'r mut M,
    cbs: &'r mut L,
    dm: &'r mut DM,
    /// Batches to read from each loader.
    counts: &'r [usize],
    /// Several loaders: logged keys get Lightning's `/dataloader_idx_N` suffix.
    multi: bool,
    kind: PhantomData<K>,
}

impl<K, M, L, DM> EachLoader<M::Batch> for EvalBatches<'_, K, M, L, DM>
where
    K: EvalKind,
    M: LightningModule,
    L: CallbackList<M>,
    DM: DataModule<Batch = M::Batch>,
{
    fn loader<D: Loader<Batch = M::Batch>>(&mut self, dl: usize, loader: &mut D) -> Result<()> {
        let n = self.counts.get(dl).copied().unwrap_or(0);
        let Self { state, model, cbs, dm, .. } = self;
        state.dataloader_idx = self.multi.then_some(dl);
        let device = state.device.clone();
        let next_action = if K::WHICH == Which::Val { actions::VAL_NEXT } else { actions::TEST_NEXT };
        let mut batches = loader.batches(0).take(n).enumerate();
        loop {
            let Some((i, batch)) = profiler::next(*cbs, next_action, &mut batches) else { break };
            let batch = hooks::transfer(state, *model, *cbs, *dm, batch?, &device, dl)?;
            state.batch_size = batch.batch_size().unwrap_or(1);
            K::batch_start(state, *model, *cbs, &batch, i, dl)?;
            let out = K::step(state, *model, *cbs, &batch, i, dl)?;
            K::batch_end(state, *model, *cbs, &out, &batch, i, dl)?;
        }
        Ok(())
    }
}

impl<K: EvalKind> EvaluationLoop<K> {
    /// One run of the loop over `counts[i]` batches of each loader `i`, in order (Lightning's
    /// `dataloader_idx`); `optim` is given inside `fit`, so a checkpoint saved at its end
    /// holds the optimizers' states.
    pub fn run<M, L, DM, D>(
        ctx: &mut RunCtx<'_, M, L, DM>,
        loaders: &mut D,
        counts: &[usize],
        optim: Option<&mut M::Optim>,
    ) -> Result<()>
    where
        M: LightningModule,
        L: CallbackList<M>,
        DM: DataModule<Batch = M::Batch>,
        D: Loaders<Batch = M::Batch>,
    {
        let RunCtx { state, model, cbs, dm, .. } = ctx;
        let was_training = state.training;
        state.set_training(false);
        state.num_eval_batches = counts.iter().sum();
        K::model_eval(state, *model, *cbs)?;
        K::start(state, *model, *cbs)?;
        let outer = state.running;
        state.running = K::KIND;
        state.metrics.epoch_start(K::KIND);
        K::epoch_start(state, *model, *cbs)?;
        let multi = loaders.count() > 1;
        let mut batches = EvalBatches::<K, M, L, DM> { state, model, cbs, dm, counts, multi, kind: PhantomData };
        let read = loaders.each(&mut batches);
        state.dataloader_idx = None;
        read?;
        Self::on_run_end(state, *model, *cbs, *dm, optim)?;
        // Lightning calls the `*_model_train` hook only when it is overridden (the
        // dispatcher calls no hook nobody wrote).
        K::model_train(state, *model, *cbs)?;
        state.set_training(was_training);
        state.running = outer;
        Ok(())
    }

    /// The epoch-end hooks, the epoch's logs (dropped in the sanity check, as Lightning
    /// does), the end hooks with the checkpoints asked for, and DDP's stop decision.
    fn on_run_end<M, L, DM>(
        state: &mut TrainerState,
        model: &mut M,
        cbs: &mut L,
        dm: &mut DM,
        optim: Option<&mut M::Optim>,
    ) -> Result<()>
    where
        M: LightningModule,
        L: CallbackList<M>,
        DM: DataModule<Batch = M::Batch>,
    {
        // epoch values are ready for the epoch-end hooks, as in Lightning's `epoch_end_reached`
        let world = state.world.clone();
        state.metrics.epoch_end(K::KIND, world.as_deref())?;
        K::epoch_end(state, model, cbs)?;
        if state.sanity_checking {
            state.metrics.discard(K::KIND);
        } else {
            logs::after_epoch(state, K::KIND)?;
        }
        // Checkpoint callbacks run last, so a save they ask for lands before the module's hook.
        K::end(state, model, cbs, |state, model, cbs| save::flush(state, model, cbs, dm, optim))?;
        // DDP: EarlyStopping or a hook on any rank stops them all
        state.sync_should_stop()
    }

    /// `validate` / `test`: set-up, one run of the loop unless its limit is 0, teardown.
    /// With a zero limit the loader is not even requested (Lightning §2.4).
    pub fn run_stage<M, L, DM, D>(mut ctx: RunCtx<'_, M, L, DM>, mut given: Option<D>) -> Result<()>
    where
        M: LightningModule,
        L: CallbackList<M>,
        DM: DataModule<Batch = M::Batch>,
        D: Loaders<Batch = M::Batch>,
    {
        hooks::setup(K::STAGE, ctx.state, ctx.model, ctx.cbs, ctx.dm)?;
        let limit = K::limit(ctx.cfg);
        if !limit.is_zero() {
            if let Some(mut loaders) = source::get_eval(&mut given, ctx.state, ctx.model, ctx.cbs, ctx.dm, K::WHICH)? {
                shard(ctx.state, &mut loaders, K::STAGE)?;
                let counts = loaders::counts(&loaders, limit, K::LIMIT_FLAG, usize::MAX)?;
                if K::WHICH == Which::Val {
                    ctx.state.num_val_batches = counts.iter().sum();
                }
                ctx.state.num_eval_loaders = counts.len();
                Self::run(&mut ctx, &mut loaders, &counts, None)?;
            }
        }
        hooks::teardown(K::STAGE, ctx.state, ctx.model, ctx.cbs, ctx.dm)
    }
}

/// The validation loop inside `fit` (and its sanity check).
pub(crate) fn validation<M, L, DM, D>(
    ctx: &mut RunCtx<'_, M, L, DM>,
    loaders: &mut D,
    counts: &[usize],
    optim: Option<&mut M::Optim>,
) -> Result<()>
where
    M: LightningModule,
    L: CallbackList<M>,
    DM: DataModule<Batch = M::Batch>,
    D: Loaders<Batch = M::Batch>,
{
    EvaluationLoop::<Validation>::run(ctx, loaders, counts, optim)
}

/// Under DDP, `validate`, `test` and `predict` read one shard per rank, as the fit loop does
/// (Lightning's `DistributedSampler`), so that each sample is evaluated once and metrics
/// reduced over the ranks count it once. A set that does not split evenly is padded by
/// repeating its first samples; as Lightning, say so once per process.
fn shard<D: Loaders>(state: &TrainerState, loader: &mut D, stage: Stage) -> Result<()> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let (rank, world) = (state.global_rank(), state.world_size());
    if world == 1 {
        return Ok(());
    }
    loader.shard_all(rank, world)?;
    if !WARNED.swap(true, Ordering::Relaxed) {
        crate::dist::rank_zero_warn(format_args!(
            "`{stage}` under DDP: each of the {world} ranks evaluates its shard of the data; a set whose size \
             is not a multiple of {world} is padded by repeating its first samples, which then count twice in \
             the reduced metrics (for exact figures, use such a size or one process)"
        ));
    }
    Ok(())
}

/// Lightning's `_PredictionLoop`: set-up, `predict_step` over the predict loaders (unless
/// `limit_predict_batches` is 0), teardown; returns the predictions, loader after loader, or
/// none when `keep` is false (Lightning's `return_predictions=False`: each is dropped after
/// `on_predict_batch_end`).
pub(crate) fn predict<M, L, DM, D>(
    mut ctx: RunCtx<'_, M, L, DM>,
    mut given: Option<D>,
    keep: bool,
) -> Result<Vec<M::Prediction>>
where
    M: LightningModule,
    L: CallbackList<M>,
    DM: DataModule<Batch = M::Batch>,
    D: Loaders<Batch = M::Batch>,
{
    hooks::setup(Stage::Predict, ctx.state, ctx.model, ctx.cbs, ctx.dm)?;
    let mut predictions = Vec::new();
    let limit = ctx.cfg.limit_predict_batches;
    if !limit.is_zero() {
        if let Some(mut loaders) = source::get_eval(&mut given, ctx.state, ctx.model, ctx.cbs, ctx.dm, Which::Predict)?
        {
            shard(ctx.state, &mut loaders, Stage::Predict)?;
            let counts = loaders::counts(&loaders, limit, "limit_predict_batches", usize::MAX)?;
            if keep {
                predictions.reserve(counts.iter().sum());
            }
            predict_batches(&mut ctx, &mut loaders, &counts, keep.then_some(&mut predictions))?;
        }
    }
    hooks::teardown(Stage::Predict, ctx.state, ctx.model, ctx.cbs, ctx.dm)?;
    Ok(predictions)
}

/// The predict loop's hooks around the batches of its loaders.
fn predict_batches<M, L, DM, D>(
    ctx: &mut RunCtx<'_, M, L, DM>,
    loaders: &mut D,
    counts: &[usize],
    predictions: Option<&mut Vec<M::Prediction>>,
) -> Result<()>
where
    M: LightningModule,
    L: CallbackList<M>,
    DM: DataModule<Batch = M::Batch>,
    D: Loaders<Batch = M::Batch>,
{
    let RunCtx { state, model, cbs, dm, .. } = ctx;
    state.set_training(false);
    dispatch::on_predict_model_eval(state, *model, *cbs)?;
    dispatch::on_predict_start(state, *model, *cbs)?;
    dispatch::on_predict_epoch_start(state, *model, *cbs)?;
    let mut batches = PredictBatches::<M, L, DM> { state, model, cbs, dm, counts, predictions };
    let read = loaders.each(&mut batches);
    state.dataloader_idx = None;
    read?;
    dispatch::on_predict_epoch_end(state, *model, *cbs)?;
    dispatch::on_predict_end(state, *model, *cbs)
}

/// The predict loop's batch hooks, for each of its loaders in turn.
struct PredictBatches<'r, M: LightningModule, L, DM> {
    state: &'r mut TrainerState,
    model: &'r mut M,
    cbs: &'r mut L,
    dm: &'r mut DM,
    counts: &'r [usize],
    /// `None`: `return_predictions(false)`, each prediction dropped after its hooks.
    predictions: Option<&'r mut Vec<M::Prediction>>,
}

impl<M, L, DM> EachLoader<M::Batch> for PredictBatches<'_, M, L, DM>
where
    M: LightningModule,
    L: CallbackList<M>,
    DM: DataModule<Batch = M::Batch>,
{
    fn loader<D: Loader<Batch = M::Batch>>(&mut self, dl: usize, loader: &mut D) -> Result<()> {
        let n = self.counts.get(dl).copied().unwrap_or(0);
        let Self { state, model, cbs, dm, predictions, .. } = self;
        state.dataloader_idx = (self.counts.len() > 1).then_some(dl);
        let device = state.device.clone();
        let mut batches = loader.batches(0).take(n).enumerate();
        loop {
            let Some((i, batch)) = profiler::next(*cbs, actions::PREDICT_NEXT, &mut batches) else { break };
            let batch = hooks::transfer(state, *model, *cbs, *dm, batch?, &device, dl)?;
            dispatch::on_predict_batch_start(state, *model, *cbs, &batch, i, dl)?;
            let p = dispatch::predict_step(state, *model, *cbs, &batch, i, dl)?;
            dispatch::on_predict_batch_end(state, *model, *cbs, &p, &batch, i, dl)?;
            if let Some(kept) = predictions.as_deref_mut() {
                kept.push(p);
            }
        }
        Ok(())
    }
}
