//! File-backed IDX data: images read from the uncompressed file when a sample is asked
//! for, so a data set larger than memory trains through `MapLoader` with workers.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::idx::{check_header, read_idx, Header, GZIP_MAGIC};
use super::mnist::{check_split, find, CLASSES, FILES};
use super::pixels::Pixels;
use super::Dataset;
use crate::{Error, Result};

/// An uncompressed IDX file of unsigned bytes, read one item (the bytes under the first
/// dimension: one image) at a time at its offset. Reads are positioned (`pread`), so
/// workers share one open file without a lock.
#[derive(Debug)]
pub struct IdxFile {
    file: File,
    path: PathBuf,
    dims: Vec<usize>,
    data_start: u64,
    item_bytes: usize,
}

impl IdxFile {
    /// Opens `path` and checks its header against its length. A gzipped file is refused:
    /// gzip cannot be read at an offset; unpack it once with `gunzip -k`.
    pub fn open(path: impl AsRef<Path>) -> Result<IdxFile> {
        let path = path.as_ref();
        let io = |e| Error::io(path, e);
        let file = File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let mut head = [0u8; 4];
        let got = read_at_most(&file, &mut head, 0).map_err(io)?;
        if head[..got].starts_with(&GZIP_MAGIC) {
            return Err(Error::bad_file(
                path,
                format!(
                    "is gzipped: a file-backed data set reads each image at its offset, which gzip does not allow; unpack it once with `gunzip -k {}`",
                    path.display()
                ),
            ));
        }
        let mut header = vec![0u8; 4 + 4 * usize::from(head[3]) * usize::from(got == 4)];
        let got = read_at_most(&file, &mut header, 0).map_err(io)?;
        header.truncate(got);
        let (dims, expected) = match check_header(&header, path)? {
            Header::Complete { dims, expected } => (dims, expected),
            Header::Short => return Err(Error::bad_file(path, format!("truncated IDX header ({got} bytes)"))),
        };
        let body = size.saturating_sub(header.len() as u64);
        if body != expected as u64 {
            let what = if body < expected as u64 { "truncated" } else { "trailing bytes" };
            return Err(Error::bad_file(
                path,
                format!("{what}: dimensions {dims:?} need {expected} data bytes, file has {body}"),
            ));
        }
        let item_bytes = dims[1..].iter().product();
        Ok(IdxFile { file, path: path.to_path_buf(), dims, data_start: header.len() as u64, item_bytes })
    }

    /// The dimensions its header declares.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// Items: the first dimension.
    pub fn len(&self) -> usize {
        self.dims[0]
    }

    /// Whether it holds no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of one item.
    pub fn item_bytes(&self) -> usize {
        self.item_bytes
    }

    /// Item `index`'s bytes (`index` < `len`).
    pub fn read_item(&self, index: usize) -> Result<Vec<u8>> {
        if index >= self.len() {
            return Err(Error::Data(format!(
                "{}: item {index} is past the {} it holds",
                self.path.display(),
                self.len()
            )));
        }
        let mut buf = vec![0u8; self.item_bytes];
        let offset = self.data_start + (index * self.item_bytes) as u64;
        read_exact_at(&self.file, &mut buf, offset).map_err(|e| Error::io(&self.path, e))?;
        Ok(buf)
    }
}

/// One split of an MNIST-format data set (MNIST, Fashion-MNIST, EMNIST, or your own IDX
/// files) read from disk as it trains: only the labels (one byte a sample) are held in
/// memory, each image is read from the uncompressed file when its sample is asked for.
/// Use it under [`super::MapLoader`] with `num_workers` so reads overlap training; the
/// batches are the same `(f32 images in [0, 1], u32 labels)` as
/// [`super::mnist::MnistSplit`]'s, value for value.
///
/// ```
/// use lightning::data::{idx, IdxDataset, MapLoader};
/// use lightning::Loader;
/// # fn main() -> lightning::Result<()> {
/// let dir = tempfile::tempdir()?;
/// let images = idx::IdxArray { dims: vec![3, 2, 2], data: (0..12).collect() };
/// let labels = idx::IdxArray { dims: vec![3], data: vec![7, 8, 9] };
/// std::fs::write(dir.path().join("train-images-idx3-ubyte"), idx::encode_idx(&images))?;
/// std::fs::write(dir.path().join("train-labels-idx1-ubyte"), idx::encode_idx(&labels))?;
///
/// let train = IdxDataset::train(dir.path())?;
/// let mut loader = MapLoader::new(train, 2)?.num_workers(1);
/// let (x, y) = loader.batches(0).next().unwrap()?;
/// assert_eq!(x.dims(), [2, 4]);
/// assert_eq!(y.to_vec1::<u32>()?, [7, 8]);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct IdxDataset {
    images: IdxFile,
    labels: Vec<u8>,
}

