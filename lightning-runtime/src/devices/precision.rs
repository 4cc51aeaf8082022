//! Lightning's `precision` flag on candle.

use std::fmt;
use std::str::FromStr;

use candle_core::DType;

use crate::{Error, Result};

/// Numeric precision of training, as Lightning names it.
///
/// `*-true` trains parameters and inputs in that type: the trainer converts the module's
/// floating-point parameters at set-up (see [`crate::Relocate`]) and casts the
/// floating-point tensors of each batch.
///
/// `bf16-mixed` computes forward and backward in bf16 and applies the updates to f32
/// master weights, writing the rounded values back (Apex's "O2"): candle has no autocast, so
/// the module computes with bf16 copies of its f32 variables, which the optimizer keeps as its
/// master weights (small updates that bf16 would round away still add up). The loss goes
/// backward and to the logs in f32, checkpoints save the f32 master weights, and the module
/// holds them again when the run ends.
///
/// `16-mixed` does the same in f16, with dynamic loss scaling ([`crate::GradScaler`], torch's
/// `torch.amp.GradScaler`): the loss is multiplied by the scale before backward, the gradients
/// are divided by it (in f32) before clipping and the optimizer step, and a step whose
/// gradients hold an inf or NaN is skipped while the scale backs off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// `"64-true"`
    F64True,
    /// `"32-true"`
    F32True,
    /// `"16-true"`
    F16True,
    /// `"bf16-true"`
    Bf16True,
    /// `"bf16-mixed"` (alias `"bf16"`): bf16 compute, f32 master weights in the optimizer.
    Bf16Mixed,
    /// `"16-mixed"` (alias `"16"`): f16 compute, f32 master weights in the optimizer, and
    /// dynamic loss scaling.
    F16Mixed,
}

impl Precision {
    /// The dtype of the optimizer's master weights, for mixed precisions.
    pub fn master_dtype(self) -> Option<DType> {
        matches!(self, Precision::Bf16Mixed | Precision::F16Mixed).then_some(DType::F32)
    }

    /// Whether this precision scales the loss ([`crate::GradScaler`]): `16-mixed`.
    pub fn scales_loss(self) -> bool {
        self == Precision::F16Mixed
    }

    /// The dtype the module is built in and computes in.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F64True => DType::F64,
            Precision::F32True => DType::F32,
            Precision::F16True | Precision::F16Mixed => DType::F16,
            Precision::Bf16True | Precision::Bf16Mixed => DType::BF16,
        }
    }
}

/// `t` in f32 when it is in a half-precision dtype (f16, bf16), else `t` itself.
pub(crate) fn widen(t: &candle_core::Tensor) -> Result<candle_core::Tensor> {
    Ok(match t.dtype() {
        DType::F16 | DType::BF16 => t.to_dtype(DType::F32)?,
        _ => t.clone(),
    })
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F64True => "64-true",
            Precision::F32True => "32-true",
            Precision::F16True => "16-true",
            Precision::Bf16True => "bf16-true",
            Precision::Bf16Mixed => "bf16-mixed",
            Precision::F16Mixed => "16-mixed",
        })
    }
}

impl FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "64-true" | "64" => Precision::F64True,
            "32-true" | "32" => Precision::F32True,
            "16-true" => Precision::F16True,
            "bf16-true" => Precision::Bf16True,
            "bf16-mixed" | "bf16" => Precision::Bf16Mixed,
            "16-mixed" | "16" => Precision::F16Mixed,
            other => {
                return Err(Error::config(
                    "precision",
                    format!("unknown precision \"{other}\": use \"64-true\", \"32-true\", \"16-true\", \"bf16-true\", \"16-mixed\" or \"bf16-mixed\""),
                ))
            }
        })
    }
}
