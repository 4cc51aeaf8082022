//! u8 pixels, kept as bytes (one a pixel) and scaled to f32 in [0, 1] only when a batch
//! is made: the data set never holds the 4-byte copy.

use candle_core::{DType, Device, Tensor};

use super::Collate;
use crate::{Error, Result};

/// One sample's pixels as an IDX file stores them, u8 0 to 255. A batch of them collates
/// to an f32 tensor (N, pixels) of `b / 255`, the values MNIST-format sets train on.
///
/// ```
/// use lightning::data::{Collate, Pixels};
/// # fn main() -> lightning::Result<()> {
/// let batch = Pixels::collate(vec![Pixels(vec![0, 255]), Pixels(vec![51, 102])])?;
/// assert_eq!(batch.to_vec2::<f32>()?, [[0.0, 1.0], [0.2, 0.4]]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixels(pub Vec<u8>);

/// A pixel byte as the f32 the model sees.
#[inline]
pub fn scale(b: u8) -> f32 {
    f32::from(b) / 255.0
}

impl Collate for Pixels {
    type Batch = Tensor;
    fn collate(items: Vec<Pixels>) -> Result<Tensor> {
        let width = items.first().map_or(0, |p| p.0.len());
        let mut out = Vec::with_capacity(items.len() * width);
        for (i, p) in items.iter().enumerate() {
            if p.0.len() != width {
                return Err(Error::Data(format!(
                    "sample {i} of a batch has {} pixels and the first has {width}: the images of a batch must have one size",
                    p.0.len()
                )));
            }
            out.extend(p.0.iter().map(|&b| scale(b)));
        }
        Ok(Tensor::from_vec(out, (items.len(), width), &Device::Cpu)?)
    }
}

/// A u8 tensor's values as f32 `b / 255`, same shape and device.
pub fn to_unit_f32(t: &Tensor) -> Result<Tensor> {
    if t.dtype() != DType::U8 {
        return Err(Error::Data(format!("expected u8 pixels, found a {:?} tensor", t.dtype())));
    }
    let bytes = t.flatten_all()?.to_vec1::<u8>()?;
    let values: Vec<f32> = bytes.iter().map(|&b| scale(b)).collect();
    Ok(Tensor::from_vec(values, t.shape(), t.device())?)
}
