//! Choosing the device: Lightning's `accelerator` flag.

use candle_core::Device;

use crate::{Error, Result};

/// Where to train: Lightning's `accelerator="auto" | "cpu" | "cuda" | "mps"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Accelerator {
    /// CUDA, then Metal, then CPU: the first one compiled in and present.
    #[default]
    Auto,
    /// The CPU (Lightning's `"cpu"`).
    Cpu,
    /// A CUDA GPU by ordinal (needs the `cuda` feature).
    Cuda(usize),
    /// An Apple GPU by ordinal (needs the `metal` feature).
    Metal(usize),
}

impl Accelerator {
    /// Opens the device.
    pub fn device(self) -> Result<Device> {
        match self {
            Accelerator::Cpu => Ok(Device::Cpu),
            Accelerator::Cuda(i) => {
                if !cfg!(feature = "cuda") {
                    return Err(Error::Device(
                        "a CUDA device was asked for, but this build has no CUDA support: rebuild with `--features cuda`".into(),
                    ));
                }
                Device::new_cuda(i).map_err(|e| Error::Device(format!("cannot open CUDA device {i}: {e}")))
            }
            Accelerator::Metal(i) => {
                if !cfg!(feature = "metal") {
                    return Err(Error::Device(
                        "a Metal device was asked for, but this build has no Metal support: rebuild with `--features metal`".into(),
                    ));
                }
                Device::new_metal(i).map_err(|e| Error::Device(format!("cannot open Metal device {i}: {e}")))
            }
            Accelerator::Auto => {
                if cfg!(feature = "cuda") && candle_core::utils::cuda_is_available() {
                    if let Ok(d) = Device::new_cuda(0) {
                        return Ok(d);
                    }
                }
                if cfg!(feature = "metal") && candle_core::utils::metal_is_available() {
                    if let Ok(d) = Device::new_metal(0) {
                        return Ok(d);
                    }
                }
                Ok(Device::Cpu)
            }
        }
    }
}

/// Every parameter must live on the trainer's device. candle fixes a variable's device when
/// it is created (its storage cannot move while layers hold it), so the trainer cannot move
/// them as torch's `.to(device)` does: build the module on `trainer.device()` instead.
pub(crate) fn check_parameters(device: &Device, params: &candle_nn::VarMap) -> Result<()> {
    let data = params.data().lock().unwrap_or_else(|p| p.into_inner());
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let at = data[name].device();
        if !at.same_device(device) {
            return Err(Error::Device(format!(
                "parameter `{name}` is on {:?} but the trainer runs on {:?}: build the module's variables on `trainer.device()` (candle cannot move a variable once created)",
                at.location(),
                device.location()
            )));
        }
    }
    Ok(())
}

/// Lightning's spellings: `auto`, `cpu`, `cuda` (`gpu`), `cuda:1`, `metal` (`mps`), `metal:1`.
///
/// ```
/// use lightning::Accelerator;
/// assert_eq!("cuda:1".parse::<Accelerator>().unwrap(), Accelerator::Cuda(1));
/// assert_eq!(Accelerator::Metal(0).to_string(), "metal");
/// ```
impl std::str::FromStr for Accelerator {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (name, index) = match s.split_once(':') {
            Some((n, i)) => (n, Some(i)),
            None => (s, None),
        };
        let ordinal = || match index {
            None => Ok(0),
            Some(i) => i
                .parse::<usize>()
                .map_err(|_| Error::config("accelerator", format!("`{i}` in `{s}` is not a device ordinal"))),
        };
        match name {
            "auto" | "cpu" if index.is_some() => {
                Err(Error::config("accelerator", format!("`{s}`: only cuda and metal take an ordinal")))
            }
            "auto" => Ok(Accelerator::Auto),
            "cpu" => Ok(Accelerator::Cpu),
            "cuda" | "gpu" => Ok(Accelerator::Cuda(ordinal()?)),
            "metal" | "mps" => Ok(Accelerator::Metal(ordinal()?)),
            _ => Err(Error::config(
                "accelerator",
                format!("`{s}` is not one of auto, cpu, cuda, cuda:N, metal, metal:N"),
            )),
        }
    }
}

impl std::fmt::Display for Accelerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Accelerator::Auto => f.write_str("auto"),
            Accelerator::Cpu => f.write_str("cpu"),
            Accelerator::Cuda(0) => f.write_str("cuda"),
            Accelerator::Cuda(i) => write!(f, "cuda:{i}"),
            Accelerator::Metal(0) => f.write_str("metal"),
            Accelerator::Metal(i) => write!(f, "metal:{i}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_auto_open() {
        assert!(Accelerator::Cpu.device().unwrap().is_cpu());
        if !cfg!(any(feature = "cuda", feature = "metal")) {
            assert!(Accelerator::Auto.device().unwrap().is_cpu());
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_names_it() {
        let e = Accelerator::Cuda(0).device().unwrap_err().to_string();
        assert!(e.contains("--features cuda"), "{e}");
    }
}
