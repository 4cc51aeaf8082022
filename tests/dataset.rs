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
    let lin = || Lin { vars: VarMap::new(), w: Var::zeros((2, 1), DType::F32, &Device::Cpu).unwrap() };
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
    let out = trainer()
        .fit_with(&mut m, MapLoader::new(Numbers::new(20), 5).unwrap().num_workers(2), None::<DataLoader>)
        .unwrap();
    assert_eq!(out.global_step, 8);

    let mut ds = Numbers::new(20);
    ds.fail_at = Some(12);
    let mut t = trainer();
    let e = t.fit_with(&mut lin(), MapLoader::new(ds, 5).unwrap().num_workers(2), None::<DataLoader>).unwrap_err();
    assert!(e.to_string().contains("sample 12"), "{e}");
    assert!(t.callbacks().0 .0, "on_exception ran");
}
