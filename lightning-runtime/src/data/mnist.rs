//! MNIST-format data sets (MNIST, Fashion-MNIST) from IDX files or bytes.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::idx::{parse_idx, read_idx, IdxArray};
use super::pixels::{to_unit_f32, Pixels};
use super::DataLoader;
use crate::{Error, Result};

/// One split of an MNIST-format data set, in memory at one byte a pixel.
///
/// The pixels stay u8 as the file stores them; they become f32 in [0, 1] (`b / 255`) a
/// batch at a time, in [`MnistSplit::loader`] or as a [`super::Dataset`] under
/// `MapLoader`, so the split never holds a 4-byte copy. [`MnistSplit::images`] makes that
/// copy of the whole split, for small sets and evaluation.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use lightning::data::mnist::MnistSplit;
/// use lightning::Loader;
/// # fn main() -> lightning::Result<()> {
/// let pixels = Tensor::new(&[[0u8, 255], [51, 102], [1, 2]], &Device::Cpu)?;
/// let labels = Tensor::new(&[3u32, 1, 4], &Device::Cpu)?;
/// let split = MnistSplit::new(pixels, labels)?;
/// let mut loader = split.narrow(0, 2)?.loader(2)?;
/// let (x, y) = loader.batches(0).next().unwrap()?;
/// assert_eq!(x.to_vec2::<f32>()?, [[0.0, 1.0], [0.2, 0.4]]);
/// assert_eq!(y.to_vec1::<u32>()?, [3, 1]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MnistSplit {
    /// (N, rows·cols) pixels as the file stores them: u8, 0 to 255.
    pub pixels: Tensor,
    /// (N,) class indices, u32.
    pub labels: Tensor,
}

impl MnistSplit {
    /// A split from u8 pixels (N, rows·cols) and u32 labels (N).
    pub fn new(pixels: Tensor, labels: Tensor) -> Result<MnistSplit> {
        let (n, m) = (pixels.dims().first().copied(), labels.dims().first().copied());
        if pixels.dtype() != DType::U8 || pixels.rank() != 2 || labels.dtype() != DType::U32 || labels.rank() != 1 {
            return Err(Error::Data(format!(
                "an MnistSplit is u8 pixels (N, rows·cols) and u32 labels (N), not {:?} {:?} and {:?} {:?}",
                pixels.dtype(),
                pixels.dims(),
                labels.dtype(),
                labels.dims()
            )));
        }
        if n != m {
            return Err(Error::Data(format!("{n:?} images but {m:?} labels")));
        }
        Ok(MnistSplit { pixels, labels })
    }

    /// Samples in the split.
    pub fn len(&self) -> usize {
        self.labels.dim(0).unwrap_or(0)
    }

    /// Whether the split has no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every image as f32 in [0, 1], (N, rows·cols): a 4-byte-a-pixel copy of the split.
    pub fn images(&self) -> Result<Tensor> {
        to_unit_f32(&self.pixels)
    }

    /// Samples `start..start + len`, sharing the memory.
    pub fn narrow(&self, start: usize, len: usize) -> Result<MnistSplit> {
        Ok(MnistSplit { pixels: self.pixels.narrow(0, start, len)?, labels: self.labels.narrow(0, start, len)? })
    }

    /// A [`DataLoader`] of `(f32 images, u32 labels)` batches, each converted from the u8
    /// pixels as it is gathered.
    pub fn loader(&self, batch_size: usize) -> Result<DataLoader> {
        DataLoader::new(self.pixels.clone(), self.labels.clone(), batch_size)?.scale_u8()
    }
}

/// Training and test splits.
#[derive(Debug, Clone)]
pub struct Mnist {
    /// The `train-*` files' images and labels (60,000 in MNIST).
    pub train: MnistSplit,
    /// The `t10k-*` files' images and labels (10,000 in MNIST).
    pub test: MnistSplit,
}

/// The four standard file stems.
pub const FILES: [&str; 4] =
    ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

pub(crate) fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [stem.to_string(), format!("{stem}.gz")] {
        let p = dir.join(&name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::io(
        dir.join(stem),
        std::io::Error::new(std::io::ErrorKind::NotFound, format!("missing `{stem}` or `{stem}.gz`")),
    ))
}

/// The classes of MNIST and Fashion-MNIST: labels are 0 to 9.
pub const CLASSES: usize = 10;

/// Builds a split from an image array and a label array, checking that they agree and that
/// every label is below [`CLASSES`].
pub fn split_from_arrays(
    images: IdxArray,
    image_origin: &Path,
    labels: IdxArray,
    label_origin: &Path,
) -> Result<MnistSplit> {
    split_with_classes(images, image_origin, labels, label_origin, CLASSES)
}

