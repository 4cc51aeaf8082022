//! Peak memory and speed of the MNIST-format data sets: one epoch of shuffled batches of
//! 256 (gathered and converted to f32, no model) from N Fashion-MNIST-sized images.
//!
//! Peak RSS is per process, so each variant runs alone:
//!
//! ```text
//! cargo bench --bench data_memory -- write /tmp/idx 600000   # synthetic IDX files
//! cargo bench --bench data_memory -- u8 /tmp/idx             # MnistSplit: u8 pixels in memory
//! cargo bench --bench data_memory -- f32 /tmp/idx            # the old layout: an f32 copy of every pixel
//! cargo bench --bench data_memory -- file /tmp/idx 1         # IdxDataset under MapLoader, 1 worker
//! ```
//! `scripts/bench/data_memory.py` does the same with numpy, for comparison.

use std::path::Path;
use std::time::Instant;

use candle_core::Tensor;
use lightning::data::{idx, mnist, IdxDataset, MapLoader};
use lightning::{DataLoader, Loader};

const BATCH: usize = 256;

fn peak_rss_mib() -> f64 {
    // SAFETY: rusage is plain integers and timevals, for which all-zero bytes are valid
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    u.ru_maxrss as f64 / 1024.0
}

/// Writes `n` 28×28 training images (a deterministic pattern, not compressible to nothing)
/// with labels, and 10 test images, as uncompressed IDX files.
fn write(dir: &Path, n: usize) -> lightning::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut state = 0x2545_f491_u32;
    let mut byte = || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state >> 24) as u8
    };
    for (stem, count) in [("train", n), ("t10k", 10)] {
        let images = idx::IdxArray { dims: vec![count, 28, 28], data: (0..count * 784).map(|_| byte()).collect() };
        let labels = idx::IdxArray { dims: vec![count], data: (0..count).map(|i| (i % 10) as u8).collect() };
        std::fs::write(dir.join(format!("{stem}-images-idx3-ubyte")), idx::encode_idx(&images))?;
        std::fs::write(dir.join(format!("{stem}-labels-idx1-ubyte")), idx::encode_idx(&labels))?;
    }
    Ok(())
}

/// One shuffled epoch; returns (samples, a checksum so nothing is optimised away).
fn epoch<L: Loader<Batch = (Tensor, Tensor)>>(loader: &mut L) -> lightning::Result<(usize, f64)> {
    let (mut n, mut sum) = (0, 0.0);
    for b in loader.batches(0) {
        let (x, _) = b?;
        n += x.dim(0)?;
        sum += f64::from(x.get(0)?.get(0)?.to_scalar::<f32>()?);
    }
    Ok((n, sum))
}

fn main() -> lightning::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let (mode, dir) = match (args.first(), args.get(1)) {
        (Some(m), Some(d)) => (m.as_str(), Path::new(d)),
        _ => {
            println!("usage: data_memory (write DIR N | u8 DIR | f32 DIR | file DIR WORKERS)");
            return Ok(());
        }
    };
    let start = Instant::now();
    let (n, sum) = match mode {
        "write" => {
            let n = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(60_000);
            write(dir, n)?;
            println!("wrote {n} images to {}", dir.display());
            return Ok(());
        }
        "u8" => epoch(&mut mnist::load_dir(dir)?.train.loader(BATCH)?.shuffle(1))?,
        "f32" => {
            let train = mnist::load_dir(dir)?.train;
            let mut loader = DataLoader::new(train.images()?, train.labels.clone(), BATCH)?.shuffle(1);
            drop(train);
            epoch(&mut loader)?
        }
        "file" => {
            let workers = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
            epoch(&mut MapLoader::new(IdxDataset::train(dir)?, BATCH)?.shuffle(1).num_workers(workers))?
        }
        other => return Err(lightning::Error::msg(format!("unknown mode `{other}`: use write, u8, f32 or file"))),
    };
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{mode}: {n} images, load + one epoch {secs:.2} s ({:.0} samples/s), peak RSS {:.0} MiB (checksum {sum:.3})",
        n as f64 / secs,
        peak_rss_mib()
    );
    Ok(())
}
