//! `LightningCli`: Lightning's `LightningCLI`, a program's command line and config files
//! from the trainer's flags and the model's and datamodule's hyperparameters.
//!
//! ```text
//! my-trainer fit --config base.yaml --config big.yaml --trainer.max_epochs 20 --model.lr 3e-4
//! my-trainer fit --print_config > run.yaml       # everything, with defaults; feed it back with --config
//! my-trainer test --config run.yaml --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt
//! ```
//!
//! - `fit | validate | test | predict` subcommands, as Lightning's;
//! - every [`TrainerConfig`] field as `--trainer.<field>` (the struct's serde form, so a new
//!   flag is a new option without more code), the model's hyperparameters as
//!   `--model.<field>` and the datamodule's as `--data.<field>`: any struct that derives
//!   `Serialize`, `Deserialize` and `Default` and implements [`CliArgs`];
//! - `--config file.yaml`, several allowed: later files win, flags win over files;
//! - `--print_config` prints the merged config as YAML and exits;
//! - `--ckpt_path` (`best`, `last` or a path, as [`crate::Trainer::ckpt_path`] takes them);
//! - the config is saved as `config.yaml` in the run's log directory
//!   (`lightning_logs/version_N/`), by rank 0, as Lightning's `SaveConfigCallback` does.
//!
//! A value is read as YAML (`--trainer.limit_val_batches 0.25` is a float, `10` an integer,
//! `null` none), except for a field whose default is a string, which takes the text as
//! it is. Bad values are clap errors that name the flag, or the file and key.
//!
//! ```
//! use lightning::cli::{CliArgs, Invalid, LightningCli, NoArgs, Subcommand};
//! use lightning::serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, Clone)]
//! #[serde(crate = "lightning::serde")]
//! struct HParams { hidden: usize, lr: f64 }
//!
//! impl Default for HParams {
//!     fn default() -> Self { HParams { hidden: 64, lr: 1e-3 } }
//! }
//!
//! impl CliArgs for HParams {
//!     fn check(&self) -> Result<(), Invalid> {
//!         if !(self.lr > 0.0) {
//!             return Err(Invalid::new("lr", "must be a positive number"));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let cli = LightningCli::<HParams>::try_parse_from(["prog", "fit", "--model.lr", "0.01", "--trainer.max_epochs", "3"])
//!     .unwrap();
//! assert_eq!(cli.subcommand, Subcommand::Fit);
//! assert_eq!((cli.model.hidden, cli.model.lr, cli.trainer.max_epochs), (64, 0.01, Some(3)));
//!
//! let e = LightningCli::<HParams>::try_parse_from(["prog", "fit", "--model.lr", "-1"]).unwrap_err();
//! assert!(e.to_string().contains("invalid value '-1' for '--model.lr': must be a positive number"), "{e}");
//!
//! // then: build the trainer from the flags, the model from `cli.model`, and run the subcommand
//! let trainer = cli.trainer_builder().enable_checkpointing(false).build()?;
//! # Ok::<(), lightning::Error>(())
//! ```

/// clap, whose errors the parsing functions return.
pub use clap;

mod command;
mod merge;
mod typed;

use std::ffi::OsString;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{CkptPath, Trainer, TrainerBuilder, TrainerConfig};

/// The hyperparameters of a `--model.*` or `--data.*` section (or the program's own
/// top-level options): the struct's fields are the keys, its `Default` the defaults.
pub trait CliArgs: Serialize + DeserializeOwned + Default {
    /// Checks the values once read (ranges, combinations); the error names the key, and the
    /// CLI reports it against the flag or the file that gave the value.
    fn check(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

/// A value [`CliArgs::check`] rejects: the field's name and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The field's name (`"lr"`).
    pub key: String,
    /// What is wrong, and what to give instead.
    pub message: String,
}

impl Invalid {
    /// `key` is the field's name (`"lr"`), `message` says what is wrong and what to give.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid { key: key.into(), message: message.into() }
    }
}

/// A section with no keys: the default for the datamodule and the top-level options.
#[derive(Serialize, Deserialize, Default, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

impl CliArgs for NoArgs {}

/// Lightning's subcommands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subcommand {
    /// `fit`: train, validating as configured.
    Fit,
    /// `validate`: one validation run.
    Validate,
    /// `test`: one test run.
    Test,
    /// `predict`: predictions over the predict loader.
    Predict,
}

