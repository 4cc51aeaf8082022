//! Gradients of the trainable variables, accumulated across the batches of a window.

use std::collections::HashMap;

use candle_core::{backprop::GradStore, Tensor, TensorId, Var};

use crate::Result;

/// How `gradient_clip_val` clips.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GradientClipAlgorithm {
    /// Scale all gradients so their joint L2 norm is at most the value (torch's `clip_grad_norm_`).
    #[default]
    Norm,
    /// Clamp every element to `[-value, value]` (torch's `clip_grad_value_`).
    Value,
}

/// Lightning's spellings: `"norm"`, `"value"`.
impl std::str::FromStr for GradientClipAlgorithm {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "norm" => Ok(GradientClipAlgorithm::Norm),
            "value" => Ok(GradientClipAlgorithm::Value),
            other => {
                Err(crate::Error::config("gradient_clip_algorithm", format!("`{other}` is not one of norm, value")))
            }
        }
    }
}

impl std::fmt::Display for GradientClipAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GradientClipAlgorithm::Norm => "norm",
            GradientClipAlgorithm::Value => "value",
        })
    }
}

/// The gradients of a module's variables, summed over the batches of an accumulation
/// window. Only the variables' gradients are kept: candle's `GradStore` also holds every
/// intermediate tensor's, which are dropped here as soon as backward returns.
#[derive(Debug)]
pub struct Gradients {
    vars: Vec<Var>,
    index: HashMap<TensorId, usize>,
    grads: Vec<Option<Tensor>>,
    /// The dtype gradients are summed in, when not their own (f32 under `16-mixed`, as
    /// torch's f32 parameters hold f32 gradients: a scaled f16 sum would overflow sooner).
    sum_dtype: Option<candle_core::DType>,
}

impl Gradients {
    /// An empty buffer for these variables.
    pub fn new(vars: Vec<Var>) -> Self {
        let index = vars.iter().enumerate().map(|(i, v)| (v.id(), i)).collect();
        let grads = vec![None; vars.len()];
        Gradients { vars, index, grads, sum_dtype: None }
    }

    /// The same buffer, summing gradients in `dtype`.
    pub(crate) fn summed_in(mut self, dtype: Option<candle_core::DType>) -> Self {
        self.sum_dtype = dtype;
        self
    }

    /// Forgets all gradients (what `optimizer_zero_grad` does by default).
    pub fn clear(&mut self) {
        self.grads.iter_mut().for_each(|g| *g = None);
    }

    /// Adds the variables' gradients from a backward pass.
    pub fn accumulate(&mut self, mut store: GradStore) -> Result<()> {
        for (var, slot) in self.vars.iter().zip(self.grads.iter_mut()) {
            if let Some(mut g) = store.remove(var.as_tensor()) {
                if let Some(dtype) = self.sum_dtype {
                    g = g.to_dtype(dtype)?;
                }
                *slot = Some(match slot.take() {
                    Some(acc) => (acc + g)?.detach(),
                    None => g.detach(),
                });
            }
        }
        Ok(())
    }

    /// Drops the gradient of a variable this buffer tracks.
    pub(crate) fn remove(&mut self, var: &Tensor) {
        if let Some(&i) = self.index.get(&var.id()) {
            self.grads[i] = None;
        }
    }

    /// The gradient of a variable, if backward reached it.
    pub fn get(&self, var: &Tensor) -> Option<&Tensor> {
        self.index.get(&var.id()).and_then(|&i| self.grads[i].as_ref())
    }

    /// Replaces the gradient of a variable this buffer tracks.
    pub fn set(&mut self, var: &Tensor, grad: Tensor) -> bool {
        match self.index.get(&var.id()) {
            Some(&i) => {
                self.grads[i] = Some(grad);
                true
            }
            None => false,
        }
    }

    /// The tracked variables and their gradients.
    pub fn iter(&self) -> impl Iterator<Item = (&Var, Option<&Tensor>)> {
        self.vars.iter().zip(self.grads.iter().map(Option::as_ref))
    }

    /// Whether no gradient is stored.
    pub fn is_empty(&self) -> bool {
        self.grads.iter().all(Option::is_none)
    }

    /// The joint L2 norm of all gradients.
    pub fn norm(&self) -> Result<f64> {
        let mut sq = 0f64;
        for g in self.grads.iter().flatten() {
            sq += g.to_dtype(candle_core::DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
        }
        Ok(sq.sqrt())
    }

    /// Clips as torch does; `None` does nothing (`configure_gradient_clipping`'s default).
    pub fn clip(&mut self, value: Option<f64>, algorithm: GradientClipAlgorithm) -> Result<()> {
        let Some(value) = value else { return Ok(()) };
        match algorithm {
            GradientClipAlgorithm::Value => {
                for g in self.grads.iter_mut().flatten() {
                    *g = g.clamp(-value, value)?;
                }
            }
            GradientClipAlgorithm::Norm => {
                let total = self.norm()?;
                // torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1
                let coef = value / (total + 1e-6);
                if coef < 1.0 {
                    for g in self.grads.iter_mut().flatten() {
                        *g = g.affine(coef, 0.0)?;
                    }
                }
            }
        }
        Ok(())
    }
}
