//! Lightning's `trainer.estimated_stepping_batches`: the optimizer steps `fit` will take,
//! known before `configure_optimizers` so that schedulers can size themselves.

use super::{dispatch, Limit, TrainerConfig};

/// The estimate from the flags and the training loader's batches per rank (`None`: the
/// loader is not known yet; `usize::MAX`: a stream of unknown length). `Err` says why
/// there is none.
pub(crate) fn stepping_batches(
    cfg: &TrainerConfig,
    accumulate: usize,
    loader_len: Option<usize>,
) -> std::result::Result<usize, String> {
    // Lightning: without an epoch limit the run is bounded by max_steps alone
    let Some(max_epochs) = cfg.effective_max_epochs() else {
        return Ok(cfg.max_steps.unwrap_or(usize::MAX));
    };
    let Some(len) = loader_len else {
        return Err(concat!(
            "the training loader comes from `",
            dispatch::hook_name!(train_dataloader),
            "` or the datamodule and is not fetched yet: read `estimated_stepping_batches` in `",
            dispatch::hook_name!(configure_optimizers),
            "` itself (`fit` then fetches the loader first, as Lightning does), pass the loader to `fit` as `Data::loader(..)`, \
             or bound the run by `max_steps` alone"
        )
        .into());
    };
    let per_epoch = if len == usize::MAX {
        match (cfg.limit_train_batches, cfg.max_steps) {
            (Limit::Batches(n), _) => n,
            (_, Some(steps)) => return Ok(steps),
            _ => {
                return Err("the training loader's length is unknown (a stream) and nothing bounds an epoch: \
                            set `limit_train_batches(n)` or `max_steps`"
                    .into())
            }
        }
    } else {
        cfg.limit_train_batches.apply(len, "limit_train_batches").map_err(|e| e.to_string())?
    };
    let steps = per_epoch.div_ceil(accumulate.max(1)).saturating_mul(max_epochs.max(1));
    Ok(cfg.max_steps.map_or(steps, |m| steps.min(m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(f: impl FnOnce(&mut TrainerConfig)) -> TrainerConfig {
        let mut c = TrainerConfig::default();
        f(&mut c);
        c
    }

    #[test]
    fn lightning_arithmetic() {
        let c = cfg(|c| c.max_epochs = Some(3));
        assert_eq!(stepping_batches(&c, 1, Some(10)), Ok(30));
        // ceil(10 / 4) = 3 steps an epoch, as Lightning counts the short last window
        assert_eq!(stepping_batches(&c, 4, Some(10)), Ok(9));
        let c = cfg(|c| (c.max_epochs, c.limit_train_batches) = (Some(2), Limit::Fraction(0.5)));
        assert_eq!(stepping_batches(&c, 1, Some(10)), Ok(10));
        let c = cfg(|c| (c.max_epochs, c.max_steps) = (Some(5), Some(7)));
        assert_eq!(stepping_batches(&c, 1, Some(10)), Ok(7));
        // max_steps alone: no loader needed
        let c = cfg(|c| c.max_steps = Some(40));
        assert_eq!(stepping_batches(&c, 1, None), Ok(40));
        // neither: Lightning's 1000 epochs
        assert_eq!(stepping_batches(&TrainerConfig::default(), 1, Some(2)), Ok(2000));
    }

    #[test]
    fn unknown_lengths_say_why() {
        let c = cfg(|c| c.max_epochs = Some(3));
        assert!(stepping_batches(&c, 1, None).unwrap_err().contains("Data::loader"));
        assert!(stepping_batches(&c, 1, Some(usize::MAX)).unwrap_err().contains("unknown"));
        let c = cfg(|c| (c.max_epochs, c.limit_train_batches) = (Some(3), Limit::Batches(4)));
        assert_eq!(stepping_batches(&c, 2, Some(usize::MAX)), Ok(6));
    }
}