impl IdxDataset {
    /// The split in `images` and `labels` (labels below the 10 classes of MNIST).
    pub fn open(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<IdxDataset> {
        Self::open_with_classes(images, labels, CLASSES)
    }

    /// [`IdxDataset::open`] for a data set of `classes` classes: a label of `classes` or
    /// more is an error naming the file and the label's index.
    pub fn open_with_classes(images: impl AsRef<Path>, labels: impl AsRef<Path>, classes: usize) -> Result<IdxDataset> {
        let (image_path, label_path) = (images.as_ref(), labels.as_ref());
        let images = IdxFile::open(image_path)?;
        let labels = read_idx(label_path)?;
        check_split(images.dims(), image_path, &labels, label_path, classes)?;
        Ok(IdxDataset { images, labels: labels.data })
    }

    /// `train-images-idx3-ubyte` and `train-labels-idx1-ubyte` in `dir` (the labels may be
    /// gzipped; the images must not be).
    pub fn train(dir: impl AsRef<Path>) -> Result<IdxDataset> {
        Self::in_dir(dir.as_ref(), 0)
    }

    /// `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte` in `dir`.
    pub fn test(dir: impl AsRef<Path>) -> Result<IdxDataset> {
        Self::in_dir(dir.as_ref(), 2)
    }

    fn in_dir(dir: &Path, first: usize) -> Result<IdxDataset> {
        Self::open(find(dir, FILES[first])?, find(dir, FILES[first + 1])?)
    }

    /// The image dimensions (rows, cols).
    pub fn image_dims(&self) -> &[usize] {
        &self.images.dims()[1..]
    }
}

impl Dataset for IdxDataset {
    type Item = (Pixels, u32);
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn get(&self, index: usize) -> Result<(Pixels, u32)> {
        Ok((Pixels(self.images.read_item(index)?), u32::from(self.labels[index])))
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

#[cfg(not(any(unix, windows)))]
fn read_at(_: &File, _: &mut [u8], _: u64) -> std::io::Result<usize> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "positioned reads need Unix or Windows"))
}

/// Reads up to `buf.len()` bytes at `offset`; fewer only at the end of the file.
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match read_at(file, &mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    let n = read_at_most(file, buf, offset)?;
    if n < buf.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the file ended {n} bytes into an item of {}: was it truncated while training?", buf.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::idx::{encode_idx, IdxArray};

    fn write(dir: &Path, name: &str, a: &IdxArray) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, encode_idx(a)).unwrap();
        p
    }

    #[test]
    fn items_read_at_their_offsets_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let images = IdxArray { dims: vec![3, 2, 2], data: (0..12).collect() };
        let p = write(dir.path(), "img", &images);
        let f = IdxFile::open(&p).unwrap();
        assert_eq!((f.len(), f.item_bytes()), (3, 4));
        assert_eq!(f.read_item(2).unwrap(), [8, 9, 10, 11]);
        assert!(f.read_item(3).unwrap_err().to_string().contains("item 3 is past the 3"));

        let mut bytes = encode_idx(&images);
        bytes.pop();
        std::fs::write(&p, &bytes).unwrap();
        let e = IdxFile::open(&p).unwrap_err().to_string();
        assert!(e.contains("truncated: dimensions [3, 2, 2] need 12 data bytes, file has 11"), "{e}");

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &encode_idx(&images)).unwrap();
        std::fs::write(&p, gz.finish().unwrap()).unwrap();
        let e = IdxFile::open(&p).unwrap_err().to_string();
        assert!(e.contains("is gzipped") && e.contains("gunzip -k"), "{e}");
    }

    #[test]
    fn labels_are_checked_when_the_split_opens() {
        let dir = tempfile::tempdir().unwrap();
        let img = write(dir.path(), "img", &IdxArray { dims: vec![2, 1, 1], data: vec![0, 1] });
        let lab = write(dir.path(), "lab", &IdxArray { dims: vec![2], data: vec![3, 12] });
        let e = IdxDataset::open(&img, &lab).unwrap_err().to_string();
        assert!(e.ends_with("label 12 at index 1 is not below the 10 classes"), "{e}");
        let d = IdxDataset::open_with_classes(&img, &lab, 13).unwrap();
        assert_eq!(d.get(1).unwrap(), (Pixels(vec![1]), 12));
    }
}
