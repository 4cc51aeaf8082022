//! Reading a callback's state back from a checkpoint: each value checked, and anything out
//! of range or of the wrong type an error naming the field, never a silent default.

use serde_json::Value;

use crate::{Error, Result};

/// `callbacks.<callback>.<key>` is `v`, which it should not be.
pub(crate) fn bad(callback: &str, key: &str, reason: String) -> Error {
    Error::CheckpointField { path: None, field: format!("callbacks.{callback}.{key}"), reason }
}

/// A whole, non-negative count no run reaches the end of; absent is `None`.
pub(crate) fn count(state: &Value, callback: &str, key: &str) -> Result<Option<usize>> {
    match state.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64().filter(|n| *n <= 1 << 53) {
            Some(n) => Ok(Some(n as usize)),
            None => Err(bad(callback, key, format!("is {v}, not a count (a whole number from 0 to 2^53)"))),
        },
    }
}

/// `value`, the field `key`, as a finite, non-negative number of seconds; absent is `None`.
pub(crate) fn seconds(value: Option<&Value>, callback: &str, key: &str) -> Result<Option<std::time::Duration>> {
    match value {
        None => Ok(None),
        Some(v) => match v.as_f64().and_then(|s| std::time::Duration::try_from_secs_f64(s).ok()) {
            Some(d) => Ok(Some(d)),
            None => Err(bad(callback, key, format!("is {v}, not a number of seconds (finite, at least 0)"))),
        },
    }
}
