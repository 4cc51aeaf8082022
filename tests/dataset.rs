//! Map-style datasets through `MapLoader`: the same batches whatever `num_workers` is,
//! bounded prefetch, errors and panics as typed errors, no leaked threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use lightning::data::{Dataset, MapLoader};
use lightning::prelude::*;

/// Sample i is ([i, i²], i % 3); it fails or panics at the chosen index.
struct Numbers {
    n: usize,
    fail_at: Option<usize>,
    panic_at: Option<usize>,
    reads: Arc<AtomicUsize>,
}

impl Numbers {
    fn new(n: usize) -> Self {
        Numbers { n, fail_at: None, panic_at: None, reads: Arc::default() }
    }
}

impl Dataset for Numbers {
    type Item = (Tensor, u32);
    fn len(&self) -> usize {
        self.n
    }
    fn get(&self, i: usize) -> lightning::Result<(Tensor, u32)> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.fail_at == Some(i) {
            return Err(lightning::Error::Data(format!("sample {i} is unreadable")));
        }
        if self.panic_at == Some(i) {
            panic!("sample {i} exploded");
        }
        Ok((Tensor::new(&[i as f32, (i * i) as f32], &Device::Cpu)?, (i % 3) as u32))
    }
}

fn epoch(loader: &mut MapLoader<Numbers>, e: usize) -> Vec<(Vec<Vec<f32>>, Vec<u32>)> {
    loader.batches(e).map(|b| b.unwrap()).map(|(x, y)| (x.to_vec2().unwrap(), y.to_vec1().unwrap())).collect()
}

#[test]
fn batches_are_the_same_whatever_the_number_of_workers() {
    let reference = epoch(&mut MapLoader::new(Numbers::new(23), 4).unwrap().shuffle(5), 1);
    assert_eq!(reference.len(), 6);
    assert_eq!(reference[0].0.len(), 4);
    assert_eq!(reference[5].0.len(), 3);
    let mut all: Vec<u32> = reference.iter().flat_map(|b| b.0.iter().map(|r| r[0] as u32)).collect();
    all.sort();
    assert_eq!(all, (0..23).collect::<Vec<_>>());
    for workers in [1, 2, 3, 8] {
        let mut l = MapLoader::new(Numbers::new(23), 4).unwrap().shuffle(5).num_workers(workers);
        assert_eq!(epoch(&mut l, 1), reference, "{workers} workers");
        assert_ne!(epoch(&mut l, 2), reference, "another epoch, another order");
    }
    let mut dropped = MapLoader::new(Numbers::new(23), 4).unwrap().drop_last(true).num_workers(2);
    assert_eq!((dropped.len(), epoch(&mut dropped, 0).len()), (5, 5));
}

#[test]
fn errors_and_panics_end_the_epoch_with_a_typed_error() {
    for workers in [0, 3] {
        let mut ds = Numbers::new(40);
        ds.fail_at = Some(9);
        let mut l = MapLoader::new(ds, 4).unwrap().num_workers(workers);
        let got: Vec<_> = l.batches(0).collect();
        assert_eq!(got.len(), 3, "{workers} workers: two good batches, then the error, then nothing");
        let e = got[2].as_ref().err().unwrap().to_string();
        assert!(e.contains("sample 9 is unreadable"), "{e}");
    }
    let mut ds = Numbers::new(40);
    ds.panic_at = Some(5);
    let mut l = MapLoader::new(ds, 4).unwrap().num_workers(2);
    let got: Vec<_> = l.batches(0).collect();
    let e = got.last().unwrap().as_ref().expect_err("the panic becomes an error").to_string();
    assert!(e.contains("worker panicked: sample 5 exploded"), "{e}");
}

