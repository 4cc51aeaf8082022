//! `lightning::cli::LightningCli`: flags, config files and their precedence, errors that name
//! the key, `--print_config` round trips, `config.yaml` in the run's version directory, and
//! `fit` then `test --ckpt_path best` on a small regression model driven by the CLI.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarMap};
use lightning::cli::{CliArgs, Invalid, LightningCli, Subcommand};
use lightning::prelude::*;
use lightning::DataModule;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct HParams {
    hidden: usize,
    lr: f64,
    name: String,
    tag: Option<String>,
}

impl Default for HParams {
    fn default() -> Self {
        HParams { hidden: 8, lr: 0.05, name: "ramp".into(), tag: None }
    }
}

impl CliArgs for HParams {
    fn check(&self) -> Result<(), Invalid> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Invalid::new("lr", format!("{} is not a positive finite number", self.lr)));
        }
        if self.hidden == 0 {
            return Err(Invalid::new("hidden", "must be at least 1"));
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct DataArgs {
    samples: usize,
    batch_size: usize,
    urls: Vec<String>,
}

impl Default for DataArgs {
    fn default() -> Self {
        DataArgs { samples: 64, batch_size: 16, urls: Vec::new() }
    }
}

impl CliArgs for DataArgs {}

type Cli = LightningCli<HParams, DataArgs>;

fn parse(args: &[&str]) -> Result<Cli, String> {
    Cli::try_parse_from(std::iter::once("prog").chain(args.iter().copied())).map_err(|e| e.to_string())
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn flags_set_every_section() {
    let cli = parse(&[
        "fit",
        "--trainer.max_epochs",
        "3",
        "--trainer.limit_val_batches",
        "0.25",
        "--trainer.limit_train_batches=10",
        "--trainer.precision",
        "bf16-mixed",
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.detect_anomaly",
        "--model.lr",
        "1e-3",
        "--model.name",
        "123",
        "--model.tag",
        "456",
        "--data.samples",
        "32",
        "--data.urls",
        "http://a/",
        "--ckpt_path",
        "last",
    ])
    .unwrap();
    assert_eq!(cli.subcommand, Subcommand::Fit);
    assert_eq!(cli.trainer.max_epochs, Some(3));
    assert_eq!(cli.trainer.limit_val_batches, lightning::Limit::Fraction(0.25));
    assert_eq!(cli.trainer.limit_train_batches, lightning::Limit::Batches(10));
    assert_eq!(cli.trainer.precision, Some(lightning::Precision::Bf16Mixed));
    assert_eq!(cli.trainer.accelerator, lightning::Accelerator::Cpu);
    assert!(!cli.trainer.enable_progress_bar && cli.trainer.detect_anomaly);
    // a string field takes the text as given; an Option<String> falls back to it
    assert_eq!(cli.model, HParams { hidden: 8, lr: 1e-3, name: "123".into(), tag: Some("456".into()) });
    assert_eq!(cli.data, DataArgs { samples: 32, batch_size: 16, urls: vec!["http://a/".into()] });
    let urls = parse(&["fit", "--data.urls", "[http://a/, http://b/]"]).unwrap().data.urls;
    assert_eq!(urls, ["http://a/", "http://b/"], "a YAML list, or one value as a list of one");
    assert_eq!(cli.ckpt_path, Some(lightning::CkptPath::Last));
    // the rest keeps Lightning's defaults
    assert_eq!(cli.trainer.num_sanity_val_steps, 2);
    assert!(
        parse(&["test", "--trainer.num_sanity_val_steps", "-1"]).unwrap().trainer.num_sanity_val_steps == usize::MAX
    );
}

#[test]
fn configs_merge_in_order_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let a =
        write(dir.path(), "a.yaml", "trainer:\n  max_epochs: 5\n  max_steps: 100\nmodel:\n  hidden: 32\n  lr: 0.1\n");
    let b = write(dir.path(), "b.yaml", "trainer:\n  max_epochs: 7\nmodel:\n  lr: 0.2\ndata:\n  batch_size: 4\n");
    let cli = parse(&["fit", "--config", &a, "--config", &b, "--model.lr", "0.3"]).unwrap();
    assert_eq!(cli.trainer.max_epochs, Some(7), "the later file wins");
    assert_eq!(cli.trainer.max_steps, Some(100), "keys the later file leaves keep the earlier's");
    assert_eq!((cli.model.hidden, cli.model.lr), (32, 0.3), "the flag wins over both files");
    assert_eq!(cli.data.batch_size, 4);
    // a flag before --config still wins; a flag given twice takes the last
    let cli =
        parse(&["fit", "--model.lr", "0.4", "--config", &a, "--model.hidden", "2", "--model.hidden", "3"]).unwrap();
    assert_eq!((cli.model.hidden, cli.model.lr), (3, 0.4));
}

#[test]
fn bad_values_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["fit".into(), "--trainer.max_epochs".into(), "abc".into()],
            "invalid value 'abc' for '--trainer.max_epochs'",
        ),
        (
            vec!["fit".into(), "--trainer.max_epochs".into(), "-1".into()],
            "invalid value '-1' for '--trainer.max_epochs'",
        ),
        (
            vec!["fit".into(), "--trainer.precision".into(), "8".into()],
            "invalid value '8' for '--trainer.precision': unknown precision",
        ),
        (
            vec!["fit".into(), "--trainer.limit_val_batches".into(), "1.5".into()],
            "invalid value '1.5' for '--trainer.limit_val_batches': a fraction must be in [0, 1]",
        ),
        (
            vec!["fit".into(), "--model.lr".into(), "0".into()],
            "invalid value '0' for '--model.lr': 0 is not a positive finite number",
        ),
        (vec!["fit".into(), "--trainer.max_epoch".into(), "3".into()], "--trainer.max_epochs"),
        (vec!["fit".into(), "--modle.lr".into(), "3".into()], "unexpected argument '--modle.lr'"),
    ];
    let typo = write(dir.path(), "typo.yaml", "trainer:\n  max_epoch: 3\n");
    let wrong = write(dir.path(), "wrong.yaml", "model:\n  hidden: many\n");
    let checked = write(dir.path(), "checked.yaml", "model:\n  hidden: 0\n");
    let top = write(dir.path(), "top.yaml", "modell:\n  hidden: 2\n");
    let not_yaml = write(dir.path(), "bad.yaml", "trainer: [1,\n");
    let mut cases = cases;
    for (file, says) in [
        (&typo, format!("{typo}: unknown key `trainer.max_epoch`; did you mean `trainer.max_epochs`?")),
        (&wrong, format!("{wrong}: invalid value for `model.hidden`: invalid type: string \"many\", expected usize")),
        (&checked, format!("{checked}: invalid value for `model.hidden`: must be at least 1")),
        (&top, format!("{top}: unknown key `modell`; did you mean `model`?")),
        (&not_yaml, format!("{not_yaml} is not valid YAML")),
    ] {
        cases.push((vec!["fit".into(), "--config".into(), file.clone()], Box::leak(says.into_boxed_str())));
    }
    cases.push((vec!["fit".into(), "--config".into(), "/nonexistent/c.yaml".into()], "cannot read the config file"));
    for (args, says) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let e = parse(&args).expect_err(&format!("{args:?} must be an error"));
        assert!(e.contains(says), "{args:?}: expected {says:?} in\n{e}");
        assert!(e.starts_with("error: "), "a clap error: {e}");
    }
    let e = Cli::try_parse_from(["prog"]).unwrap_err();
    assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand);
}

