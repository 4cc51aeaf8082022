//! Checkpoint and run-directory safety: resumes that touch only their own files, exclusive
//! run directories, non-UTF-8 roots, checksums, restored values checked, and messages for
//! paths that are not a checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use lightning::callbacks::{EarlyStopping, EmaWeights, Mode, Timer};
use lightning::prelude::*;
use lightning::serde_json::{json, Value};

/// Logs `scores[epoch]` as `score` in validation.
#[lightning_module]
struct Scored {
    vars: VarMap,
    w: Var,
    scores: Vec<f64>,
}

#[lightning_module]
impl Scored {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        batch.0.matmul(self.w.as_tensor())?.sum_all()
    }
    fn validation_step(&mut self, trainer: &mut TrainerState) -> lightning::Result<()> {
        trainer.log("score", self.scores[trainer.current_epoch()])
    }
    fn configure_optimizers(&mut self) -> lightning::Result<Sgd> {
        Sgd::new(vec![("w".to_string(), self.w.clone())], 0.01)
    }
}

fn model(scores: &[f64]) -> Scored {
    let w = Var::zeros((1, 1), DType::F32, &Device::Cpu).unwrap();
    Scored { vars: lightning::var_map([("w", &w)]), w, scores: scores.to_vec() }
}

/// 4 batches an epoch.
fn data() -> DataLoader {
    let x = Tensor::ones((8, 1), DType::F32, &Device::Cpu).unwrap();
    DataLoader::new(x, Tensor::zeros(8, DType::F32, &Device::Cpu).unwrap(), 2).unwrap()
}

fn best_of(k: i64) -> ModelCheckpoint {
    ModelCheckpoint::new().monitor("score").mode(Mode::Max).save_top_k(k).save_last(true)
}

/// Fits with the default CSV logger under `root` (checkpoints in `version_N/checkpoints`).
fn fit(
    root: &Path,
    epochs: usize,
    scores: &[f64],
    ck: ModelCheckpoint,
    resume: Option<&Path>,
) -> (Trainer<(EarlyStopping, Timer, EmaWeights)>, lightning::Result<lightning::FitOutcome>) {
    let mut t = Trainer::builder()
        .max_epochs(epochs)
        .num_sanity_val_steps(0)
        .default_root_dir(root)
        .checkpoint(ck)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .callbacks((
            EarlyStopping::new("score").mode(Mode::Max).patience(100),
            Timer::new(std::time::Duration::from_secs(3600)),
            EmaWeights::new(0.9),
        ))
        .build()
        .unwrap();
    if let Some(p) = resume {
        t.resume_from(p);
    }
    let out = t.fit(&mut model(scores), Data::loader(data()).val(data()));
    (t, out)
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.insert(p.clone(), std::fs::read(&p).unwrap());
        }
    }
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn a_resume_into_a_new_version_leaves_the_first_run_whole() {
    let root = tempfile::tempdir().unwrap();
    let scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
    fit(root.path(), 3, &scores, best_of(1), None).1.unwrap();
    let v0 = root.path().join("lightning_logs/version_0");
    let first = files(&v0);
    assert!(first.keys().any(|p| p.ends_with("checkpoints/epoch=2-step=12.ckpt/model.safetensors")), "{first:?}");

    // resumed: it writes to version_1, improves every epoch, and keeps only its own best
    let (t, out) = fit(root.path(), 6, &scores, best_of(1), Some(&v0.join("checkpoints/last.ckpt")));
    out.unwrap();
    assert_eq!(files(&v0), first, "every file of the first run is still there, unchanged");
    let v1 = root.path().join("lightning_logs/version_1/checkpoints");
    assert_eq!(names(&v1), ["epoch=5-step=24.ckpt", "last.ckpt"]);
    let c = t.checkpoint_callback().unwrap();
    assert_eq!(c.best_model_path(), Some(v1.join("epoch=5-step=24.ckpt").as_path()));
    assert_eq!(c.best_k_models().keys().collect::<Vec<_>>(), [&v1.join("epoch=5-step=24.ckpt")]);
}