#[test]
fn prefetch_is_bounded_and_workers_stop_when_dropped() {
    let ds = Numbers::new(1000);
    let reads = ds.reads.clone();
    let mut l = MapLoader::new(ds, 10).unwrap().num_workers(2).prefetch(3);
    {
        let mut it = l.batches(0);
        it.next().unwrap().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        // each worker: at most its queue plus the batch it is making
        assert!(
            reads.load(Ordering::SeqCst) <= 10 * (1 + 2 * (3 + 1)),
            "{} samples read",
            reads.load(Ordering::SeqCst)
        );
    }
    assert_eq!(Arc::strong_count(l.dataset()), 1, "every worker has exited");
}

#[lightning_module]
struct Lin {
    vars: VarMap,
    w: Var,
}

#[lightning_module]
impl Lin {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        let target = batch.1.to_dtype(DType::F32)?.unsqueeze(1)?;
        batch.0.matmul(self.w.as_tensor())?.sub(&target)?.sqr()?.mean_all()
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(vec![("w".to_string(), self.w.clone())], 1e-4)
    }
}

struct SawException(bool);

#[callback]
impl SawException {
    fn on_exception(&mut self) {
        self.0 = true;
    }
}

#[test]
fn the_trainer_reads_a_dataset_through_workers() {
    let lin = || {
        let w = Var::zeros((2, 1), DType::F32, &Device::Cpu).unwrap();
        Lin { vars: lightning::var_map([("w", &w)]), w }
    };
    let trainer = || {
        Trainer::builder()
            .accelerator(Accelerator::Cpu)
            .enable_checkpointing(false)
            .max_epochs(2)
            .callbacks((SawException(false),))
            .build()
            .unwrap()
    };
    let mut m = lin();
    let out = trainer().fit(&mut m, Data::loader(MapLoader::new(Numbers::new(20), 5).unwrap().num_workers(2))).unwrap();
    assert_eq!(out.global_step, 8);

    let mut ds = Numbers::new(20);
    ds.fail_at = Some(12);
    let mut t = trainer();
    let e = t.fit(&mut lin(), Data::loader(MapLoader::new(ds, 5).unwrap().num_workers(2))).unwrap_err();
    assert!(e.to_string().contains("sample 12"), "{e}");
    assert!(t.callbacks().0 .0, "on_exception ran");
}

/// Epochs, validations and the learning rate seen by the module, per epoch.
#[lightning_module]
struct Stream {
    vars: VarMap,
    w: Var,
    seen: Vec<(usize, usize)>,
    validations: usize,
    lrs: Vec<f64>,
}

#[lightning_module]
impl Stream {
    fn training_step(
        &mut self,
        batch: &(Tensor, Tensor),
        batch_idx: usize,
        trainer: &TrainerState,
    ) -> candle_core::Result<Tensor> {
        self.seen.push((trainer.current_epoch(), batch_idx));
        let target = batch.1.to_dtype(DType::F32)?.unsqueeze(1)?;
        batch.0.matmul(self.w.as_tensor())?.sub(&target)?.sqr()?.mean_all()
    }
    fn validation_step(&mut self) {}
    fn on_validation_end(&mut self) {
        self.validations += 1;
    }
    fn configure_optimizers(&mut self) -> lightning::Result<(Sgd, StepLr)> {
        Ok((Sgd::new(vec![("w".to_string(), self.w.clone())], 0.1)?, StepLr::new(1, 0.5)))
    }
    fn on_before_optimizer_step(&mut self, optimizer: &mut Sgd) {
        self.lrs.push(optimizer.learning_rate(0));
    }
}

#[test]
fn streams_of_unknown_length_train_validate_and_schedule_per_epoch() {
    use lightning::data::StreamLoader;
    let stream = || {
        StreamLoader::new(|_epoch| (0..10u32).map(|i| Ok((Tensor::new(&[i as f32, 1.0], &Device::Cpu)?, i % 2))), 3)
            .unwrap()
    };
    let w = Var::zeros((2, 1), DType::F32, &Device::Cpu).unwrap();
    let mut m = Stream { vars: lightning::var_map([("w", &w)]), w, seen: vec![], validations: 0, lrs: vec![] };
    let mut t = Trainer::builder()
        .accelerator(Accelerator::Cpu)
        .enable_checkpointing(false)
        .max_epochs(2)
        .num_sanity_val_steps(0)
        .build()
        .unwrap();
    let out = t.fit(&mut m, Data::loader(stream()).val(stream())).unwrap();
    assert_eq!(out.global_step, 8, "10 samples in batches of 3: 4 per epoch");
    assert_eq!(m.seen, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3)]);
    assert_eq!(m.validations, 2, "validation at the end of each epoch, found one batch ahead");
    assert_eq!(m.lrs, [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05], "the epoch scheduler steps at the stream's end");
}

