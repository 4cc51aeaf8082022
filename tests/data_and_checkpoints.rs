//! The in-memory DataLoader, MNIST IDX files, and checkpoint files: good and bad.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use lightning::data::{idx, mnist};
use lightning::{Checkpoint, DataLoader, Error, Loader};

fn firsts(loader: &mut DataLoader, epoch: usize) -> Vec<u32> {
    loader.batches(epoch).flat_map(|b| b.unwrap().1.to_vec1::<u32>().unwrap()).collect()
}

#[test]
fn loader_batches_shuffles_reproducibly_and_drops_last() {
    let x = Tensor::arange(0f32, 10., &Device::Cpu).unwrap().reshape((10, 1)).unwrap();
    let y = Tensor::arange(0u32, 10, &Device::Cpu).unwrap();
    let mut plain = DataLoader::new(x.clone(), y.clone(), 4).unwrap();
    assert_eq!(plain.len(), 3);
    assert_eq!(firsts(&mut plain, 0), (0..10).collect::<Vec<_>>());
    let sizes: Vec<usize> = plain.batches(0).map(|b| b.unwrap().0.dim(0).unwrap()).collect();
    assert_eq!(sizes, [4, 4, 2]);

    let mut a = DataLoader::new(x.clone(), y.clone(), 4).unwrap().shuffle(3);
    let mut b = DataLoader::new(x.clone(), y.clone(), 4).unwrap().shuffle(3);
    let (e0, e1) = (firsts(&mut a, 0), firsts(&mut a, 1));
    assert_eq!(e0, firsts(&mut b, 0), "same seed, same order");
    assert_ne!(e0, e1, "a new order every epoch");
    let mut sorted = e0.clone();
    sorted.sort();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>(), "a permutation");
    // inputs and targets stay paired
    for batch in a.batches(2) {
        let (x, y) = batch.unwrap();
        let x: Vec<u32> = x.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| *v as u32).collect();
        assert_eq!(x, y.to_vec1::<u32>().unwrap());
    }

    let mut dropped = DataLoader::new(x.clone(), y.clone(), 4).unwrap().drop_last(true);
    assert_eq!((dropped.len(), firsts(&mut dropped, 0).len()), (2, 8));

    assert!(matches!(DataLoader::new(x.clone(), y.narrow(0, 0, 9).unwrap(), 4), Err(Error::Data(_))));
    assert!(matches!(DataLoader::new(x, y, 0), Err(Error::Data(_))));
}

fn varmap(dims: (usize, usize)) -> VarMap {
    let vars = VarMap::new();
    let _ = candle_nn::linear(dims.0, dims.1, VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu)).unwrap();
    vars
}

