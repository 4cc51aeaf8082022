//! Runs the GPT example itself (its `run`) in a tiny configuration on the embedded sample:
//! it learns past the unigram baseline, generates text, and resumes exactly.

#[path = "../examples/gpt.rs"]
#[allow(dead_code)] // the example's benchmark-only parts
mod gpt;

use clap::Parser;

/// One layer, two heads, d = 32, context 32, 40 batches of 32 an epoch.
fn tiny(root: &std::path::Path, more: &[&str]) -> gpt::Args {
    let mut argv = vec!["gpt", "--accelerator", "cpu", "--root-dir", root.to_str().unwrap()];
    argv.extend([
        "--n-layer",
        "1",
        "--n-head",
        "2",
        "--n-embd",
        "32",
        "--block-size",
        "32",
        "--batch-size",
        "32",
        "--limit-train-batches",
        "40",
        "--lr",
        "1e-2",
        "--sample-chars",
        "20",
        "--max-new-tokens",
        "25",
    ]);
    argv.extend(more);
    gpt::Args::parse_from(argv)
}

#[test]
fn the_tiny_gpt_beats_the_unigram_baseline_and_generates() {
    let dir = tempfile::tempdir().unwrap();
    let report = gpt::run(&tiny(dir.path(), &["--epochs", "2", "--prompt", "A horse", "--top-k", "5"])).unwrap();
    assert!(report.bigram < report.unigram, "{} {}", report.bigram, report.unigram);
    let last = *report.val_losses.last().unwrap();
    assert!(last < report.unigram, "val_loss {last} against the unigram baseline {}", report.unigram);
    assert_eq!(report.epoch_lines.len(), 2);
    assert!(report.epoch_lines[1].contains("unigram") && report.epoch_lines[1].contains("bigram"));
    // generation: the asked-for length, and one sample per epoch in the log directory
    assert_eq!(report.generated.chars().count(), 25, "{:?}", report.generated);
    assert_eq!(report.samples.len(), 2);
    assert!(report.samples.iter().all(|s| s.starts_with("A horse") && s.chars().count() == 27), "{:?}", report.samples);
    let log = std::fs::read_to_string(dir.path().join("lightning_logs/version_0/samples.txt")).unwrap();
    assert!(log.contains("--- epoch 1 (step 80) ---"), "{log}");
    let hparams = std::fs::read_to_string(dir.path().join("lightning_logs/version_0/hparams.yaml")).unwrap();
    assert!(hparams.contains("n_embd: 32") && hparams.contains("vocab_size:"), "{hparams}");

    // the same seed repeats the run, the generation included
    let again = gpt::run(&tiny(dir.path(), &["--epochs", "2", "--prompt", "A horse", "--top-k", "5"])).unwrap();
    assert_eq!(report.val_losses, again.val_losses);
    assert_eq!(report.generated, again.generated);

    // --predict-only generates from the checkpoint's weights, the same text
    let ckpt = report.last_checkpoint.unwrap();
    let args = ["--predict-only", "--ckpt-path", ckpt.to_str().unwrap(), "--prompt", "A horse", "--top-k", "5"];
    let predicted = gpt::run(&tiny(dir.path(), &args)).unwrap();
    assert!(predicted.epoch_lines.is_empty());
    assert_eq!(predicted.generated, report.generated);
}

#[test]
fn a_resumed_run_ends_where_an_uninterrupted_one_does_dropout_included() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // every epoch's checkpoint is kept: the first epoch's is where an interrupted run stopped
    // (the same schedule: OneCycleLR spans both epochs)
    let flags = ["--epochs", "2", "--dropout", "0.2", "--sample-chars", "0", "--save-top-k", "-1"];
    let whole = gpt::run(&tiny(a.path(), &flags)).unwrap();
    let first = a.path().join("lightning_logs/version_0/checkpoints/epoch=0-step=40.ckpt");
    assert!(first.is_dir(), "{}", first.display());
    let rest = gpt::run(&tiny(b.path(), &[&flags[..], &["--ckpt-path", first.to_str().unwrap()]].concat())).unwrap();
    assert_eq!(rest.val_losses, whole.val_losses[1..], "{:?}", rest.epoch_lines);
    assert!(rest.val_losses[0] < whole.val_losses[0], "the second epoch learned: {:?}", whole.val_losses);
    assert_eq!(rest.weights.len(), whole.weights.len());
    for ((name, w), (_, r)) in whole.weights.iter().zip(&rest.weights) {
        let diff = (w - r).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0, "{name} differs after the resume");
    }
}

#[test]
fn bad_settings_and_texts_are_errors_that_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let e = gpt::run(&tiny(dir.path(), &["--n-embd", "30", "--n-head", "4"])).err().unwrap().to_string();
    assert!(e.contains("does not split into 4 heads"), "{e}");
    let e = gpt::run(&tiny(dir.path(), &["--prompt", "\u{263a}"])).err().unwrap().to_string();
    assert!(e.contains("not in the corpus's vocabulary"), "{e}");
    let short = dir.path().join("short.txt");
    std::fs::write(&short, "to be or not to be").unwrap();
    let e = gpt::run(&tiny(dir.path(), &["--data", short.to_str().unwrap()])).err().unwrap().to_string();
    assert!(e.contains("18 characters") && e.contains("--block-size"), "{e}");
    let e = gpt::run(&tiny(dir.path(), &["--data", "/nonexistent/corpus"])).err().unwrap().to_string();
    assert!(e.contains("cannot read /nonexistent/corpus"), "{e}");
    for (flag, value, says) in [("--dropout", "1", "is not in [0, 1)"), ("--temperature", "0", "not a positive")] {
        let err = gpt::Args::try_parse_from(["gpt", flag, value]).unwrap_err().to_string();
        assert!(err.contains(says), "{flag} {value}: {err}");
    }
}
