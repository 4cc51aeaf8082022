//! Weights between the MNIST example and Python. `numpy_recomputes_the_rust_logits` trains
//! the example's MLP, writes its logits on the 1,000 test images of the embedded sample and
//! has `scripts/python-roundtrip.py` recompute them in numpy from the checkpoint's
//! `model.safetensors`; it needs numpy and safetensors, so `scripts/python-roundtrip.sh`
//! (which installs them) runs it. `torch_weights_load_by_name` loads a `safetensors` file
//! written by torch (`tests/fixtures/torch-mlp/`, from `scripts/make_torch_fixture.py`).

#[allow(dead_code)] // only part of the example is used here
#[path = "../examples/mnist.rs"]
mod mnist;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use lightning::HasParameters;

const TEST_SAMPLE: [&[u8]; 4] = [
    include_bytes!("../examples/data/mnist-sample/train-images-idx3-ubyte.gz"),
    include_bytes!("../examples/data/mnist-sample/train-labels-idx1-ubyte.gz"),
    include_bytes!("../examples/data/mnist-sample/t10k-images-idx3-ubyte.gz"),
    include_bytes!("../examples/data/mnist-sample/t10k-labels-idx1-ubyte.gz"),
];

fn mlp(hidden: usize) -> mnist::Classifier<mnist::MlpNet> {
    let hparams = mnist::HParams { hidden, ..Default::default() };
    mnist::Classifier::new(hparams, &Device::Cpu).unwrap()
}

fn test_images(n: usize) -> (Tensor, Tensor) {
    let data = lightning::data::mnist::from_bytes(TEST_SAMPLE, "examples/data/mnist-sample").unwrap();
    (data.test.images().unwrap().narrow(0, 0, n).unwrap(), data.test.labels.narrow(0, 0, n).unwrap())
}

#[test]
#[ignore = "needs numpy and safetensors: scripts/python-roundtrip.sh installs them and runs it"]
fn numpy_recomputes_the_rust_logits() {
    // LIGHTNING_ROUNDTRIP_DIR keeps the run, its checkpoints and the outputs for a look
    let tmp = tempfile::tempdir().unwrap();
    let kept = std::env::var_os("LIGHTNING_ROUNDTRIP_DIR").map(std::path::PathBuf::from);
    let dir = kept.as_deref().unwrap_or(tmp.path());
    let root = dir.to_str().unwrap();
    let args = mnist::parse([
        "mnist",
        "fit",
        "--trainer.accelerator",
        "cpu",
        "--trainer.default_root_dir",
        root,
        "--trainer.max_epochs",
        "2",
    ])
    .unwrap();
    let best = mnist::run(&args).unwrap().best_checkpoint.expect("a best checkpoint");
    // the checkpoint loaded as a user would, then its logits on the first 1,000 test images
    let mut model = mlp(args.model.hidden);
    lightning::load_from_checkpoint(&mut model, &best).unwrap();
    let (images, labels) = test_images(1000);
    assert_eq!(images.dim(0).unwrap(), 1000);
    let logits = model.forward(&images).unwrap();
    let outputs = dir.join("rust-outputs.safetensors");
    let tensors = HashMap::from([("images", images), ("labels", labels), ("logits", logits)]);
    candle_core::safetensors::save(&tensors, &outputs).unwrap();

    let python = std::env::var("LIGHTNING_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/python-roundtrip.py");
    let out = std::process::Command::new(&python)
        .arg(script)
        .arg(best.join("model.safetensors"))
        .arg(&outputs)
        .output()
        .unwrap_or_else(|e| panic!("could not start `{python}` (set LIGHTNING_PYTHON): {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "python-roundtrip.py failed: {text}");
    assert!(text.contains("on 1000 images"), "{text}");
}

#[test]
fn torch_weights_load_by_name() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch-mlp");
    let expected = candle_core::safetensors::load(fixture.join("expected.safetensors"), &Device::Cpu).unwrap();
    let torch_logits = &expected["logits"];
    let (images, _) = test_images(torch_logits.dim(0).unwrap());
    let model = mlp(4);
    let before = model.forward(&images).unwrap();
    // candle's `VarMap::load`: every variable by its name, shapes checked
    model.parameters().clone().load(fixture.join("model.safetensors")).unwrap();
    let ours = model.forward(&images).unwrap();
    let diff = |a: &Tensor| (a - torch_logits).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(diff(&before) > 0.1, "the seeded weights already gave torch's logits: the test would prove nothing");
    assert!(diff(&ours) <= 1e-5, "torch's logits differ from ours by {}", diff(&ours));
}