#[test]
fn print_config_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["fit", "--trainer.max_epochs", "4", "--trainer.gradient_clip_val", "0.5", "--model.lr", "0.002"];
    let cli = parse(&[&args[..], &["--print_config", "--ckpt_path", "best"]].concat()).unwrap();
    assert!(cli.print_config);
    let yaml = cli.config_yaml().to_string();
    assert!(yaml.starts_with("trainer:\n"), "Lightning's order: trainer, model, data, ckpt_path\n{yaml}");
    assert!(yaml.contains("  max_epochs: 4\n") && yaml.contains("  lr: 0.002\n") && yaml.contains("ckpt_path: best"));
    assert!(yaml.contains("  limit_train_batches: 1.0\n"), "a fraction stays a float: {yaml}");
    let file = write(dir.path(), "printed.yaml", &yaml);
    let back = parse(&["fit", "--config", &file]).unwrap();
    assert_eq!(back.config_yaml(), yaml, "the printed config reads back to itself");
    assert_eq!(back.model, cli.model);
    assert_eq!(back.trainer.gradient_clip_val, Some(0.5));
    assert_eq!(back.ckpt_path, Some(lightning::CkptPath::Best));
}

// ---- a small regression model and datamodule, driven by the CLI ----

#[lightning_module]
struct Regressor {
    vars: VarMap,
    l1: Linear,
    l2: Linear,
    #[hparams]
    hparams: HParams,
}

impl Regressor {
    fn new(hparams: HParams, device: &Device) -> lightning::Result<Self> {
        let vars = VarMap::new();
        let vb = lightning::seeded_var_builder(&vars, 7, DType::F32, device);
        let l1 = candle_nn::linear(2, hparams.hidden, vb.pp("l1"))?;
        let l2 = candle_nn::linear(hparams.hidden, 1, vb.pp("l2"))?;
        Ok(Regressor { vars, l1, l2, hparams })
    }
    fn loss(&self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        self.l2.forward(&self.l1.forward(&batch.0)?.tanh()?)?.sub(&batch.1)?.sqr()?.mean_all()
    }
}

#[lightning_module]
impl Regressor {
    fn training_step(&mut self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        self.loss(batch)
    }
    fn validation_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<()> {
        trainer.log("val_loss", self.loss(batch)?)
    }
    fn test_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<()> {
        trainer.log("test_loss", self.loss(batch)?)
    }
    fn configure_optimizers(&mut self) -> lightning::Result<AdamW> {
        AdamW::with_lr(&self.vars, self.hparams.lr)
    }
}

