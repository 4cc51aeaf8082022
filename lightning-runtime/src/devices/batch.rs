//! Moving batches to a device.

use candle_core::{DType, Device, Tensor};

use crate::Result;

/// A batch the trainer can move to its device (`transfer_batch_to_device`'s default).
///
/// Implemented for tensors, tuples, `Vec`, arrays and `Option` of batches. Implement it
/// for your own batch types, or override `transfer_batch_to_device`.
pub trait TransferBatch: Sized {
    /// Moves every tensor in the batch to `device` (free when it is already there).
    fn to_device(self, device: &Device) -> Result<Self>;
    /// Casts every floating-point tensor to `dtype`, leaving integer ones (labels) alone:
    /// what the `precision` flag does to inputs. The default leaves the batch as it is.
    fn cast_floats(self, dtype: DType) -> Result<Self> {
        let _ = dtype;
        Ok(self)
    }
    /// The number of samples, the default weight of values logged for this batch: the first
    /// dimension of the first tensor, as Lightning infers it. `None` when there is no tensor.
    fn batch_size(&self) -> Option<usize> {
        None
    }
}

impl TransferBatch for Tensor {
    #[inline]
    fn batch_size(&self) -> Option<usize> {
        self.dims().first().copied()
    }
    #[inline]
    fn to_device(self, device: &Device) -> Result<Self> {
        if self.device().same_device(device) {
            Ok(self)
        } else {
            Ok(Tensor::to_device(&self, device)?)
        }
    }
    #[inline]
    fn cast_floats(self, dtype: DType) -> Result<Self> {
        if self.dtype().is_float() && self.dtype() != dtype {
            Ok(self.to_dtype(dtype)?)
        } else {
            Ok(self)
        }
    }
}

impl TransferBatch for () {
    fn to_device(self, _: &Device) -> Result<Self> {
        Ok(())
    }
}

impl<T: TransferBatch> TransferBatch for Vec<T> {
    fn batch_size(&self) -> Option<usize> {
        self.iter().find_map(T::batch_size)
    }
    fn to_device(self, device: &Device) -> Result<Self> {
        self.into_iter().map(|t| t.to_device(device)).collect()
    }
    fn cast_floats(self, dtype: DType) -> Result<Self> {
        self.into_iter().map(|t| t.cast_floats(dtype)).collect()
    }
}

impl<T: TransferBatch> TransferBatch for Option<T> {
    fn batch_size(&self) -> Option<usize> {
        self.as_ref().and_then(T::batch_size)
    }
    fn to_device(self, device: &Device) -> Result<Self> {
        self.map(|t| t.to_device(device)).transpose()
    }
    fn cast_floats(self, dtype: DType) -> Result<Self> {
        self.map(|t| t.cast_floats(dtype)).transpose()
    }
}

impl<T: TransferBatch, const N: usize> TransferBatch for [T; N] {
    fn batch_size(&self) -> Option<usize> {
        self.iter().find_map(T::batch_size)
    }
    fn to_device(self, device: &Device) -> Result<Self> {
        let v: Vec<T> = self.into_iter().map(|t| t.to_device(device)).collect::<Result<_>>()?;
        Ok(v.try_into().unwrap_or_else(|_| unreachable!("same length")))
    }
    fn cast_floats(self, dtype: DType) -> Result<Self> {
        let v: Vec<T> = self.into_iter().map(|t| t.cast_floats(dtype)).collect::<Result<_>>()?;
        Ok(v.try_into().unwrap_or_else(|_| unreachable!("same length")))
    }
}

macro_rules! tuples {
    ($(($($t:ident $i:tt),+))*) => {$(
        impl<$($t: TransferBatch),+> TransferBatch for ($($t,)+) {
            #[inline]
            fn to_device(self, device: &Device) -> Result<Self> {
                Ok(($(self.$i.to_device(device)?,)+))
            }
            #[inline]
            fn cast_floats(self, dtype: DType) -> Result<Self> {
                Ok(($(self.$i.cast_floats(dtype)?,)+))
            }
            #[inline]
            fn batch_size(&self) -> Option<usize> {
                None$(.or_else(|| self.$i.batch_size()))+
            }
        }
    )*};
}

tuples! {
    (A 0)
    (A 0, B 1)
    (A 0, B 1, C 2)
    (A 0, B 1, C 2, D 3)
    (A 0, B 1, C 2, D 3, E 4)
    (A 0, B 1, C 2, D 3, E 4, F 5)
}