#[test]
fn checkpoints_round_trip_and_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/a.ckpt");
    let vars = varmap((3, 2));
    let mut ck = Checkpoint {
        epoch: 2,
        global_step: 7,
        state_dict: lightning::checkpoint_state(&vars),
        ..Checkpoint::default()
    };
    ck.callbacks.insert("Cb".into(), lightning::serde_json::json!({"n": 1}));
    ck.extra.insert("note".into(), lightning::serde_json::json!("hi"));
    ck.save(&path).unwrap();
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["a.ckpt"], "no temporary file is left behind");

    let back = Checkpoint::load(&path).unwrap();
    assert_eq!((back.epoch, back.global_step), (2, 7));
    assert_eq!(back.callbacks, ck.callbacks);
    assert_eq!(back.extra, ck.extra);
    let other = varmap((3, 2));
    back.load_into(&other, &path).unwrap();
    for (k, v) in vars.data().lock().unwrap().iter() {
        let w = other.data().lock().unwrap()[k].as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap(), w, "{k}");
    }

    // a module of another shape
    let e = back.load_into(&varmap((3, 3)), &path).unwrap_err();
    assert!(matches!(e, Error::CheckpointMismatch { .. }) && e.to_string().contains("shape"), "{e}");
    // missing or extra names
    let e = back.load_into(&VarMap::new(), &path).unwrap_err();
    assert!(e.to_string().contains("unexpected keys"), "{e}");

    // a save killed between its two renames leaves `.a.ckpt.old-PID` and no `a.ckpt`: load
    // finds the set-aside copy, and the next save removes it
    let aside = path.with_file_name(".a.ckpt.old-4000000");
    std::fs::rename(&path, &aside).unwrap();
    assert_eq!(Checkpoint::load(&path).unwrap().global_step, 7);
    ck.save(&path).unwrap();
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["a.ckpt"], "the set-aside copy is gone");

    // the layout: weights named as in the VarMap, optimizer state, trainer state as JSON
    let files: Vec<_> = {
        let mut f: Vec<_> = std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().file_name()).collect();
        f.sort();
        f
    };
    assert_eq!(files, ["model.safetensors", "optimizer.safetensors", "trainer_state.json"]);
    let weights = std::fs::read(path.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&weights).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_owned).collect();
    names.sort();
    let mut expected: Vec<String> = vars.data().lock().unwrap().keys().cloned().collect();
    expected.sort();
    assert_eq!(names, expected);
    let state: lightning::serde_json::Value =
        lightning::serde_json::from_slice(&std::fs::read(path.join("trainer_state.json")).unwrap()).unwrap();
    assert_eq!((state["format"].as_u64(), state["global_step"].as_u64()), (Some(3), Some(7)));

    // bad checkpoints: typed errors naming the file and what is wrong, never a panic
    let copy = |name: &str| {
        let p = dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        for f in &files {
            std::fs::copy(path.join(f), p.join(f)).unwrap();
        }
        p
    };
    let bad = copy("truncated.ckpt");
    std::fs::write(bad.join("model.safetensors"), &weights[..weights.len() / 2]).unwrap();
    let e = Checkpoint::load(&bad).unwrap_err();
    // the crc32c recorded in trainer_state.json finds it first
    assert!(matches!(e, Error::ChecksumMismatch { .. }) && e.to_string().contains("model.safetensors"), "{e}");
    let bad = copy("no-state.ckpt");
    std::fs::remove_file(bad.join("trainer_state.json")).unwrap();
    let e = Checkpoint::load(&bad).unwrap_err().to_string();
    assert!(e.contains("not a checkpoint directory") && e.contains("trainer_state.json"), "{e}");
    let bad = copy("no-optimizer.ckpt");
    std::fs::remove_file(bad.join("optimizer.safetensors")).unwrap();
    assert!(Checkpoint::load(&bad).unwrap_err().to_string().contains("optimizer.safetensors"));
    let bad = copy("future.ckpt");
    std::fs::write(bad.join("trainer_state.json"), state.to_string().replace("\"format\":3", "\"format\":99")).unwrap();
    let e = Checkpoint::load(&bad).unwrap_err().to_string();
    assert!(e.contains("format 99 is not supported"), "{e}");

    // single files are read as format 2; anything else is a typed error
    let bad = dir.path().join("bad.ckpt");
    for (content, want) in [(b"hello".to_vec(), "not a checkpoint"), (Vec::new(), "not a checkpoint")] {
        std::fs::write(&bad, content).unwrap();
        let e = Checkpoint::load(&bad).unwrap_err();
        assert!(matches!(e, Error::BadFile { .. }), "{e}");
        assert!(e.to_string().starts_with(&bad.display().to_string()) && e.to_string().contains(want), "{e}");
    }
    // a plain safetensors file is not a checkpoint
    candle_core::safetensors::save(&lightning::checkpoint_state(&vars).into_iter().collect(), &bad).unwrap();
    assert!(Checkpoint::load(&bad).unwrap_err().to_string().contains("not a candle-lightning checkpoint"));
    assert!(matches!(Checkpoint::load(Path::new("/nonexistent/x.ckpt")), Err(Error::Io { .. })));

    // a single-file checkpoint from a future format version
    let t = Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap();
    let meta = std::collections::HashMap::from([(
        "candle_lightning".to_string(),
        r#"{"format": 99, "epoch": 0, "global_step": 0, "batches_done": 0, "epoch_complete": true, "callbacks": {}, "extra": {}}"#.to_string(),
    )]);
    std::fs::write(&bad, safetensors::serialize([("state_dict/w", &t)], Some(meta)).unwrap()).unwrap();
    let e = Checkpoint::load(&bad).unwrap_err().to_string();
    assert!(e.contains("format 99 is not supported"), "{e}");

    // a format-2 file (the previous layout) still loads: weights, optimizer buffers, scheduler
    let legacy = dir.path().join("legacy.ckpt");
    let meta = std::collections::HashMap::from([(
        "candle_lightning".to_string(),
        r#"{"format": 2, "epoch": 3, "global_step": 9, "batches_done": 0, "epoch_complete": true, "callbacks": {}, "extra": {},
            "optimizers": [{"steps": {"w": 9}, "lr": [0.1], "initial_lr": [0.1]}], "scheduler": {"step": 2}}"#
            .to_string(),
    )]);
    let bytes = safetensors::serialize([("state_dict/w", &t), ("optimizer/0/w.exp_avg", &t)], Some(meta)).unwrap();
    std::fs::write(&legacy, bytes).unwrap();
    let ck = Checkpoint::load(&legacy).unwrap();
    assert_eq!((ck.epoch, ck.global_step), (3, 9));
    assert_eq!(ck.state_dict.keys().collect::<Vec<_>>(), ["w"]);
    assert_eq!(ck.optimizers[0].tensors.keys().collect::<Vec<_>>(), ["w.exp_avg"]);
    assert_eq!(ck.optimizers[0].meta.steps["w"], 9);
    assert_eq!(ck.scheduler, Some(lightning::serde_json::json!({"step": 2})));
}

