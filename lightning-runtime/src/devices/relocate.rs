//! Moving a module's parameters to another device or dtype, as torch's `module.to(...)`.
//!
//! candle fixes a variable's device and dtype when it is created, and layers hold its
//! tensor. So the trainer makes new variables in the module's `VarMap` and rebinds every
//! field that holds the old ones: `#[lightning_module]` calls [`Relocate`] on each field
//! whose type implements it (tensors, variables, candle-nn's layers, and `Vec`, `Option`,
//! `Box`, arrays of them) and leaves the others alone. Write `#[derive(Relocate)]` on your
//! own layer types: it relocates every field, and a field that cannot relocate is a
//! compile error there.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, TensorId, Var};
use candle_nn::{Conv1d, Conv2d, Embedding, Linear, VarMap};

use crate::Result;

/// Where tensors go, and the new variable of each old one.
pub struct Relocation {
    device: Device,
    dtype: Option<DType>,
    vars: HashMap<TensorId, Var>,
}

impl Relocation {
    fn convert(&self, t: &Tensor) -> Result<Tensor> {
        let t = if t.device().same_device(&self.device) { t.clone() } else { t.to_device(&self.device)? };
        Ok(match self.dtype {
            Some(d) if t.dtype().is_float() && t.dtype() != d => t.to_dtype(d)?,
            _ => t,
        })
    }

    /// The tensor to use instead of `t`: its variable's replacement, or a converted copy.
    pub fn tensor(&self, t: &Tensor) -> Result<Tensor> {
        match self.vars.get(&t.id()) {
            Some(v) => Ok(v.as_tensor().clone()),
            None => self.convert(t),
        }
    }

    /// The variable to use instead of `v`.
    pub fn var(&self, v: &Var) -> Result<Var> {
        match self.vars.get(&v.id()) {
            Some(n) => Ok(n.clone()),
            None => Ok(Var::from_tensor(&self.convert(v.as_tensor())?)?),
        }
    }
}

/// A field that holds tensors the trainer can move. Derive it for a layer struct:
///
/// ```
/// use lightning::prelude::*;
/// use lightning::nn::{Linear, MaxPool2d};
///
/// #[derive(Relocate)]
/// struct Block {
///     fc: Linear,
///     pool: MaxPool2d,
///     width: usize,
///     #[relocate(skip)]
///     name: std::rc::Rc<str>,
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be moved to the trainer's device: it does not implement `Relocate`",
    label = "this field cannot relocate",
    note = "write `#[derive(Relocate)]` on a layer type of your own, or mark a field that holds no tensors `#[relocate(skip)]`"
)]
pub trait Relocate {
    /// Rebinds every tensor and variable held to its moved copy.
    fn relocate(&mut self, to: &Relocation) -> Result<()>;
}

/// Plain values hold no tensors: nothing to move.
macro_rules! stays {
    ($($t:ty),*) => {$(
        impl Relocate for $t {
            #[inline]
            fn relocate(&mut self, _: &Relocation) -> Result<()> {
                Ok(())
            }
        }
    )*};
}