/// A `last.ckpt` whose `ModelCheckpoint` state is replaced by `state`.
fn with_state(root: &Path, state: Value) -> PathBuf {
    fit(root, 1, &[0.1, 0.2, 0.3], ModelCheckpoint::new().dirpath(root.join("ck")).save_last(true), None).1.unwrap();
    let last = root.join("ck/last.ckpt");
    let mut ck = Checkpoint::load(&last).unwrap();
    ck.callbacks.insert("ModelCheckpoint".into(), state);
    ck.save(&last).unwrap();
    last
}

#[test]
fn a_state_naming_another_directory_deletes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let victim = root.path().join("victim");
    std::fs::create_dir_all(victim.join("data.ckpt")).unwrap();
    std::fs::write(victim.join("data.ckpt/precious.txt"), "keep me").unwrap();
    std::fs::write(victim.join("notes.txt"), "keep me too").unwrap();
    let ck_dir = root.path().join("ck");
    let states = [
        // as this build writes it: another dirpath
        json!({"dirpath": victim, "best_k_models": {"data.ckpt": 0.9}, "best_model_path": "data.ckpt"}),
        // as older builds wrote it: whole paths
        {
            let old = victim.join("data.ckpt").to_str().unwrap().to_string();
            json!({"best_k_models": {old.clone(): 0.0}, "best_model_path": old})
        },
        // the run's own directory, but files this run never wrote
        json!({"dirpath": ck_dir, "best_k_models": {"epoch=0-step=4.ckpt": 0.0}}),
    ];
    for state in states {
        let last = with_state(root.path(), state.clone());
        let before = files(&ck_dir);
        let ck = best_of(1).dirpath(&ck_dir);
        fit(root.path(), 3, &[0.1, 0.2, 0.3], ck, Some(&last)).1.unwrap();
        assert_eq!(std::fs::read_to_string(victim.join("data.ckpt/precious.txt")).unwrap(), "keep me", "{state}");
        assert_eq!(std::fs::read_to_string(victim.join("notes.txt")).unwrap(), "keep me too", "{state}");
        for (p, bytes) in before.iter().filter(|(p, _)| !p.starts_with(ck_dir.join("last.ckpt"))) {
            assert_eq!(std::fs::read(p).ok().as_ref(), Some(bytes), "{} kept ({state})", p.display());
        }
        std::fs::remove_dir_all(&ck_dir).unwrap();
    }
    // a name that is not a file of the directory is refused, naming the field
    let last = with_state(root.path(), json!({"dirpath": ck_dir, "best_k_models": {"../victim/data.ckpt": 0.0}}));
    let e = fit(root.path(), 3, &[0.1, 0.2, 0.3], best_of(1).dirpath(&ck_dir), Some(&last)).1.unwrap_err();
    assert!(e.to_string().contains("ModelCheckpoint.best_k_models"), "{e}");
    assert!(victim.join("data.ckpt/precious.txt").exists());
}

#[test]
fn top_k_works_under_a_root_whose_name_is_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join(std::ffi::OsStr::from_bytes(b"runs-\xff\xfe"));
    let scores = [0.1, 0.2, 0.3, 0.4, 0.5];
    let (t, out) = fit(&root, 3, &scores, best_of(1), None);
    out.unwrap();
    let dir = root.join("lightning_logs/version_0/checkpoints");
    assert_eq!(names(&dir), ["epoch=2-step=12.ckpt", "last.ckpt"], "the old bests were deleted");
    assert!(t.checkpoint_callback().unwrap().best_model_path().unwrap().exists());
    // the state travels in the checkpoint and resumes in the same directory: older bests go on falling out
    let ck = best_of(1).dirpath(&dir);
    let (t, out) = fit(&root, 5, &scores, ck, Some(&dir.join("last.ckpt")));
    out.unwrap();
    // epoch 2's best fell out at epoch 3 but is kept: this run did not write it; epoch 3's
    // fell out at epoch 4 and is gone
    assert_eq!(names(&dir), ["epoch=2-step=12.ckpt", "epoch=4-step=20.ckpt", "last.ckpt"]);
    assert_eq!(t.checkpoint_callback().unwrap().best_model_score(), Some(0.5));
}

