//! Runs the MNIST example itself (its `run`, with its default arguments) on the embedded
//! sample, and checks the promise: at least 90% test accuracy.

#[path = "../examples/mnist.rs"]
mod mnist;

#[test]
fn example_reaches_ninety_percent_on_the_embedded_sample() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let args =
        mnist::parse(["mnist", "fit", "--trainer.accelerator", "cpu", "--trainer.default_root_dir", root]).unwrap();
    let report = mnist::run(&args).unwrap();
    assert!(report.test_accuracy >= 0.90, "test accuracy {}", report.test_accuracy);
    assert!(report.epoch_lines.len() <= args.trainer.max_epochs.unwrap());
    let best = report.best_checkpoint.clone().unwrap();
    assert!(best.starts_with(dir.path()) && best.is_dir(), "{}", best.display());
    assert!(best.file_name().unwrap().to_str().unwrap().starts_with("epoch="));
    assert!(report.last_checkpoint.as_ref().unwrap().ends_with("checkpoints/last.ckpt"));
    // the default CSV logger and the hyperparameters
    let logs = dir.path().join("lightning_logs/version_0");
    let csv = std::fs::read_to_string(logs.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().next().unwrap(), "epoch,step,test_acc,test_loss,train_loss,val_acc,val_loss");
    assert!(std::fs::read_to_string(logs.join("hparams.yaml")).unwrap().contains("net: mlp"));
    // the CLI's config beside the logs, and it reads back as the same run
    let config = std::fs::read_to_string(logs.join("config.yaml")).unwrap();
    assert_eq!(config, args.config_yaml());
    let file = logs.join("config.yaml");
    let back = mnist::parse(["mnist", "fit", "--config", file.to_str().unwrap()]).unwrap();
    assert_eq!(back.config_yaml(), config);

    // seeded weights, shuffling and augmentation: a second run repeats the first exactly
    let again = mnist::run(&args).unwrap();
    let strip = |lines: &[String]| lines.iter().map(|l| l.rsplit_once("  ").unwrap().0.to_string()).collect::<Vec<_>>();
    assert_eq!(strip(&report.epoch_lines), strip(&again.epoch_lines));
    assert_eq!(report.test_accuracy, again.test_accuracy);
}

#[test]
fn bad_data_directories_are_reported_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("train-images-idx3-ubyte"), b"\x00\x00\x08\x03junk").unwrap();
    let args = mnist::parse(["mnist", "fit", "--data.data_dir", dir.path().to_str().unwrap()]).unwrap();
    let err = mnist::run(&args).err().expect("missing files are an error").to_string();
    assert!(err.contains("train-labels-idx1-ubyte"), "{err}");
}

#[test]
fn the_cnn_learns_in_one_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let args = mnist::parse([
        "mnist",
        "fit",
        "--model.net",
        "cnn",
        "--trainer.max_epochs",
        "1",
        "--trainer.default_root_dir",
        dir.path().to_str().unwrap(),
    ])
    .unwrap();
    let report = mnist::run(&args).unwrap();
    assert!(report.test_accuracy >= 0.85, "CNN test accuracy after one epoch: {}", report.test_accuracy);
}

#[test]
fn without_network_the_download_falls_back_to_the_embedded_sample() {
    let dir = tempfile::tempdir().unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (cache, root) = (dir.path().join("cache"), dir.path().join("runs"));
    let args = mnist::parse([
        "mnist",
        "fit",
        "--data.download",
        "mnist",
        "--data.mirror",
        &format!("http://{dead}/"),
        "--data.cache_dir",
        cache.to_str().unwrap(),
        "--trainer.default_root_dir",
        root.to_str().unwrap(),
        "--trainer.max_epochs",
        "1",
    ])
    .unwrap();
    let report = mnist::run(&args).unwrap();
    assert_eq!(report.data, "the embedded sample (download failed)");
    assert!(report.test_accuracy > 0.8);
}

#[test]
fn ckpt_path_last_goes_on_training_from_the_newest_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let first = mnist::parse([
        "mnist",
        "fit",
        "--trainer.accelerator",
        "cpu",
        "--trainer.default_root_dir",
        root,
        "--trainer.max_epochs",
        "1",
    ])
    .unwrap();
    let one = mnist::run(&first).unwrap();
    assert_eq!(one.epoch_lines.len(), 1);
    // Lightning's ckpt_path="last", parsed by the flag: the first run's last.ckpt, then epoch 2 only
    let more = [
        "mnist",
        "fit",
        "--trainer.accelerator",
        "cpu",
        "--trainer.default_root_dir",
        root,
        "--trainer.max_epochs",
        "2",
        "--ckpt_path",
        "last",
    ];
    let args = mnist::parse(more).unwrap();
    assert_eq!(args.ckpt_path, Some(lightning::CkptPath::Last));
    let two = mnist::run(&args).unwrap();
    assert_eq!(two.epoch_lines.len(), 1, "{:?}", two.epoch_lines);
    assert!(two.epoch_lines[0].starts_with("epoch  1 "), "{:?}", two.epoch_lines);
    assert!(two.last_checkpoint.unwrap().ends_with("version_1/checkpoints/last.ckpt"));
}