fn write_gz(path: &Path, a: &idx::IdxArray) {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&idx::encode_idx(a)).unwrap();
    std::fs::write(path, gz.finish().unwrap()).unwrap();
}

#[test]
fn mnist_directories_load_and_mismatches_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let images =
        |n: usize| idx::IdxArray { dims: vec![n, 2, 2], data: (0..n * 4).map(|i| (i * 10 % 256) as u8).collect() };
    let labels = |n: usize| idx::IdxArray { dims: vec![n], data: (0..n).map(|i| (i % 10) as u8).collect() };
    write_gz(&dir.path().join("train-images-idx3-ubyte.gz"), &images(5));
    write_gz(&dir.path().join("train-labels-idx1-ubyte.gz"), &labels(5));
    std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), idx::encode_idx(&images(3))).unwrap();
    write_gz(&dir.path().join("t10k-labels-idx1-ubyte.gz"), &labels(3));
    let m = mnist::load_dir(dir.path()).unwrap();
    assert_eq!(m.train.pixels.dims(), [5, 4]);
    assert_eq!(m.test.labels.to_vec1::<u32>().unwrap(), [0, 1, 2]);
    assert_eq!(m.train.images().unwrap().get(0).unwrap().to_vec1::<f32>().unwrap()[1], 10.0 / 255.0);

    write_gz(&dir.path().join("t10k-labels-idx1-ubyte.gz"), &labels(4));
    let e = mnist::load_dir(dir.path()).unwrap_err().to_string();
    assert!(e.contains("t10k-labels-idx1-ubyte.gz") && e.contains("has 4 labels but") && e.contains("3 images"), "{e}");

    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte.gz"), [0x1f, 0x8b, 0, 1]).unwrap();
    let e = mnist::load_dir(dir.path()).unwrap_err().to_string();
    assert!(e.contains("t10k-labels-idx1-ubyte.gz") && e.contains("gzip"), "{e}");

    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let e = mnist::load_dir(dir.path()).unwrap_err().to_string();
    assert!(e.contains("missing `t10k-labels-idx1-ubyte`"), "{e}");
}