/// A batch that is a struct, not a tuple.
struct Pair {
    x: Tensor,
    label: u32,
}

struct PairBatch {
    x: Tensor,
    labels: Tensor,
}

impl lightning::data::Collate for Pair {
    type Batch = PairBatch;
    fn collate(items: Vec<Pair>) -> lightning::Result<PairBatch> {
        let (xs, ls): (Vec<Tensor>, Vec<u32>) = items.into_iter().map(|p| (p.x, p.label)).unzip();
        let n = ls.len();
        Ok(PairBatch { x: Tensor::stack(&xs, 0)?, labels: Tensor::from_vec(ls, n, &Device::Cpu)? })
    }
}

impl TransferBatch for PairBatch {
    fn to_device(self, device: &Device) -> lightning::Result<Self> {
        Ok(PairBatch { x: self.x.to_device(device)?, labels: self.labels.to_device(device)? })
    }
}

struct Pairs;

impl Dataset for Pairs {
    type Item = Pair;
    fn len(&self) -> usize {
        6
    }
    fn get(&self, i: usize) -> lightning::Result<Pair> {
        Ok(Pair { x: Tensor::new(&[i as f32, 1.0], &Device::Cpu)?, label: (i % 2) as u32 })
    }
}

#[lightning_module]
struct OnPairs {
    vars: VarMap,
    w: Var,
    labels: Vec<u32>,
}

#[lightning_module]
impl OnPairs {
    fn training_step(&mut self, batch: &PairBatch) -> lightning::Result<Tensor> {
        self.labels.extend(batch.labels.to_vec1::<u32>()?);
        let target = batch.labels.to_dtype(DType::F32)?.unsqueeze(1)?;
        Ok(batch.x.matmul(self.w.as_tensor())?.sub(&target)?.sqr()?.mean_all()?)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(vec![("w".to_string(), self.w.clone())], 0.01)
    }
}

#[test]
fn struct_batches_flow_through_workers_and_the_trainer() {
    let w = Var::zeros((2, 1), DType::F32, &Device::Cpu).unwrap();
    let mut m = OnPairs { vars: lightning::var_map([("w", &w)]), w, labels: vec![] };
    let mut t =
        Trainer::builder().accelerator(Accelerator::Cpu).enable_checkpointing(false).max_epochs(1).build().unwrap();
    t.fit(&mut m, Data::loader(MapLoader::new(Pairs, 4).unwrap().num_workers(2))).unwrap();
    assert_eq!(m.labels, [0, 1, 0, 1, 0, 1]);
}

#[test]
fn an_mnist_split_is_a_dataset() {
    let pixels = Tensor::arange(0u8, 12, &Device::Cpu).unwrap().reshape((3, 4)).unwrap();
    let labels = Tensor::new(&[7u32, 8, 9], &Device::Cpu).unwrap();
    let split = lightning::data::mnist::MnistSplit::new(pixels, labels).unwrap();
    let all = split.images().unwrap().to_vec2::<f32>().unwrap();
    let mut l = MapLoader::new(split, 2).unwrap();
    let batches: Vec<_> = l.batches(0).map(|b| b.unwrap()).collect();
    assert_eq!(batches[0].0.to_vec2::<f32>().unwrap(), all[..2], "the f32 values of `images`, batch by batch");
    assert_eq!(batches[1].1.to_vec1::<u32>().unwrap(), [9]);
}

