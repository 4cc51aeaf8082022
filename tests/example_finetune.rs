//! Runs the fine-tuning example (`examples/finetune.rs`) small: pretraining on the MNIST
//! sample, loading with the prefix map, fine-tuning with the backbone unfrozen at epoch 1.

#[path = "../examples/finetune.rs"]
mod finetune;

#[test]
fn the_example_pretrains_loads_and_finetunes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_string();
    let flags =
        ["--root", &root, "--pretrain-epochs", "2", "--epochs", "3", "--unfreeze-at", "1", "--train-size", "3000"];
    let args = finetune::parse(std::iter::once("finetune").chain(flags).map(String::from)).unwrap();
    let report = finetune::run(&args).unwrap();
    assert!(report.pretrain_accuracy > 0.85, "{report:?}");
    assert_eq!(report.load.loaded, ["backbone.fc.bias", "backbone.fc.weight"]);
    assert_eq!(report.load.missing, ["head.bias", "head.weight"]);
    assert_eq!(report.load.unexpected, ["classifier.bias", "classifier.weight"]);
    // unfrozen at epoch 1 at a tenth of the head's rate, doubled at epoch 2
    let lr = args.lr;
    assert!((report.backbone_lr.unwrap() - 2.0 * 0.1 * lr).abs() < 1e-12, "{report:?}");
    // well above chance on either task (10 classes of Fashion-MNIST, or 2 of the fallback)
    assert!(report.test_accuracy > 0.7, "{report:?}");
    assert!(dir.path().join("pretrained.safetensors").is_file());
    assert!(report.task.contains("Fashion-MNIST") || report.task.contains("parity"), "{}", report.task);
}
