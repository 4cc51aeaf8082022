//! Pretrained weights into a module by name: torch's `load_state_dict(strict=False)`, with
//! a prefix map for a backbone saved under other names.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Tensor, Var};
use candle_nn::VarMap;

use crate::{Error, Result};

/// What [`load_pretrained`] did: torch's `_IncompatibleKeys`, plus what was loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Module variables set from the file, by their module name, sorted.
    pub loaded: Vec<String>,
    /// Module variables the file had nothing for (left as they were), sorted.
    pub missing: Vec<String>,
    /// File tensors (by their name in the file) that map to no module variable, sorted.
    pub unexpected: Vec<String>,
}

/// A file tensor whose shape is not its module variable's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// The tensor's name in the file.
    pub key: String,
    /// The module variable it maps to.
    pub name: String,
    /// The file tensor's shape.
    pub file: Vec<usize>,
    /// The module variable's shape.
    pub module: Vec<usize>,
}

impl std::fmt::Display for ShapeMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {:?} → `{}` {:?}", self.key, self.file, self.name, self.module)
    }
}

/// The module name of file key `key`: the first `(from, to)` of `map` whose `from` starts it
/// has `from` replaced by `to`; other keys keep their name.
fn mapped(key: &str, map: &[(&str, &str)]) -> String {
    map.iter()
        .find_map(|(from, to)| key.strip_prefix(from).map(|rest| format!("{to}{rest}")))
        .unwrap_or_else(|| key.to_string())
}

/// Loads the tensors of a safetensors file into `vars` by name, each file key renamed by the
/// first prefix of `map` that starts it (`[("features.", "backbone.")]`), converted to the
/// variable's dtype and device. Like torch's `load_state_dict(strict=False)`, names on one
/// side only are reported, not errors; shape mismatches are an error
/// ([`Error::PretrainedShapes`], listing them all) and nothing is set then.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use candle_nn::{VarBuilder, VarMap};
/// # fn main() -> lightning::Result<()> {
/// let dir = std::env::temp_dir().join(format!("pretrained-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let file = dir.join("backbone.safetensors");
/// let w = Tensor::ones((2, 3), DType::F32, &Device::Cpu)?;
/// candle_core::safetensors::save(&[("features.fc.weight", w)].into_iter().collect(), &file)?;
///
/// let vars = VarMap::new();
/// let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
/// let _fc = candle_nn::linear_no_bias(3, 2, vb.pp("backbone.fc"))?;
/// let _head = candle_nn::linear_no_bias(2, 1, vb.pp("head"))?;
/// let report = lightning::finetune::load_pretrained(&vars, &file, &[("features.", "backbone.")])?;
/// assert_eq!(report.loaded, ["backbone.fc.weight"]);
/// assert_eq!(report.missing, ["head.weight"]);
/// assert!(report.unexpected.is_empty());
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub fn load_pretrained(vars: &VarMap, path: impl AsRef<Path>, map: &[(&str, &str)]) -> Result<LoadReport> {
    let path = path.as_ref();
    if !path.is_file() {
        return Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")));
    }
    let tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .map_err(|e| Error::bad_file(path, format!("not a safetensors file: {e}")))?;
    let data = vars.data().lock().unwrap_or_else(|p| p.into_inner());
    let mut report = LoadReport::default();
    let mut mismatches = Vec::new();
    let mut sets: BTreeMap<String, (&str, Var, &Tensor)> = BTreeMap::new();
    let mut keys: Vec<&String> = tensors.keys().collect();
    keys.sort();
    for key in keys {
        let name = mapped(key, map);
        let t = &tensors[key];
        let Some(var) = data.get(&name) else {
            report.unexpected.push(key.clone());
            continue;
        };
        if t.dims() != var.dims() {
            let (file, module) = (t.dims().to_vec(), var.dims().to_vec());
            mismatches.push(ShapeMismatch { key: key.clone(), name, file, module });
            continue;
        }
        if let Some((other, _, _)) = sets.get(&name) {
            return Err(Error::bad_file(
                path,
                format!("`{other}` and `{key}` both map to `{name}`: fix the prefix map"),
            ));
        }
        sets.insert(name, (key.as_str(), var.clone(), t));
    }
    if !mismatches.is_empty() {
        return Err(Error::PretrainedShapes { path: path.to_path_buf(), mismatches });
    }
    // converted first, set after: a failed conversion changes nothing
    let values = sets
        .iter()
        .map(|(_, (_, var, t))| Ok(t.to_device(var.device())?.to_dtype(var.dtype())?))
        .collect::<Result<Vec<Tensor>>>()?;
    for ((name, (_, var, _)), value) in sets.iter().zip(values) {
        var.set(&value)?;
        report.loaded.push(name.clone());
    }
    report.missing = data.keys().filter(|n| !sets.contains_key(*n)).cloned().collect();
    report.missing.sort();
    if report.loaded.is_empty() && !tensors.is_empty() {
        // torch's strict=False loads nothing without a word: a prefix typo would fine-tune
        // from random weights
        let file_name = report.unexpected.first().map_or("", String::as_str);
        let module_name = report.missing.first().map_or("", String::as_str);
        crate::dist::rank_zero_warn(format_args!(
            "load_pretrained: none of the {} tensors of {} matched a parameter of the module (the file has `{file_name}`, \
             the module `{module_name}`): check the prefix map {map:?}",
            tensors.len(),
            path.display()
        ));
    }
    Ok(report)
}
