//! Lightning's `CSVLogger`: `<root>/lightning_logs/version_N/metrics.csv` and `hparams.yaml`.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::run_dir::RunDir;
use super::Logger;
use crate::{Error, Result};

/// Writes one CSV row per `log_metrics` call, with Lightning's columns: every metric name
/// plus `epoch` and `step`, sorted; a new name rewrites the header. Rows are buffered and
/// written every `flush_every` rows (Lightning's `flush_logs_every_n_steps`, 100) and at the end.
/// It also draws the curves beside the CSV ([`super::plot_metrics`]): `metrics.svg` at every
/// epoch end and at the end of the run, `metrics.png` at the end of the run.
///
/// ```no_run
/// use lightning::prelude::*;
/// let trainer = Trainer::builder().logger(CsvLogger::new("runs")).build()?;
/// # Ok::<(), lightning::Error>(())
/// ```
#[derive(Debug)]
pub struct CsvLogger {
    dir: RunDir,
    flush_every: usize,
    keys: Vec<String>,
    rows: Vec<BTreeMap<String, String>>,
}

impl CsvLogger {
    /// Logs under `root/lightning_logs/version_N`, N the next free version.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CsvLogger { dir: RunDir::new(root.into()), flush_every: 100, keys: Vec::new(), rows: Vec::new() }
    }
    /// The experiment's directory name under the root (default `lightning_logs`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.dir.name = name.into();
        self
    }
    /// A fixed version instead of the next free one.
    pub fn version(mut self, v: usize) -> Self {
        self.dir.version = Some(v);
        self
    }
    /// Rows buffered before a write (default 100).
    pub fn flush_logs_every_n_steps(mut self, n: usize) -> Self {
        self.flush_every = n.max(1);
        self
    }

    /// The metrics file (its directory is created, and the version fixed).
    pub fn metrics_path(&mut self) -> Result<PathBuf> {
        Ok(self.dir.create()?.join("metrics.csv"))
    }

    fn write_rows(&mut self) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let path = self.metrics_path()?;
        let before = self.keys.len();
        for row in &self.rows {
            for k in row.keys() {
                if !self.keys.contains(k) {
                    self.keys.push(k.clone());
                }
            }
        }
        self.keys.sort();
        let rows = std::mem::take(&mut self.rows);
        if self.keys.len() != before && path.exists() {
            // new columns: rewrite the file under the new header, atomically
            let old = read_rows(&path)?;
            let mut text = line(&self.keys, None);
            for r in old.iter().chain(&rows) {
                text.push_str(&line(&self.keys, Some(r)));
            }
            // a temporary name of this writer's own, never a shared `metrics.csv.tmp`
            return crate::checkpoints::atomic::write_atomic(&path, text.as_bytes());
        }
        let fresh = !path.exists();
        let mut f = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
        let mut text = if fresh { line(&self.keys, None) } else { String::new() };
        for r in &rows {
            text.push_str(&line(&self.keys, Some(r)));
        }
        f.write_all(text.as_bytes()).map_err(|e| Error::io(&path, e))
    }
}

/// One CSV line: the header (`row` = None) or a row with empty cells for missing keys.
fn line(keys: &[String], row: Option<&BTreeMap<String, String>>) -> String {
    let cells: Vec<String> = keys
        .iter()
        .map(|k| match row {
            None => quote(k),
            Some(r) => r.get(k).map(|v| quote(v)).unwrap_or_default(),
        })
        .collect();
    cells.join(",") + "\n"
}

fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Reads back a file this logger wrote (no quoted commas in numbers; names are quoted if needed).
fn read_rows(path: &Path) -> Result<Vec<BTreeMap<String, String>>> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut lines = text.lines();
    let header = split(lines.next().unwrap_or_default());
    Ok(lines.map(|l| header.iter().cloned().zip(split(l)).filter(|(_, v)| !v.is_empty()).collect()).collect())
}

pub(super) fn split(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut chars) = (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

impl CsvLogger {
    /// Draws the curves beside `metrics.csv`, the PNG too when `png`; a failure is a warning.
    fn draw(&self, png: bool) {
        let Some(dir) = self.dir.known().filter(|d| d.join("metrics.csv").exists()) else { return };
        let drawn = if png { super::plot_metrics(&dir).map(drop) } else { super::plot::draw_svg(&dir).map(drop) };
        if let Err(e) = drawn {
            crate::dist::rank_zero_warn(format!("{e} (metrics.csv is complete)"));
        }
    }
}

/// Python's spelling of a float, as Lightning's CSV holds it.
pub(crate) fn format_value(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{v:?}")
    }
}

impl Logger for CsvLogger {
    fn log_metrics(&mut self, metrics: &[(String, f64)], step: usize) -> Result<()> {
        let mut row: BTreeMap<String, String> = metrics.iter().map(|(k, v)| (k.clone(), format_value(*v))).collect();
        // Lightning logs `epoch` as a whole number with every row
        if let Some(e) = row.get_mut("epoch") {
            if let Ok(x) = e.parse::<f64>() {
                *e = format!("{}", x as i64);
            }
        }
        row.insert("step".into(), step.to_string());
        self.rows.push(row);
        if self.rows.len() >= self.flush_every {
            self.write_rows()?;
        }
        Ok(())
    }

    fn log_hyperparams(&mut self, params: &serde_json::Value) -> Result<()> {
        self.dir.write_hparams(params)
    }

    /// Writes the buffered rows, then redraws `metrics.svg` beside `metrics.csv` (at every
    /// epoch end); a drawing that fails is a warning, never a failed run.
    fn save(&mut self) -> Result<()> {
        self.write_rows()?;
        self.draw(false);
        Ok(())
    }

    /// The end of a run: the rows, `metrics.svg` and `metrics.png`. The PNG is drawn here
    /// only: rendering it costs about 10× the SVG (~0.2 s against ~16 ms for a 10-epoch
    /// Fashion-MNIST run's two panels), too much for every epoch of a small model.
    fn finalize(&mut self, _status: &str) -> Result<()> {
        self.write_rows()?;
        self.draw(true);
        Ok(())
    }

    fn prepare(&mut self) -> Result<()> {
        self.dir.fix_version()
    }

    fn log_dir(&self) -> Option<PathBuf> {
        self.dir.known()
    }

    fn version(&self) -> Option<usize> {
        self.dir.version
    }
}