/// The three ways to hold an MNIST-format split give the same batches, value for value,
/// as the f32 copy the loaders used to hold (`b / 255` per pixel): u8 pixels in memory
/// through `MnistSplit::loader` and as a `Dataset`, and the file-backed `IdxDataset` with
/// workers, shuffled the same way.
#[test]
fn in_memory_and_file_backed_splits_give_the_old_f32_batches() {
    use lightning::data::{idx, mnist, IdxDataset};
    let dir = tempfile::tempdir().unwrap();
    let n = 37;
    for (stem, count) in [("train", n), ("t10k", 3)] {
        let images =
            idx::IdxArray { dims: vec![count, 4, 5], data: (0..count * 20).map(|i| (i * 7 % 256) as u8).collect() };
        let labels = idx::IdxArray { dims: vec![count], data: (0..count).map(|i| (i % 10) as u8).collect() };
        std::fs::write(dir.path().join(format!("{stem}-images-idx3-ubyte")), idx::encode_idx(&images)).unwrap();
        std::fs::write(dir.path().join(format!("{stem}-labels-idx1-ubyte")), idx::encode_idx(&labels)).unwrap();
    }
    let old: Vec<f32> = (0..n * 20).map(|i| f32::from((i * 7 % 256) as u8) / 255.0).collect();
    let old = Tensor::from_vec(old, (n, 20), &Device::Cpu).unwrap();
    let split = mnist::load_dir(dir.path()).unwrap().train;
    assert_eq!(split.pixels.dtype(), DType::U8, "one byte a pixel");
    let flat = |l: &mut dyn Iterator<Item = lightning::Result<(Tensor, Tensor)>>| -> (Vec<f32>, Vec<u32>) {
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for b in l {
            let (x, y) = b.unwrap();
            xs.extend(x.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            ys.extend(y.to_vec1::<u32>().unwrap());
        }
        (xs, ys)
    };
    let mut reference = DataLoader::new(old, split.labels.clone(), 8).unwrap().shuffle(3);
    let want = flat(&mut reference.batches(1));
    let mut in_memory = split.loader(8).unwrap().shuffle(3);
    assert_eq!(flat(&mut in_memory.batches(1)), want);
    let mut as_dataset = MapLoader::new(split, 8).unwrap().shuffle(3);
    assert_eq!(flat(&mut as_dataset.batches(1)), want);
    let mut file_backed = MapLoader::new(IdxDataset::train(dir.path()).unwrap(), 8).unwrap().shuffle(3).num_workers(2);
    assert_eq!(flat(&mut file_backed.batches(1)), want);
}

/// Under data-parallel training each rank reads its share (torch's `DistributedSampler`: the
/// same shuffle on every rank, rank r takes positions r, r + world, …, padded): the shares
/// cover the data set, with workers too. `DataLoader` shards the same way.
#[test]
fn map_loaders_and_data_loaders_shard_by_rank() {
    let world = 3;
    let mut seen = Vec::new();
    for rank in 0..world {
        let mut l = MapLoader::new(Numbers::new(23), 4).unwrap().shuffle(5).num_workers(2);
        l.shard(rank, world).unwrap();
        assert_eq!(l.len(), 2, "8 samples a rank (23 padded to 24), batches of 4");
        let share: Vec<u32> = epoch(&mut l, 1).iter().flat_map(|b| b.0.iter().map(|r| r[0] as u32)).collect();
        assert_eq!(share.len(), 8);
        seen.extend(share);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen, (0..23).collect::<Vec<_>>(), "the shares cover every sample");
    let mut l = MapLoader::new(Numbers::new(23), 4).unwrap();
    assert!(l.shard(3, 3).is_err(), "rank 3 is not in a world of 3");

    let x = Tensor::arange(0f32, 10.0, &Device::Cpu).unwrap().reshape((10, 1)).unwrap();
    let mut d = DataLoader::new(x.clone(), x, 2).unwrap();
    d.shard(1, 2).unwrap();
    let got: Vec<f32> =
        d.batches(0).flat_map(|b| b.unwrap().0.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect();
    assert_eq!(got, [1., 3., 5., 7., 9.]);
}
