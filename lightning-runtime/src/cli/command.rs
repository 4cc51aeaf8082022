//! The clap command: one subcommand per entry point, each with every key as a flag.

use clap::{Arg, ArgAction, Command};
use serde_norway::Value;

use super::merge::Sections;
use super::Subcommand;

fn about(s: Subcommand) -> &'static str {
    match s {
        Subcommand::Fit => "Runs the full optimization routine",
        Subcommand::Validate => "Performs one evaluation epoch over the validation set",
        Subcommand::Test => "Performs one evaluation epoch over the test set",
        Subcommand::Predict => "Runs inference on the predict data",
    }
}

/// The default as it would be written in YAML, on one line.
fn shown(v: &Value) -> String {
    let text = serde_norway::to_string(v).unwrap_or_default();
    text.trim_end().replace('\n', " ")
}

fn args(sections: &Sections) -> Vec<Arg> {
    let mut args = vec![
        Arg::new("config")
            .long("config")
            .value_name("FILE")
            .action(ArgAction::Append)
            .help("A YAML config file; several allowed: later files win, flags win over files"),
        Arg::new("print_config")
            .long("print_config")
            .action(ArgAction::SetTrue)
            .help("Print the config as YAML (give it back with --config) and exit"),
    ];
    for s in &sections.list {
        for (key, default) in &s.defaults {
            let id = s.full_key(key);
            let help = if id == "ckpt_path" {
                "The checkpoint to start from: best, last or a path".to_string()
            } else {
                format!("default: {}", shown(default))
            };
            let mut arg = Arg::new(id.clone())
                .long(id)
                .value_name("VALUE")
                .action(ArgAction::Set)
                .help(help)
                .help_heading(s.heading);
            if matches!(default, Value::Bool(_)) {
                // `--trainer.enable_progress_bar` alone means true; `false` turns it off
                arg = arg.num_args(0..=1).default_missing_value("true").value_name("BOOL");
            } else {
                // `--model.lr -1e-3` reaches the value's check (clap's negative numbers stop at `-1`)
                arg = arg.allow_hyphen_values(true);
            }
            args.push(arg);
        }
    }
    args
}

/// The program's command; its name comes from `argv[0]` when parsing.
pub(crate) fn build(sections: &Sections) -> Command {
    let args = args(sections);
    let subcommands = Subcommand::ALL.map(|s| {
        Command::new(s.name())
            .about(about(s))
            .args(args.iter().cloned())
            // a flag given twice takes the last value
            .args_override_self(true)
    });
    Command::new("lightning-cli")
        .about("Lightning's CLI: fit, validate, test or predict with flags and YAML configs")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommands(subcommands)
}