impl Subcommand {
    pub(crate) const ALL: [Subcommand; 4] =
        [Subcommand::Fit, Subcommand::Validate, Subcommand::Test, Subcommand::Predict];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Subcommand::Fit => "fit",
            Subcommand::Validate => "validate",
            Subcommand::Test => "test",
            Subcommand::Predict => "predict",
        }
    }
}

impl std::fmt::Display for Subcommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed command line: the subcommand, the trainer's flags, the model's (`M`), the
/// datamodule's (`D`) and the program's own top-level options (`X`), all with config files
/// and defaults merged in. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct LightningCli<M = NoArgs, D = NoArgs, X = NoArgs> {
    /// The subcommand given.
    pub subcommand: Subcommand,
    /// The trainer's flags (`trainer:`, `--trainer.<flag>`).
    pub trainer: TrainerConfig,
    /// The model's arguments (`model:`, `--model.<field>`).
    pub model: M,
    /// The datamodule's arguments (`data:`, `--data.<field>`).
    pub data: D,
    /// Top-level options (`--<field>`), Lightning's `parser.add_argument` in a CLI subclass.
    pub extra: X,
    /// `--ckpt_path`: `best`, `last` or a path.
    pub ckpt_path: Option<CkptPath>,
    /// `--print_config` was given: [`LightningCli::parse`] prints the config and exits.
    pub print_config: bool,
    config_yaml: String,
}

impl<M: CliArgs, D: CliArgs, X: CliArgs> LightningCli<M, D, X> {
    /// Parses the process's arguments; on an error, `--help` or `--print_config` it prints
    /// and exits as clap does (status 2 for an error, 0 otherwise).
    pub fn parse() -> Self {
        Self::parse_with(TrainerConfig::default())
    }

    /// [`LightningCli::parse`] with the program's own trainer defaults (Lightning's
    /// `trainer_defaults`): flags and files still override them.
    pub fn parse_with(trainer_defaults: TrainerConfig) -> Self {
        let cli = Self::try_parse_from_with(std::env::args_os(), trainer_defaults).unwrap_or_else(|e| e.exit());
        if cli.print_config {
            print!("{}", cli.config_yaml);
            std::process::exit(0);
        }
        cli
    }

    /// Parses `args` (the first is the program's name); errors, `--help` included, are
    /// clap's, to print with `e.exit()`.
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::try_parse_from_with(args, TrainerConfig::default())
    }

    /// [`LightningCli::try_parse_from`] with the program's own trainer defaults.
    pub fn try_parse_from_with<I, T>(args: I, trainer_defaults: TrainerConfig) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let sections = merge::Sections::of::<M, D, X>(&trainer_defaults)?;
        let mut cmd = command::build(&sections);
        let matches = cmd.try_get_matches_from_mut(args)?;
        let Some((name, m)) = matches.subcommand() else {
            return Err(cmd.error(clap::error::ErrorKind::MissingSubcommand, "a subcommand is required"));
        };
        let subcommand = Subcommand::ALL.into_iter().find(|s| s.name() == name).unwrap_or(Subcommand::Fit);
        // errors show the subcommand's usage, as clap's own do
        let mut cmd = cmd.find_subcommand(name).cloned().unwrap_or(cmd);
        let mut tree = sections.defaults();
        if let Some(files) = m.get_many::<String>("config") {
            for file in files {
                tree.load_file(&sections, file.as_ref()).map_err(|e| e.format(&mut cmd))?;
            }
        }
        tree.apply_flags(&sections, m);
        let parsed = typed::read::<M, D, X>(&mut tree).map_err(|e| e.format(&mut cmd))?;
        Ok(LightningCli {
            subcommand,
            trainer: parsed.trainer,
            model: parsed.model,
            data: parsed.data,
            extra: parsed.extra,
            ckpt_path: parsed.ckpt_path,
            print_config: m.get_flag("print_config"),
            config_yaml: parsed.yaml,
        })
    }

    /// The merged config as YAML (what `--print_config` prints and `config.yaml` holds): give
    /// it back with `--config` for the same run.
    pub fn config_yaml(&self) -> &str {
        &self.config_yaml
    }

    /// A trainer builder with every `--trainer.*` flag, the `--ckpt_path` for its first entry
    /// point, and `config.yaml` to save in the first run's log directory. Add callbacks,
    /// loggers and a `ModelCheckpoint` to it as usual.
    pub fn trainer_builder(&self) -> TrainerBuilder<()> {
        let mut builder = Trainer::builder().config(self.trainer.clone());
        builder.resume = self.ckpt_path.clone();
        builder.log_files.push(("config.yaml".into(), self.config_yaml.clone()));
        builder
    }
}
