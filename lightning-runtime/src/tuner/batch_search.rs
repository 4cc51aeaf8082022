//! The batch-size searches of Lightning's `scale_batch_size` (`_run_power_scaling`,
//! `_run_binary_scaling`), over a trial function, so they can be tested without a trainer.

use crate::{Error, Result};

/// One trial of `scale_batch_size`: a batch size and how its few steps went.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// The batch size tried.
    pub batch_size: usize,
    /// `None` when it fit; else why not (out of memory, or the time budget).
    pub failure: Option<String>,
}

/// What a trial tells the search.
pub(crate) struct Outcome {
    /// `Err(why)`: too large.
    pub fits: std::result::Result<(), String>,
    /// One batch already holds the whole training set: growing further changes nothing
    /// (Lightning compares the batch size with the dataset's length).
    pub covers_dataset: bool,
}

/// Doubles from `init` until a trial fails, then keeps the last size that fit; a failure
/// before any success halves instead. Lightning's power mode, except that when
/// `max_trials` runs out it returns the last size that fit, not the next, untested one.
pub(crate) fn power(init: usize, max_trials: usize, mut trial: impl FnMut(usize) -> Result<Outcome>) -> Result<usize> {
    let (mut size, mut last_ok) = (init, None);
    for _ in 0..max_trials {
        let out = trial(size)?;
        match out.fits {
            Ok(()) => {
                last_ok = Some(size);
                if out.covers_dataset {
                    break;
                }
                size *= 2;
            }
            Err(why) => {
                if let Some(ok) = last_ok {
                    return Ok(ok);
                }
                size /= 2;
                if size == 0 {
                    return Err(none_fits(&why));
                }
            }
        }
    }
    last_ok.ok_or_else(|| Error::Tuner(format!("scale_batch_size: no batch size fit in {max_trials} trials")))
}

/// Doubles until a trial fails, then bisects between the last size that fit and the one
/// that failed (Lightning's binsearch mode; `max_trials` counts the trials that fit).
pub(crate) fn binsearch(
    init: usize,
    max_trials: usize,
    mut trial: impl FnMut(usize) -> Result<Outcome>,
) -> Result<usize> {
    let (mut size, mut low, mut high) = (init, 1, None::<usize>);
    let (mut fitted, mut last_why) = (0, None);
    loop {
        let out = trial(size)?;
        match out.fits {
            Ok(()) => {
                fitted += 1;
                if fitted > max_trials {
                    break;
                }
                low = size;
                match high {
                    Some(h) if h - low <= 1 => break,
                    Some(h) => size = (h + low) / 2,
                    None if out.covers_dataset => break,
                    None => size *= 2,
                }
            }
            Err(why) => {
                let failed = size;
                high = Some(failed);
                size = (failed + low) / 2;
                last_why = Some(why);
                if failed.saturating_sub(low) <= 1 {
                    break;
                }
            }
        }
    }
    if fitted == 0 {
        return Err(none_fits(last_why.as_deref().unwrap_or("no trial fit")));
    }
    Ok(size)
}

fn none_fits(why: &str) -> Error {
    Error::Tuner(format!(
        "scale_batch_size: no batch size fits, down to 1 ({why}); free memory or raise the time budget"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trial that fits up to `limit`, recording the sizes tried.
    fn up_to(limit: usize, tried: &mut Vec<usize>) -> impl FnMut(usize) -> Result<Outcome> + '_ {
        move |bs| {
            tried.push(bs);
            Ok(Outcome { fits: if bs <= limit { Ok(()) } else { Err("too large".into()) }, covers_dataset: false })
        }
    }

    #[test]
    fn power_doubles_until_failure() {
        let mut tried = Vec::new();
        assert_eq!(power(2, 25, up_to(20, &mut tried)).unwrap(), 16);
        assert_eq!(tried, [2, 4, 8, 16, 32]);
        let mut tried = Vec::new();
        assert_eq!(power(64, 25, up_to(20, &mut tried)).unwrap(), 16, "halves after a first failure");
        assert_eq!(tried, [64, 32, 16, 32]);
        assert_eq!(power(2, 3, up_to(1000, &mut Vec::new())).unwrap(), 8, "the last size that fit");
        assert!(power(2, 25, up_to(0, &mut Vec::new())).is_err());
    }

    #[test]
    fn binsearch_bisects_after_the_failure() {
        let mut tried = Vec::new();
        assert_eq!(binsearch(2, 25, up_to(20, &mut tried)).unwrap(), 20);
        assert_eq!(tried, [2, 4, 8, 16, 32, 24, 20, 22, 21]);
        let mut tried = Vec::new();
        assert_eq!(binsearch(2, 25, up_to(16, &mut tried)).unwrap(), 16);
        assert_eq!(tried, [2, 4, 8, 16, 32, 24, 20, 18, 17]);
        assert!(binsearch(2, 25, up_to(0, &mut Vec::new())).is_err());
    }

    #[test]
    fn growth_stops_when_one_batch_holds_the_dataset() {
        let mut tried = Vec::new();
        let trial = |bs| {
            tried.push(bs);
            Ok(Outcome { fits: Ok(()), covers_dataset: bs >= 8 })
        };
        assert_eq!(power(2, 25, trial).unwrap(), 8);
        assert_eq!(tried, [2, 4, 8]);
    }
}