stays!(bool, char, u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64, String, &'static str, ());

impl<T: ?Sized> Relocate for std::marker::PhantomData<T> {
    #[inline]
    fn relocate(&mut self, _: &Relocation) -> Result<()> {
        Ok(())
    }
}

/// A layer's device follows its tensors.
impl Relocate for Device {
    fn relocate(&mut self, to: &Relocation) -> Result<()> {
        *self = to.device.clone();
        Ok(())
    }
}

/// A layer's float dtype follows its tensors' (integer dtypes stay, as tensors' do).
impl Relocate for DType {
    fn relocate(&mut self, to: &Relocation) -> Result<()> {
        if let Some(d) = to.dtype.filter(|_| self.is_float()) {
            *self = d;
        }
        Ok(())
    }
}

impl Relocate for Tensor {
    fn relocate(&mut self, to: &Relocation) -> Result<()> {
        *self = to.tensor(self)?;
        Ok(())
    }
}

impl Relocate for Var {
    fn relocate(&mut self, to: &Relocation) -> Result<()> {
        *self = to.var(self)?;
        Ok(())
    }
}

impl Relocate for Linear {
    fn relocate(&mut self, to: &Relocation) -> Result<()> {
        let bias = self.bias().map(|b| to.tensor(b)).transpose()?;
        *self = Linear::new(to.tensor(self.weight())?, bias);
        Ok(())
    }
}

impl Relocate for Embedding {
    fn relocate(&mut self, to: &Relocation) -> Result<()> {
        let e = to.tensor(self.embeddings())?;
        let hidden = e.dim(1)?;
        *self = Embedding::new(e, hidden);
        Ok(())
    }
}

impl Relocate for Conv1d {
    fn relocate(&mut self, to: &Relocation) -> Result<()> {
        let bias = self.bias().map(|b| to.tensor(b)).transpose()?;
        *self = Conv1d::new(to.tensor(self.weight())?, bias, *self.config());
        Ok(())
    }
}

impl Relocate for Conv2d {
    fn relocate(&mut self, to: &Relocation) -> Result<()> {
        let bias = self.bias().map(|b| to.tensor(b)).transpose()?;
        *self = Conv2d::new(to.tensor(self.weight())?, bias, *self.config());
        Ok(())
    }
}

impl<T: Relocate> Relocate for Vec<T> {
    fn relocate(&mut self, to: &Relocation) -> Result<()> {
        self.iter_mut().try_for_each(|t| t.relocate(to))
    }
}

impl<T: Relocate, const N: usize> Relocate for [T; N] {
    fn relocate(&mut self, to: &Relocation) -> Result<()> {
        self.iter_mut().try_for_each(|t| t.relocate(to))
    }
}

impl<T: Relocate> Relocate for Option<T> {
    fn relocate(&mut self, to: &Relocation) -> Result<()> {
        self.iter_mut().try_for_each(|t| t.relocate(to))
    }
}

impl<T: Relocate + ?Sized> Relocate for Box<T> {
    fn relocate(&mut self, to: &Relocation) -> Result<()> {
        (**self).relocate(to)
    }
}

/// Replaces every variable of `vars` that is not on `device` in `dtype` by a moved copy,
/// and returns the relocation to rebind the fields with; `None` when nothing moves.
pub(crate) fn plan(vars: &VarMap, device: &Device, dtype: Option<DType>) -> Result<Option<Relocation>> {
    let mut data = vars.data().lock().unwrap_or_else(|p| p.into_inner());
    let fits =
        |v: &Var| v.device().same_device(device) && dtype.is_none_or(|d| !v.dtype().is_float() || v.dtype() == d);
    if data.values().all(fits) {
        return Ok(None);
    }
    let mut r = Relocation { device: device.clone(), dtype, vars: HashMap::new() };
    let mut moved = Vec::with_capacity(data.len());
    for (name, old) in data.iter() {
        let new = Var::from_tensor(&r.convert(old.as_tensor())?)?;
        moved.push((name.clone(), old.id(), new));
    }
    for (name, id, new) in moved {
        r.vars.insert(id, new.clone());
        data.insert(name, new);
    }
    Ok(Some(r))
}

/// Autoref specialization: `(&mut Field(&mut x)).relocate_field(r)` relocates `x` when its
/// type implements `Relocate`, and does nothing otherwise.
/// Puts the master weights back in the `VarMap` in place of the variables computed with
/// (keyed by their ids), and the relocation that rebinds the module's fields to them.
pub(crate) fn restore(vars: &VarMap, device: &Device, masters: &HashMap<TensorId, Var>) -> Option<Relocation> {
    if masters.is_empty() {
        return None;
    }
    let mut data = vars.data().lock().unwrap_or_else(|p| p.into_inner());
    let mut r = Relocation { device: device.clone(), dtype: None, vars: HashMap::new() };
    for v in data.values_mut() {
        if let Some(m) = masters.get(&v.id()) {
            r.vars.insert(v.id(), m.clone());
            *v = m.clone();
        }
    }
    Some(r)
}

#[doc(hidden)]
pub struct Field<'a, T>(pub &'a mut T);

#[doc(hidden)]
pub trait ViaRelocate {
    fn relocate_field(&mut self, to: &Relocation) -> Result<()>;
}

impl<T: Relocate> ViaRelocate for Field<'_, T> {
    #[inline]
    fn relocate_field(&mut self, to: &Relocation) -> Result<()> {
        self.0.relocate(to)
    }
}

#[doc(hidden)]
pub trait ViaNothing {
    fn relocate_field(&mut self, to: &Relocation) -> Result<()>;
}

impl<T> ViaNothing for &mut Field<'_, T> {
    #[inline]
    fn relocate_field(&mut self, _: &Relocation) -> Result<()> {
        Ok(())
    }
}
