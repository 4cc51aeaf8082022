//! What `fit` does before its first epoch: the optimizers with everything Lightning checks
//! and restores around `configure_optimizers`, and the loaders with the sanity check.

use candle_core::Var;

use super::optimization::Optimization;
use super::{schedulers, RunCtx};
use crate::data::loaders;
use crate::trainer::resume::Resume;
use crate::trainer::source::{self, RunLoaders, Which};
use crate::trainer::unused::UnusedGuard;
use crate::trainer::{dispatch, TrainerConfig};
use crate::{CallbackList, DataModule, Error, Gradients, LightningModule, Loaders, Optimizer, Optimizers, Result};

/// The trainable variables: the module's, sorted by name (a `VarMap`'s own order is not
/// stable). Every parameter an optimizer holds is one of them (`foreign_params::check`).
fn sorted_vars<M: LightningModule>(model: &M) -> Vec<Var> {
    let data = model.parameters().data().lock().unwrap_or_else(|p| p.into_inner());
    let mut named: Vec<(&String, &Var)> = data.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    named.into_iter().map(|(_, v)| v.clone()).collect()
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

/// `configure_optimizers`, then Lightning's checks on what it returned, the master weights
/// under mixed precision, the resumed states (all or none), the schedule's start rates, and
/// under DDP rank 0's parameters on every replica.
pub(crate) fn optimization<M, L, DM>(
    ctx: &mut RunCtx<'_, M, L, DM>,
    resume: Option<Resume>,
) -> Result<Optimization<M::Optim>>
where
    M: LightningModule,
    L: CallbackList<M>,
{
    let (cfg, state) = (ctx.cfg, &mut *ctx.state);
    let mut optim = dispatch::configure_optimizers(state, ctx.model, ctx.cbs)?;
    let plateau = schedulers::check(&mut optim)?;
    check_optimization::<M>(cfg, &optim)?;
    crate::trainer::foreign_params::check(ctx.model, &mut optim)?;
    if let Some(r) = &resume {
        r.restore_groups(&mut optim, ctx.model.parameters())?;
    }
    if let Some(dtype) = cfg.precision.and_then(|p| p.master_dtype()) {
        for i in 0..optim.count() {
            if let Some(o) = optim.get(i) {
                o.use_master_weights_from(dtype, &state.masters)?;
            }
        }
    }
    if let Some(r) = resume {
        // the weights, the optimizers' and the scheduler's states and the step counter, all or none
        r.apply(state, &mut optim)?;
    }
    // the frozen parameters' variables, now that they are final (moved, restored)
    state.frozen.resolve(ctx.model.parameters());
    schedulers::check_start(&mut optim)?;
    schedulers::apply_rates(state, &mut optim);
    let vars = sorted_vars(ctx.model);
    if let Some(world) = &state.world {
        // DDP: every replica starts from rank 0's parameters
        crate::dist::broadcast_parameters(world.as_ref(), &vars)?;
        // and rank 0's master weights under mixed precision, in the same order
        let masters: Vec<Var> = vars.iter().filter_map(|v| state.masters.get(&v.id()).cloned()).collect();
        crate::dist::broadcast_parameters(world.as_ref(), &masters)?;
    }
    let guard = UnusedGuard::new(cfg.allow_unused_parameters, optim.count());
    let clip = (cfg.gradient_clip_val, cfg.gradient_clip_algorithm);
    let automatic = M::AUTOMATIC_OPTIMIZATION;
    // scaled f16 gradients are summed in f32, as torch's f32 parameters hold them
    let sum_dtype = state.scaler.as_ref().map(|_| candle_core::DType::F32);
    let grads = Gradients::new(vars).summed_in(sum_dtype);
    Ok(Optimization { optim, grads, guard, plateau, automatic, clip })
}

/// The model summary; parameters no optimizer holds are frozen (Lightning's
/// "Non-trainable params").
pub(crate) fn print_summary<M: LightningModule>(model: &M, optim: &mut M::Optim) {
    let mut held = std::collections::HashSet::new();
    for i in 0..optim.count() {
        if let Some(o) = optim.get(i) {
            held.extend(o.named_parameters().into_iter().map(|(_, v)| v.id()));
        }
    }
    let all = held.is_empty();
    print!("{}", crate::trainer::summary::summarize_trainable(model, |v| all || held.contains(&v.id())));
}

/// The sanity check: `num_sanity_val_steps` validation batches before training (not after a
/// resume), with their own hooks; what they log is dropped. Returns the validation loader
/// it fetched, if it ran.
pub(crate) fn sanity_check<M, L, DM, V>(
    ctx: &mut RunCtx<'_, M, L, DM>,
    val: &mut Option<V>,
) -> Result<Option<RunLoaders<V, DM, M>>>
where
    M: LightningModule,
    L: CallbackList<M>,
    DM: DataModule<Batch = M::Batch>,
    V: Loaders<Batch = M::Batch>,
{
    let cfg = ctx.cfg;
    dispatch::on_sanity_check_start(ctx.state, ctx.model, ctx.cbs)?;
    let mut loaders = source::get_eval(val, ctx.state, ctx.model, ctx.cbs, ctx.dm, Which::Val)?;
    if let Some(vl) = &mut loaders {
        // `num_sanity_val_steps` per loader, as in Lightning
        let counts = loaders::counts(vl, cfg.limit_val_batches, "limit_val_batches", cfg.num_sanity_val_steps)?;
        if counts.iter().any(|&n| n > 0) {
            ctx.state.sanity_checking = true;
            super::evaluation::validation(ctx, vl, &counts, None)?;
            ctx.state.sanity_checking = false;
        }
    }
    dispatch::on_sanity_check_end(ctx.state, ctx.model, ctx.cbs)?;
    Ok(loaders)
}