/// A saved checkpoint's directory.
fn saved(dir: &Path) -> PathBuf {
    let mut state_dict = BTreeMap::new();
    state_dict.insert("w".to_string(), Tensor::arange(0f32, 64., &Device::Cpu).unwrap());
    let ck = Checkpoint { global_step: 5, state_dict, ..Checkpoint::default() };
    let path = dir.join("a.ckpt");
    ck.save(&path).unwrap();
    path
}

fn edit_state(path: &Path, edit: impl FnOnce(&mut Value)) {
    let file = path.join("trainer_state.json");
    let mut v: Value = lightning::serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&file, lightning::serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn a_flipped_byte_is_found_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    let weights = path.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x40; // inside the tensor data: still a valid safetensors file
    std::fs::write(&weights, &bytes).unwrap();
    match Checkpoint::load(&path) {
        Err(lightning::Error::ChecksumMismatch { path: p, .. }) => assert_eq!(p, weights),
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    // a checkpoint from before checksums loads as it is
    edit_state(&path, |v| {
        v.as_object_mut().unwrap().remove("checksums");
    });
    assert_eq!(Checkpoint::load(&path).unwrap().global_step, 5);
}

#[test]
fn counters_out_of_range_are_errors_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    edit_state(&path, |v| v["global_step"] = json!(u64::MAX - 5));
    let e = Checkpoint::load(&path).unwrap_err();
    assert!(matches!(&e, lightning::Error::CheckpointField { field, .. } if field == "global_step"), "{e}");
    edit_state(&path, |v| v["global_step"] = json!("12"));
    assert!(Checkpoint::load(&path).unwrap_err().to_string().contains("global_step"));
}

#[test]
fn restored_values_of_the_wrong_kind_are_errors_naming_the_field() {
    let root = tempfile::tempdir().unwrap();
    let ck = || ModelCheckpoint::new().dirpath(root.path().join("ck")).every_n_train_steps(2).save_top_k(-1);
    fit(root.path(), 1, &[0.1, 0.2], ck(), None).1.unwrap();
    let mid = root.path().join("ck/epoch=0-step=2.ckpt");
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit); 6] = [
        ("batches_done", |v| v["batches_done"] = json!(99)),
        ("callbacks.EarlyStopping.wait_count", |v| v["callbacks"]["EarlyStopping"]["wait_count"] = json!("3")),
        ("callbacks.EarlyStopping.wait_count", |v| v["callbacks"]["EarlyStopping"]["wait_count"] = json!(-1)),
        ("callbacks.EmaWeights.updates", |v| v["callbacks"]["EmaWeights"]["updates"] = json!(1.5)),
        ("callbacks.Timer.time_elapsed.train", |v| v["callbacks"]["Timer"]["time_elapsed"]["train"] = json!(-4.0)),
        ("callbacks.ModelCheckpoint.best_model_score", |v| {
            v["callbacks"]["ModelCheckpoint"]["best_model_score"] = json!("high")
        }),
    ];
    for (field, edit) in cases {
        let copy = root.path().join("copy.ckpt");
        let _ = std::fs::remove_dir_all(&copy);
        Checkpoint::load(&mid).unwrap().save(&copy).unwrap();
        edit_state(&copy, edit);
        let e = fit(root.path(), 2, &[0.1, 0.2], ck(), Some(&copy)).1.unwrap_err();
        let text = e.to_string();
        assert!(text.contains(&format!("`{field}`")), "{field}: {text}");
    }
}

#[test]
fn paths_that_are_not_a_checkpoint_say_what_to_pass() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    let e = Checkpoint::load(&path.join("model.safetensors")).unwrap_err().to_string();
    assert!(e.contains("pass the `.ckpt` directory") && e.contains(&path.display().to_string()), "{e}");
    let link = dir.path().join("loop.ckpt");
    std::os::unix::fs::symlink(&link, &link).unwrap();
    let e = Checkpoint::load(&link).unwrap_err().to_string();
    assert!(e.contains("symbolic link loop"), "{e}");
    let e = Checkpoint::load(&dir.path().join("none.ckpt")).unwrap_err().to_string();
    assert!(e.contains("no such checkpoint"), "{e}");
}

