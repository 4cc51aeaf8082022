//! Lightning's `precision` flag on candle.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device};
use candle_nn::VarMap;

use crate::{Error, Result};

/// Numeric precision of training, as Lightning names it.
///
/// `*-true` trains parameters and inputs in that type: build the module's variables with
/// that dtype (e.g. `seeded_var_builder(&vars, seed, DType::F16, device)`); the trainer
/// casts the floating-point tensors of each batch to it. candle has no autocast, so
/// `bf16-mixed` (f32 master weights, bf16 compute) is refused at `fit` rather than run
/// wrongly, and candle's CPU matmul has no bf16, so bf16 needs a GPU.
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
    /// `"bf16-mixed"`
    Bf16Mixed,
}

impl Precision {
    /// The dtype of parameters and inputs.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F64True => DType::F64,
            Precision::F32True | Precision::Bf16Mixed => DType::F32,
            Precision::F16True => DType::F16,
            Precision::Bf16True => DType::BF16,
        }
    }

    /// Refuses what candle cannot do on `device`, and parameters of another dtype.
    pub(crate) fn check(self, device: &Device, params: &VarMap) -> Result<()> {
        if self == Precision::Bf16Mixed {
            return Err(Error::config(
                "precision",
                "\"bf16-mixed\" needs autocast (f32 master weights, bf16 compute), which candle does not have: use \"bf16-true\" on a GPU, or \"32-true\"",
            ));
        }
        if self == Precision::Bf16True && device.is_cpu() {
            return Err(Error::config(
                "precision",
                "candle's CPU matmul has no bf16: use \"32-true\" or \"16-true\" on the CPU, \"bf16-true\" on a GPU",
            ));
        }
        let want = self.dtype();
        let data = params.data().lock().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for name in names {
            let have = data[name].dtype();
            if have != want {
                return Err(Error::config(
                    "precision",
                    format!("parameter `{name}` is {have:?}, but precision \"{self}\" trains {want:?}: build the module's variables with DType::{want:?}"),
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F64True => "64-true",
            Precision::F32True => "32-true",
            Precision::F16True => "16-true",
            Precision::Bf16True => "bf16-true",
            Precision::Bf16Mixed => "bf16-mixed",
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
            "bf16-mixed" => Precision::Bf16Mixed,
            other => {
                return Err(Error::config(
                    "precision",
                    format!("unknown precision \"{other}\": use \"64-true\", \"32-true\", \"16-true\", \"bf16-true\" or \"bf16-mixed\""),
                ))
            }
        })
    }
}