/// [`split_from_arrays`] for a data set of `classes` classes (EMNIST's splits, ...): a label
/// of `classes` or more is an error naming the file and the label's index, found when the
/// split loads rather than as an out-of-range gather in the middle of training.
pub fn split_with_classes(
    images: IdxArray,
    image_origin: &Path,
    labels: IdxArray,
    label_origin: &Path,
    classes: usize,
) -> Result<MnistSplit> {
    check_split(&images.dims, image_origin, &labels, label_origin, classes)?;
    let n = images.dims[0];
    let pixels = Tensor::from_vec(images.data, (n, images.dims[1] * images.dims[2]), &Device::Cpu)?;
    let labels = Tensor::from_vec(labels.data.iter().map(|&l| u32::from(l)).collect::<Vec<_>>(), n, &Device::Cpu)?;
    Ok(MnistSplit { pixels, labels })
}

/// Checks that an image array's dimensions (N, rows, cols) and a label array agree and that
/// every label is below `classes`.
pub(crate) fn check_split(
    image_dims: &[usize],
    image_origin: &Path,
    labels: &IdxArray,
    label_origin: &Path,
    classes: usize,
) -> Result<()> {
    if image_dims.len() != 3 {
        return Err(Error::bad_file(
            image_origin,
            format!("expected 3 dimensions (images, rows, cols), found {:?}", image_dims),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(Error::bad_file(label_origin, format!("expected 1 dimension (labels), found {:?}", labels.dims)));
    }
    let n = image_dims[0];
    if labels.dims[0] != n {
        return Err(Error::bad_file(
            label_origin,
            format!("has {} labels but {} has {n} images", labels.dims[0], image_origin.display()),
        ));
    }
    if let Some((i, l)) = labels.data.iter().enumerate().find(|(_, &l)| usize::from(l) >= classes) {
        return Err(Error::bad_file(
            label_origin,
            format!("label {l} at index {i} is not below the {classes} classes"),
        ));
    }
    Ok(())
}

/// Reads `train-*` and `t10k-*` IDX files (plain or `.gz`) from a directory.
pub fn load_dir(dir: &Path) -> Result<Mnist> {
    let paths: Vec<PathBuf> = FILES.iter().map(|s| find(dir, s)).collect::<Result<_>>()?;
    // each file is read straight into the buffer the split keeps: 1 byte a pixel at the
    // peak as after it (a gzipped file's inflater adds its window, not a copy)
    let split =
        |i: usize, l: usize| split_from_arrays(read_idx(&paths[i])?, &paths[i], read_idx(&paths[l])?, &paths[l]);
    let train = split(0, 1)?;
    let test = split(2, 3)?;
    Ok(Mnist { train, test })
}

/// Builds the data set from in-memory IDX files (e.g. `include_bytes!`), in `FILES` order.
pub fn from_bytes(files: [&[u8]; 4], origin: &str) -> Result<Mnist> {
    let names: Vec<PathBuf> = FILES.iter().map(|s| Path::new(origin).join(s)).collect();
    let arrays: Vec<IdxArray> = files.iter().zip(&names).map(|(b, n)| parse_idx(b, n)).collect::<Result<_>>()?;
    let mut a = arrays.into_iter();
    let mut next = || a.next().unwrap_or_else(|| unreachable!("four files"));
    let train = split_from_arrays(next(), &names[0], next(), &names[1])?;
    let test = split_from_arrays(next(), &names[2], next(), &names[3])?;
    Ok(Mnist { train, test })
}

/// A split is a map-style [`super::Dataset`] of `(pixels, label)` samples, for `MapLoader`.
impl super::Dataset for MnistSplit {
    type Item = (Pixels, u32);
    fn len(&self) -> usize {
        MnistSplit::len(self)
    }
    fn get(&self, index: usize) -> Result<(Pixels, u32)> {
        Ok((Pixels(self.pixels.get(index)?.to_vec1::<u8>()?), self.labels.get(index)?.to_scalar::<u32>()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::idx::encode_idx;

    /// Writes a directory of four IDX files: `n` blank 2×2 images per split, labels `0..n`
    /// except `bad` at index `at` of the file `stem`.
    fn write_dir(dir: &Path, n: usize, (stem, at, bad): (&str, usize, u8)) {
        for (i, name) in FILES.iter().enumerate() {
            let a = if i % 2 == 0 {
                IdxArray { dims: vec![n, 2, 2], data: vec![0; n * 4] }
            } else {
                let mut data: Vec<u8> = (0..n).map(|l| (l % CLASSES) as u8).collect();
                if *name == stem {
                    data[at] = bad;
                }
                IdxArray { dims: vec![n], data }
            };
            std::fs::write(dir.join(name), encode_idx(&a)).unwrap();
        }
    }

    #[test]
    fn a_label_past_the_classes_names_its_file_and_index() {
        for stem in [FILES[1], FILES[3]] {
            let dir = tempfile::tempdir().unwrap();
            write_dir(dir.path(), 20, (stem, 17, 200));
            let e = load_dir(dir.path()).unwrap_err().to_string();
            let file = dir.path().join(stem);
            assert_eq!(e, format!("{}: label 200 at index 17 is not below the 10 classes", file.display()));
        }
        let dir = tempfile::tempdir().unwrap();
        write_dir(dir.path(), 20, (FILES[1], 3, 9));
        assert_eq!(load_dir(dir.path()).unwrap().train.labels.dims(), &[20]);
    }
}
