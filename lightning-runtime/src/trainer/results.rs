//! What Lightning prints around an entry point: the checkpoint it restores from (stderr,
//! as its `rank_zero_info`), and the table of metrics after `validate` and `test` (stdout,
//! as its `_print_results`). Rank 0 alone prints.

use std::io::IsTerminal;
use std::path::Path;

use crate::dist::rank_zero_only;
use crate::{Metrics, Stage};

/// "Restoring states from the checkpoint path at …", before a `ckpt_path` is read.
pub(crate) fn restoring(path: &Path) {
    rank_zero_only(|| eprintln!("Restoring states from the checkpoint path at {}", path.display()));
}

/// "Restored all states from the checkpoint at …", after a `fit` resume applied every part.
pub(crate) fn restored_all(path: &Path) {
    rank_zero_only(|| eprintln!("Restored all states from the checkpoint at {}", path.display()));
}

/// "Loaded model weights from the checkpoint at …", after `validate`, `test` or `predict`
/// loaded a `ckpt_path`'s weights.
pub(crate) fn loaded_weights(path: &Path) {
    rank_zero_only(|| eprintln!("Loaded model weights from the checkpoint at {}", path.display()));
}

/// Prints the table of `metrics` after `validate` or `test`, when any was logged.
pub(crate) fn print(stage: Stage, metrics: &Metrics) {
    if let Some(table) = table(stage, metrics, terminal_width()) {
        rank_zero_only(|| println!("{table}"));
    }
}

/// Python's `shutil.get_terminal_size` as Lightning reads it: `COLUMNS`, else the
/// terminal's width, else 120.
fn terminal_width() -> usize {
    let columns = std::env::var("COLUMNS").ok().and_then(|c| c.parse::<usize>().ok()).filter(|&c| c > 0);
    columns
        .or_else(|| {
            let out = std::io::stdout();
            out.is_terminal().then(|| console::Term::stdout().size_checked().map(|(_, c)| usize::from(c))).flatten()
        })
        .unwrap_or(120)
}

/// Lightning's plain results table, `width` characters wide: a bar, the header
/// (`Test metric`, `DataLoader 0`), a bar, one centred row a metric (sorted by name), a bar.
/// `None` without metrics, as Lightning prints nothing then.
pub(crate) fn table(stage: Stage, metrics: &Metrics, width: usize) -> Option<String> {
    if metrics.is_empty() {
        return None;
    }
    // Python's `f"{stage} Metric".capitalize()`: "Test metric", "Validate metric"
    let mut title = format!("{} metric", stage.as_str());
    title[..1].make_ascii_uppercase();
    let header = "DataLoader 0";
    let longest = metrics.keys().map(|k| k.chars().count()).max().unwrap_or(0);
    let column = longest.max(header.len()).max(25).min(width / 2);
    let bar = "─".repeat(width);
    let row = |a: &str, b: &str| format!("{a:^column$}{b:^column$}").trim_end().to_string();
    let mut lines = vec![bar.clone(), row(&title, header), bar.clone()];
    lines.extend(metrics.iter().map(|(name, value)| row(name, &value.to_string())));
    lines.push(bar);
    Some(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout Lightning 2.x prints without `rich` at a width of 80.
    #[test]
    fn the_table_is_lightnings() {
        let metrics = Metrics::from([("test_loss".to_string(), 0.25), ("test_acc".to_string(), 0.9375)]);
        let got = table(Stage::Test, &metrics, 80).unwrap();
        let bar = "─".repeat(80);
        let want = [
            bar.as_str(),
            "       Test metric             DataLoader 0",
            bar.as_str(),
            "        test_acc                  0.9375",
            "        test_loss                  0.25",
            bar.as_str(),
        ]
        .join("\n");
        assert_eq!(got, want);
        assert!(table(Stage::Validate, &metrics, 80).unwrap().contains("     Validate metric     "));
        assert_eq!(table(Stage::Test, &Metrics::new(), 80), None);
    }
}
