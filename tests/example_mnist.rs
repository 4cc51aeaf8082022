//! Runs the MNIST example itself (its `run`, with its default arguments) on the embedded
//! sample, and checks the promise: at least 90% test accuracy.

#[path = "../examples/mnist.rs"]
mod mnist;

use clap::Parser;

#[test]
fn example_reaches_ninety_percent_on_the_embedded_sample() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let args = mnist::Args::parse_from(["mnist", "--accelerator", "cpu", "--root-dir", root]);
    let report = mnist::run(&args).unwrap();
    assert!(report.test_accuracy >= 0.90, "test accuracy {}", report.test_accuracy);
    assert!(report.epoch_lines.len() <= args.epochs);
    let best = report.best_checkpoint.clone().unwrap();
    assert!(best.starts_with(dir.path()) && best.is_dir(), "{}", best.display());
    assert!(best.file_name().unwrap().to_str().unwrap().starts_with("epoch="));
    assert!(report.last_checkpoint.as_ref().unwrap().ends_with("checkpoints/last.ckpt"));
    // the default CSV logger and the hyperparameters
    let logs = dir.path().join("lightning_logs/version_0");
    let csv = std::fs::read_to_string(logs.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().next().unwrap(), "epoch,step,test_acc,test_loss,train_loss,val_acc,val_loss");
    assert!(std::fs::read_to_string(logs.join("hparams.yaml")).unwrap().contains("model: mlp"));

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
    let args = mnist::Args::parse_from(["mnist", "--data-dir", dir.path().to_str().unwrap()]);
    let err = mnist::run(&args).err().expect("missing files are an error").to_string();
    assert!(err.contains("train-labels-idx1-ubyte"), "{err}");
}

#[test]
fn the_cnn_learns_in_one_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let args = mnist::Args::parse_from([
        "mnist",
        "--model",
        "cnn",
        "--epochs",
        "1",
        "--root-dir",
        dir.path().to_str().unwrap(),
    ]);
    let report = mnist::run(&args).unwrap();
    assert!(report.test_accuracy >= 0.85, "CNN test accuracy after one epoch: {}", report.test_accuracy);
}

#[test]
fn without_network_the_download_falls_back_to_the_embedded_sample() {
    let dir = tempfile::tempdir().unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (cache, root) = (dir.path().join("cache"), dir.path().join("runs"));
    let args = mnist::Args::parse_from([
        "mnist",
        "--download",
        "mnist",
        "--mirror",
        &format!("http://{dead}/"),
        "--cache-dir",
        cache.to_str().unwrap(),
        "--root-dir",
        root.to_str().unwrap(),
        "--epochs",
        "1",
    ]);
    let report = mnist::run(&args).unwrap();
    assert_eq!(report.data, "the embedded sample (download failed)");
    assert!(report.test_accuracy > 0.8);
}

#[test]
fn ckpt_path_last_goes_on_training_from_the_newest_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let first = mnist::Args::parse_from(["mnist", "--accelerator", "cpu", "--root-dir", root, "--epochs", "1"]);
    let one = mnist::run(&first).unwrap();
    assert_eq!(one.epoch_lines.len(), 1);
    // Lightning's ckpt_path="last", parsed by the flag: the first run's last.ckpt, then epoch 2 only
    let more = ["mnist", "--accelerator", "cpu", "--root-dir", root, "--epochs", "2", "--ckpt-path", "last"];
    let args = mnist::Args::parse_from(more);
    assert_eq!(args.ckpt_path, Some(lightning::CkptPath::Last));
    let two = mnist::run(&args).unwrap();
    assert_eq!(two.epoch_lines.len(), 1, "{:?}", two.epoch_lines);
    assert!(two.epoch_lines[0].starts_with("epoch  1 "), "{:?}", two.epoch_lines);
    assert!(two.last_checkpoint.unwrap().ends_with("version_1/checkpoints/last.ckpt"));
}