/// One run of the concurrency tests: CSV and TensorBoard loggers on `root`, no version given.
fn run_on(root: &Path, score: f64) {
    let mut t = Trainer::builder()
        .max_epochs(1)
        .num_sanity_val_steps(0)
        .default_root_dir(root)
        .logger(CsvLogger::new(root))
        .logger(TensorBoardLogger::new(root))
        .checkpoint(ModelCheckpoint::new())
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .build()
        .unwrap();
    t.fit(&mut model(&[score]), Data::loader(data()).val(data())).unwrap_or_else(|e| panic!("run {score}: {e}"));
}

/// `runs` versions under `root`, each with one run's complete files (checkpoint, TensorBoard
/// events, `metrics.csv` and its `metrics.png` and `metrics.svg`); 8 distinct scores.
fn check_versions(root: &Path, runs: usize) {
    let logs = root.join("lightning_logs");
    assert_eq!(names(&logs).len(), runs, "{:?}", names(&logs));
    let mut scores = Vec::new();
    for v in 0..runs {
        let dir = logs.join(format!("version_{v}"));
        let listing = names(&dir);
        assert_eq!(listing.len(), 5, "version_{v}: {listing:?}");
        assert_eq!(listing[0], "checkpoints", "version_{v}: {listing:?}");
        assert!(
            listing[1].starts_with("events.out.tfevents.")
                && listing[2] == "metrics.csv"
                && listing[3] == "metrics.png"
                && listing[4] == "metrics.svg",
            "version_{v}: {listing:?}"
        );
        let png = std::fs::read(dir.join("metrics.png")).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "version_{v}: metrics.png is not a PNG");
        // the curves are drawn from this run's own rows: a whole SVG, not another run's or a torn one
        let svg = std::fs::read_to_string(dir.join("metrics.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "version_{v}: metrics.svg is not whole");
        assert_eq!(names(&dir.join("checkpoints")), ["epoch=0-step=4.ckpt"], "version_{v}");
        Checkpoint::load(&dir.join("checkpoints/epoch=0-step=4.ckpt")).unwrap();
        // one run's rows only: a header and its epoch's validation row
        let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows.len(), 2, "version_{v}: {csv}");
        scores.push(rows[1].to_string());
    }
    scores.sort();
    scores.dedup();
    assert_eq!(scores.len(), 8, "each of the 8 runs of a round logged its own score: {scores:?}");
}

#[test]
fn runs_started_together_each_claim_their_own_version() {
    let root = tempfile::tempdir().unwrap();
    for _round in 0..3 {
        std::thread::scope(|s| {
            for i in 0..8 {
                let root = root.path();
                s.spawn(move || run_on(root, i as f64));
            }
        });
    }
    check_versions(root.path(), 24);
}

const ROOT_VAR: &str = "LIGHTNING_CONCURRENT_ROOT";

/// A child of `processes_started_together_each_claim_their_own_version`.
#[test]
#[ignore = "run by processes_started_together_each_claim_their_own_version in a child process"]
fn concurrent_child() {
    let (Some(root), Ok(score)) = (std::env::var_os(ROOT_VAR), std::env::var("LIGHTNING_CONCURRENT_SCORE")) else {
        return;
    };
    run_on(Path::new(&root), score.parse().unwrap());
}

#[test]
fn processes_started_together_each_claim_their_own_version() {
    let root = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    for _round in 0..2 {
        let children: Vec<_> = (0..8)
            .map(|i| {
                std::process::Command::new(&exe)
                    .args(["--ignored", "--exact", "concurrent_child"])
                    .env(ROOT_VAR, root.path())
                    .env("LIGHTNING_CONCURRENT_SCORE", i.to_string())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
    }
    check_versions(root.path(), 16);
}