#[test]
fn bad_sizes_are_typed_errors_not_panics_or_aborts() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = mnist::parse([
        "mnist",
        "fit",
        "--trainer.max_epochs",
        "1",
        "--trainer.default_root_dir",
        dir.path().to_str().unwrap(),
    ])
    .unwrap();
    // past clap's range check (a program building `Args` itself): the layers check their sizes
    for (hidden, says) in [(0, "layer `fc1`: out_dim must be at least 1"), (100_000_000_000, "elements, more than")] {
        args.model.hidden = hidden;
        let e = mnist::run(&args).err().expect("a bad size is an error").to_string();
        assert!(e.contains(says), "--hidden {hidden}: {e}");
    }
    for (flag, value, says) in [
        ("--model.hidden", "0", "invalid value '0' for '--model.hidden': 0 is not in 1..=1048576"),
        ("--model.hidden", "100000000000", "is not in 1..=1048576"),
        ("--trainer.max_epochs", "-1", "invalid value '-1' for '--trainer.max_epochs'"),
        ("--data.batch_size", "0", "invalid value '0' for '--data.batch_size': 0 is not in 1.."),
        ("--patience", "-3", "invalid value '-3' for '--patience'"),
        ("--model.lr", "-1e-3", "-0.001 is not a positive finite number"),
        ("--model.lr", "nan", "invalid value 'nan' for '--model.lr'"),
        ("--model.net", "rnn", "unknown model `rnn`: use mlp or cnn"),
        ("--data.download", "cifar", "unknown data set `cifar`"),
        ("--trainer.devices", "0", "invalid value '0' for '--trainer.devices': must be at least 1"),
    ] {
        let e = mnist::parse(["mnist", "fit", flag, value]).unwrap_err().to_string();
        assert!(e.contains(says) && !e.contains("unexpected argument"), "{flag} {value}: {e}");
    }
}

#[test]
fn empty_splits_are_named_before_training() {
    use lightning::data::idx::{encode_idx, IdxArray};
    let write = |dir: &std::path::Path, train: usize, test: usize| {
        for (name, n) in [("train", train), ("t10k", test)] {
            let images = IdxArray { dims: vec![n, 28, 28], data: vec![0; n * 784] };
            let labels = IdxArray { dims: vec![n], data: vec![1; n] };
            std::fs::write(dir.join(format!("{name}-images-idx3-ubyte")), encode_idx(&images)).unwrap();
            std::fs::write(dir.join(format!("{name}-labels-idx1-ubyte")), encode_idx(&labels)).unwrap();
        }
    };
    for (train, test, says) in
        [(9, 5, "0 validation samples: "), (0, 5, "0 validation samples: "), (20, 0, "0 test samples: ")]
    {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), train, test);
        let root = dir.path().join("runs");
        let args = mnist::parse([
            "mnist",
            "fit",
            "--data.data_dir",
            dir.path().to_str().unwrap(),
            "--trainer.default_root_dir",
            root.to_str().unwrap(),
        ])
        .unwrap();
        let e = mnist::run(&args).err().expect("an empty split is an error").to_string();
        assert!(e.contains(says), "{train} training, {test} test images: {e}");
        assert!(!root.exists(), "nothing was trained or written");
    }
}

const PREEMPT_ROOT: &str = "MNIST_PREEMPTED_ROOT";

#[test]
#[ignore = "run by a_preempted_run_saves_requeues_and_resumes in a child process"]
fn preempted_example_child() {
    let Some(root) = std::env::var_os(PREEMPT_ROOT) else { return };
    let args = mnist::parse([
        "mnist",
        "fit",
        "--trainer.accelerator",
        "cpu",
        "--trainer.max_epochs",
        "6",
        "--patience",
        "10",
        "--trainer.auto_requeue",
        "--trainer.default_root_dir",
        root.to_str().unwrap(),
    ])
    .unwrap();
    match mnist::run(&args) {
        Ok(_) => std::process::exit(0),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(e.exit_code())
        }
    }
}

