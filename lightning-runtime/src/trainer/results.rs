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

/// Prints the table of `metrics` after `validate` or `test` over `loaders` loaders, when
/// any was logged.
pub(crate) fn print(stage: Stage, metrics: &Metrics, loaders: usize) {
    if let Some(table) = table(stage, metrics, loaders, terminal_width()) {
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
/// (`Test metric`, `DataLoader 0`, ...), a bar, one centred row a metric (sorted by name,
/// without its `/dataloader_idx_N` suffix), a bar; more loaders than fit the width continue
/// in further tables. `None` without metrics, as Lightning prints nothing then.
pub(crate) fn table(stage: Stage, metrics: &Metrics, loaders: usize, width: usize) -> Option<String> {
    if metrics.is_empty() {
        return None;
    }
    let columns = per_loader(metrics, loaders.max(1));
    let names: std::collections::BTreeSet<&str> = columns.iter().flat_map(|c| c.keys().copied()).collect();
    // Python's `f"{stage} Metric".capitalize()`: "Test metric", "Validate metric"
    let mut title = format!("{} metric", stage.as_str());
    title[..1].make_ascii_uppercase();
    let headers: Vec<String> = (0..columns.len()).map(|i| format!("DataLoader {i}")).collect();
    let longest = names.iter().map(|k| k.chars().count()).max().unwrap_or(0);
    let widest = headers.iter().map(String::len).max().unwrap_or(0);
    let column = longest.max(widest).max(25).min(width / 2);
    let per_table = ((width - column) / column).max(1);
    let bar = "─".repeat(width);
    let row = |cells: &[&str]| cells.iter().map(|c| format!("{c:^column$}")).collect::<String>().trim_end().to_string();
    let mut lines = Vec::new();
    for (chunk, heads) in columns.chunks(per_table).zip(headers.chunks(per_table)) {
        let mut head = vec![title.as_str()];
        head.extend(heads.iter().map(String::as_str));
        lines.extend([bar.clone(), row(&head), bar.clone()]);
        for name in &names {
            let cells: Vec<String> = chunk.iter().map(|c| c.get(name).map_or(" ".into(), |v| v.to_string())).collect();
            let mut r = vec![*name];
            r.extend(cells.iter().map(String::as_str));
            lines.push(row(&r));
        }
        lines.push(bar.clone());
    }
    Some(lines.join("\n"))
}

/// Lightning's results per loader: the keys of loader `i` (`name/dataloader_idx_i`, shown
/// as `name`) and the keys of no loader (logged at the epoch's end), in every column.
fn per_loader(metrics: &Metrics, loaders: usize) -> Vec<std::collections::BTreeMap<&str, f64>> {
    (0..loaders)
        .map(|i| {
            let suffix = format!("/dataloader_idx_{i}");
            metrics
                .iter()
                .filter_map(|(k, v)| match k.split_once("/dataloader_idx_") {
                    None => Some((k.as_str(), *v)),
                    Some((name, _)) if k.ends_with(&suffix) => Some((name, *v)),
                    Some(_) => None,
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout Lightning 2.x prints without `rich` at a width of 80.
    #[test]
    fn the_table_is_lightnings() {
        let metrics = Metrics::from([("test_loss".to_string(), 0.25), ("test_acc".to_string(), 0.9375)]);
        let got = table(Stage::Test, &metrics, 1, 80).unwrap();
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
        assert!(table(Stage::Validate, &metrics, 1, 80).unwrap().contains("     Validate metric     "));
        assert_eq!(table(Stage::Test, &Metrics::new(), 1, 80), None);
    }

    /// Lightning 2.6.6's table for two test loaders at 120 columns
    /// (`scripts/make_hook_order_multi.py test`).
    #[test]
    fn two_loaders_get_a_column_each() {
        let metrics = Metrics::from([
            ("test_loss/dataloader_idx_0".to_string(), 0.6868799924850464),
            ("test_loss/dataloader_idx_1".to_string(), 0.2802671492099762),
        ]);
        let got = table(Stage::Test, &metrics, 2, 120).unwrap();
        let bar = "─".repeat(120);
        let want = [
            bar.as_str(),
            "       Test metric             DataLoader 0             DataLoader 1",
            bar.as_str(),
            "        test_loss           0.6868799924850464       0.2802671492099762",
            bar.as_str(),
        ]
        .join("\n");
        assert_eq!(got, want);
        // a value of no loader shows in every column; one loader's only in its own
        let metrics = Metrics::from([("a/dataloader_idx_1".to_string(), 1.0), ("b".to_string(), 2.0)]);
        let got = table(Stage::Test, &metrics, 2, 120).unwrap();
        let row = |a: &str, b: &str, c: &str| format!("{a:^25}{b:^25}{c:^25}").trim_end().to_string();
        assert!(got.lines().any(|l| l == row("a", " ", "1")), "{got}");
        assert!(got.lines().any(|l| l == row("b", "2", "2")), "{got}");
        // 5 loaders at 80 columns: two loader columns a table
        let five: Metrics = (0..5).map(|i| (format!("x/dataloader_idx_{i}"), i as f64)).collect();
        let got = table(Stage::Test, &five, 5, 80).unwrap();
        assert_eq!(got.matches("Test metric").count(), 3, "{got}");
    }
}