/// y = x0 - 2 x1 on a grid.
struct Plane(DataArgs);

#[datamodule]
impl DataModule for Plane {
    type Batch = (Tensor, Tensor);
    type Loader = DataLoader;
    fn train_dataloader(&mut self) -> lightning::Result<Option<DataLoader>> {
        self.loader().map(Some)
    }
    fn val_dataloader(&mut self) -> lightning::Result<Option<DataLoader>> {
        self.loader().map(Some)
    }
    fn test_dataloader(&mut self) -> lightning::Result<Option<DataLoader>> {
        self.loader().map(Some)
    }
}

impl Plane {
    fn loader(&self) -> lightning::Result<DataLoader> {
        let n = self.0.samples;
        let x = (Tensor::arange(0f32, 2.0 * n as f32, &Device::Cpu)?.reshape((n, 2))? / n as f64)?;
        let y = (x.narrow(1, 0, 1)? - (x.narrow(1, 1, 1)? * 2.0)?)?;
        DataLoader::new(x, y, self.0.batch_size)
    }
}

/// What a user's `main` does: build the trainer from the flags, the model and data from
/// their sections, and run the subcommand.
fn run(cli: &Cli, trainer: &mut Trainer) -> lightning::Result<Option<f64>> {
    let mut model = Regressor::new(cli.model.clone(), trainer.device())?;
    let mut data = Plane(cli.data.clone());
    match cli.subcommand {
        Subcommand::Fit => trainer.fit(&mut model, Data::datamodule(&mut data)).map(|_| None),
        Subcommand::Validate => {
            trainer.validate(&mut model, Data::datamodule(&mut data)).map(|m| m.get("val_loss").copied())
        }
        Subcommand::Test => trainer.test(&mut model, Data::datamodule(&mut data)).map(|m| m.get("test_loss").copied()),
        Subcommand::Predict => Err(lightning::Error::msg("this model has no predict_step")),
    }
}

fn build(cli: &Cli) -> Trainer {
    cli.trainer_builder().checkpoint(ModelCheckpoint::new().monitor("val_loss").save_last(true)).build().unwrap()
}

#[test]
fn fit_then_test_best_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let common =
        ["--trainer.default_root_dir", root, "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"];
    let fit = parse(&[&["fit", "--trainer.max_epochs", "3", "--model.lr", "0.02"][..], &common].concat()).unwrap();
    let mut trainer = build(&fit);
    run(&fit, &mut trainer).unwrap();
    let v0 = dir.path().join("lightning_logs/version_0");
    let saved = std::fs::read_to_string(v0.join("config.yaml")).unwrap();
    assert_eq!(saved, fit.config_yaml(), "config.yaml is the config the run used");
    assert!(saved.contains("  max_epochs: 3\n") && saved.contains("  lr: 0.02\n"), "{saved}");
    let best = trainer.checkpoint_callback().and_then(|c| c.best_model_path()).unwrap().to_path_buf();

    // the same trainer, told by the CLI to test "best": the weights of the best epoch
    let test = parse(&[&["test", "--ckpt_path", "best"][..], &common].concat()).unwrap();
    assert_eq!(test.ckpt_path, Some(lightning::CkptPath::Best));
    trainer.ckpt_path(test.ckpt_path.clone().unwrap());
    let best_loss = run(&test, &mut trainer).unwrap().unwrap();
    let plain = parse(&[&["test"][..], &common].concat()).unwrap();
    let untrained = run(&plain, &mut build(&plain)).unwrap().unwrap();
    assert!(best_loss < untrained, "the best checkpoint was loaded: {best_loss} vs untrained {untrained}");

    // a new process: `test --ckpt_path <path>` on a fresh trainer gives the same loss, and
    // its config goes into its own version directory, leaving the fit's alone
    let path = best.to_str().unwrap();
    let again = parse(&[&["test", "--ckpt_path", path][..], &common].concat()).unwrap();
    let loss = run(&again, &mut build(&again)).unwrap().unwrap();
    assert!((loss - best_loss).abs() < 1e-6, "{loss} vs {best_loss}");
    assert_eq!(std::fs::read_to_string(v0.join("config.yaml")).unwrap(), saved, "not overwritten");
    let versions: Vec<String> = (0..4)
        .filter_map(|v| {
            std::fs::read_to_string(dir.path().join(format!("lightning_logs/version_{v}/config.yaml"))).ok()
        })
        .collect();
    assert!(versions.iter().any(|c| c.contains(&format!("ckpt_path: {path}"))), "{versions:?}");

    // "best" in a fresh process: the trainer's error, not a panic
    let fresh = parse(&[&["test", "--ckpt_path", "best"][..], &common].concat()).unwrap();
    let e = run(&fresh, &mut build(&fresh)).unwrap_err().to_string();
    assert!(e.contains("ModelCheckpoint has saved no checkpoint yet"), "{e}");
}