/// SLURM's warning signal mid-training: the example stops after the batch, writes a
/// mid-epoch checkpoint, requeues the job (a fake `scontrol` records its arguments), exits
/// with 128 + SIGUSR1, and a run started again from that checkpoint continues to the end.
#[test]
fn a_preempted_run_saves_requeues_and_resumes() {
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let (bin, root) = (dir.path().join("bin"), dir.path().join("runs"));
    std::fs::create_dir(&bin).unwrap();
    let log = dir.path().join("scontrol.log");
    std::fs::write(bin.join("scontrol"), format!("#!/bin/sh\necho \"$@\" >> '{}'\n", log.display())).unwrap();
    std::fs::set_permissions(bin.join("scontrol"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::join_paths(
        std::iter::once(bin.clone()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "preempted_example_child", "--nocapture"])
        .env(PREEMPT_ROOT, &root)
        .env("PATH", path)
        .env("SLURM_JOB_ID", "777")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // the first epoch's checkpoint: the run is in its second epoch now
    let ckpts = root.join("lightning_logs/version_0/checkpoints");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !ckpts.join("last.ckpt").exists() {
        assert!(Instant::now() < deadline, "the child never finished an epoch");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: sends a signal to our own child process, which is still running (not yet waited for).
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGUSR1) }, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + libc::SIGUSR1), "{stderr}");
    assert!(stderr.contains("error: interrupted by SIGUSR1 at epoch "), "{stderr}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "requeue 777\n");
    let saved = ckpts.join("on_exception.ckpt");
    assert!(stderr.contains(&format!("resume with: --ckpt_path {}", saved.display())), "{stderr}");
    let ck = lightning::Checkpoint::load(&saved).unwrap();
    assert!(ck.epoch >= 1 && ck.global_step > 0, "epoch {}, step {}", ck.epoch, ck.global_step);

    // started again with `--ckpt-path last`: the newest of the runs' last.ckpt and
    // on_exception.ckpt, the latter here (the same run as from its explicit path)
    let again = |ckpt: &str| {
        let r = root.to_str().unwrap();
        let argv = [
            "mnist",
            "fit",
            "--trainer.accelerator",
            "cpu",
            "--trainer.max_epochs",
            "6",
            "--patience",
            "10",
            "--trainer.default_root_dir",
            r,
            "--ckpt_path",
            ckpt,
        ];
        let report = mnist::run(&mnist::parse(argv).unwrap()).unwrap();
        assert_eq!(report.epoch_lines.len(), 6 - ck.epoch, "it continued from epoch {}", ck.epoch);
        assert!(report.test_accuracy > 0.85, "{}", report.test_accuracy);
        let last = lightning::Checkpoint::load(report.last_checkpoint.as_ref().unwrap()).unwrap();
        last.state_dict.values().map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect::<Vec<_>>()
    };
    let resumed = again("last");
    assert!(resumed == again(saved.to_str().unwrap()), "`last` resumed from on_exception.ckpt");
    // … exactly: the optimizer, the scheduler and the generator were saved at the signal
    let r = dir.path().join("straight");
    let argv = [
        "mnist",
        "fit",
        "--trainer.accelerator",
        "cpu",
        "--trainer.max_epochs",
        "6",
        "--patience",
        "10",
        "--trainer.default_root_dir",
        r.to_str().unwrap(),
    ];
    let straight = mnist::run(&mnist::parse(argv).unwrap()).unwrap();
    let last = lightning::Checkpoint::load(straight.last_checkpoint.as_ref().unwrap()).unwrap();
    let weights = last.state_dict.values().map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    assert!(resumed == weights.collect::<Vec<_>>(), "preempted and resumed = uninterrupted, bit for bit");
}

/// With the example's defaults (jitter on, its generator in every checkpoint), 3 epochs and
/// 3 more resumed from `last.ckpt` end bit-identical to 6 epochs in one run.
#[test]
fn three_plus_three_epochs_equal_six_with_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let run = |root: &str, epochs: &str, resume: Option<&std::path::Path>| {
        let mut argv = vec![
            "mnist",
            "fit",
            "--trainer.accelerator",
            "cpu",
            "--trainer.max_epochs",
            epochs,
            "--trainer.default_root_dir",
            root,
        ];
        if let Some(p) = resume {
            argv.extend(["--ckpt_path", p.to_str().unwrap()]);
        }
        mnist::run(&mnist::parse(argv).unwrap()).unwrap()
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let straight = run(a.to_str().unwrap(), "6", None);
    let first = run(b.to_str().unwrap(), "3", None);
    let resumed = run(b.to_str().unwrap(), "6", first.last_checkpoint.as_deref());
    let weights = |p: &Option<std::path::PathBuf>| {
        let ck = lightning::Checkpoint::load(p.as_ref().unwrap()).unwrap();
        assert!(ck.extra.contains_key("example_rng"), "the generator is in the checkpoint");
        ck.state_dict
            .iter()
            .map(|(k, t)| (k.clone(), t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect::<Vec<_>>()
    };
    // (not assert_eq: it would print every weight)
    assert!(weights(&straight.last_checkpoint) == weights(&resumed.last_checkpoint), "bit-identical weights");
    assert_eq!(straight.test_accuracy, resumed.test_accuracy);
    let strip = |lines: &[String]| lines.iter().map(|l| l.rsplit_once("  ").unwrap().0.to_string()).collect::<Vec<_>>();
    assert_eq!(strip(&straight.epoch_lines[3..]), strip(&resumed.epoch_lines));
}
