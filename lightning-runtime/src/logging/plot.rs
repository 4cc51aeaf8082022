//! `metrics.svg` and `metrics.png`: the curves of a `metrics.csv` (ours or Python Lightning's
//! `CSVLogger`'s), one panel per group: losses, accuracy-like metrics, learning rates (log
//! axis), the rest. Values logged per step are drawn faint with their epoch means bold; values
//! logged once per epoch bold. The step is the x axis; the best checkpoint of each monitoring
//! `ModelCheckpoint` is marked (see `plot_best`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

use super::plot_best::{markers, Marker};
use crate::{Error, Result};

/// One column of the CSV: `(step, epoch, value)` for every row that has a value.
#[derive(Debug, Default)]
struct Series {
    points: Vec<(f64, Option<i64>, f64)>,
}

impl Series {
    /// Logged per step: some epoch (or, without epochs, the run) holds several values.
    fn per_step(&self, name: &str) -> bool {
        let mut per_epoch: BTreeMap<Option<i64>, usize> = BTreeMap::new();
        for p in &self.points {
            *per_epoch.entry(p.1).or_default() += 1;
        }
        name.ends_with("_step") || per_epoch.values().any(|&n| n > 1)
    }
    /// The mean of each epoch's values, at the epoch's last step.
    fn epoch_means(&self) -> Vec<(f64, f64)> {
        let mut acc: BTreeMap<i64, (f64, f64, usize)> = BTreeMap::new();
        for &(step, epoch, v) in &self.points {
            if let Some(e) = epoch {
                let a = acc.entry(e).or_insert((step, 0.0, 0));
                *a = (a.0.max(step), a.1 + v, a.2 + 1);
            }
        }
        acc.values().map(|&(step, sum, n)| (step, sum / n as f64)).collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    Loss,
    Accuracy,
    LearningRate,
    Other,
}

impl Group {
    fn of(name: &str) -> Group {
        let n = name.to_ascii_lowercase();
        if n.contains("loss") {
            Group::Loss
        } else if ["acc", "f1", "precision", "recall", "auroc", "auc", "iou", "dice"].iter().any(|k| n.contains(k)) {
            Group::Accuracy
        } else if n.starts_with("lr") || n.contains("learning_rate") || n.contains("lr-") {
            Group::LearningRate
        } else {
            Group::Other
        }
    }
    fn title(self) -> &'static str {
        match self {
            Group::Loss => "loss",
            Group::Accuracy => "accuracy-like metrics",
            Group::LearningRate => "learning rate (log scale)",
            Group::Other => "other metrics",
        }
    }
}

/// A parsed `metrics.csv`: every metric column, and the last step of each epoch.
#[derive(Debug, Default)]
struct Table {
    columns: BTreeMap<String, Series>,
    epoch_end: BTreeMap<i64, f64>,
}

fn read_table(csv: &Path) -> Result<Table> {
    let text = std::fs::read_to_string(csv).map_err(|e| Error::io(csv, e))?;
    let mut lines = text.lines();
    let header = super::csv::split(lines.next().unwrap_or_default());
    let col = |name: &str| header.iter().position(|h| h == name);
    let step_col = col("step").ok_or_else(|| Error::msg(format!("{}: no `step` column", csv.display())))?;
    let epoch_col = col("epoch");
    let mut table = Table::default();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.is_empty()) {
        let cells = super::csv::split(line);
        let num = |j: usize| cells.get(j).filter(|c| !c.is_empty()).map(|c| c.parse::<f64>());
        let Some(Ok(step)) = num(step_col) else {
            return Err(Error::msg(format!("{} line {}: no step number", csv.display(), i + 2)));
        };
        let epoch = epoch_col.and_then(num).and_then(|e| e.ok()).map(|e| e as i64);
        if let Some(e) = epoch {
            let end = table.epoch_end.entry(e).or_insert(step);
            *end = end.max(step);
        }
        for (j, name) in header.iter().enumerate() {
            if Some(j) == epoch_col || j == step_col {
                continue;
            }
            // non-numbers (and nan, inf) are not drawn
            if let Some(Ok(v)) = num(j).filter(|v| v.as_ref().is_ok_and(|v| v.is_finite())) {
                table.columns.entry(name.clone()).or_default().points.push((step, epoch, v));
            }
        }
    }
    Ok(table)
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// The pictures [`plot_metrics`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsPlot {
    /// `<dir>/metrics.svg`.
    pub svg: PathBuf,
    /// `<dir>/metrics.png`: the same picture as pixels (900 pixels wide, 320 a panel).
    pub png: PathBuf,
}

/// Draws `<dir>/metrics.svg` and `<dir>/metrics.png` from `<dir>/metrics.csv`, ours or one
/// written by Python Lightning's `CSVLogger`, marking the best checkpoint of each
/// `ModelCheckpoint` with a monitor (found in `<dir>/checkpoints`).
///
/// ```no_run
/// let plot = lightning::logging::plot_metrics("runs/lightning_logs/version_0")?;
/// println!("{} {}", plot.svg.display(), plot.png.display());
/// # Ok::<(), lightning::Error>(())
/// ```
pub fn plot_metrics(dir: impl AsRef<Path>) -> Result<MetricsPlot> {
    let dir = dir.as_ref();
    let svg = draw_svg(dir)?;
    let png = dir.join("metrics.png");
    crate::checkpoints::atomic::write_atomic(&png, &super::plot_png::svg_to_png(&svg)?)?;
    Ok(MetricsPlot { svg: dir.join("metrics.svg"), png })
}

/// Draws `<dir>/metrics.svg` alone and returns its text.
pub(super) fn draw_svg(dir: &Path) -> Result<String> {
    let table = read_table(&dir.join("metrics.csv"))?;
    let mut groups: BTreeMap<Group, Vec<(&String, &Series)>> = BTreeMap::new();
    for (name, s) in &table.columns {
        groups.entry(Group::of(name)).or_default().push((name, s));
    }
    if groups.is_empty() {
        return Err(Error::msg(format!("{}: no metric values to draw", dir.join("metrics.csv").display())));
    }
    let best = markers(dir, &table.epoch_end);
    let max_step = table.columns.values().flat_map(|s| s.points.iter().map(|p| p.0)).fold(1.0, f64::max);
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (900, 320 * groups.len() as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        for (area, (group, series)) in root.split_evenly((groups.len(), 1)).iter().zip(&groups) {
            let (lo, hi) = y_range(series, *group == Group::LearningRate);
            let x = 0.0..max_step * 1.02;
            if *group == Group::LearningRate {
                panel(area, *group, series, &best, x, (lo..hi).log_scale())?;
            } else {
                panel(area, *group, series, &best, x, lo..hi)?;
            }
        }
        root.present().map_err(plot_err)?;
    }
    crate::checkpoints::atomic::write_atomic(&dir.join("metrics.svg"), text.as_bytes())?;
    Ok(text)
}

/// The best checkpoints' lines: black, then greys (the curves have the colours).
const MARKER_COLORS: [RGBColor; 3] = [RGBColor(0, 0, 0), RGBColor(110, 110, 110), RGBColor(170, 170, 170)];

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::msg(format!("drawing metrics.svg: {e}"))
}

/// A tick label without float noise (log axes land on 0.30000000000000004).
fn tick(v: &f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        return format!("{v:.1e}");
    }
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn y_range(series: &[(&String, &Series)], log: bool) -> (f64, f64) {
    let vals = series.iter().flat_map(|s| s.1.points.iter().map(|p| p.2)).filter(|v| !log || *v > 0.0);
    let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (1e-8, 1.0);
    }
    if log {
        return (lo / 1.5, hi * 1.5);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    (lo - pad, hi + pad)
}

/// One panel: its series, faint per step and bold per epoch, and the best epoch's marker.
fn panel<Y>(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    group: Group,
    series: &[(&String, &Series)],
    best: &[Marker],
    x: std::ops::Range<f64>,
    y: Y,
) -> Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(group.title(), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)
        .map_err(plot_err)?;
    let y_desc = if group == Group::LearningRate { "learning rate" } else { "value" };
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(y_desc)
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .draw()
        .map_err(plot_err)?;
    for (i, (name, s)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        // learning rates are drawn bold whatever their frequency: they have no epoch means
        let per_step = s.per_step(name) && group != Group::LearningRate;
        let points: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0, p.2)).collect();
        let style = if per_step { color.mix(0.3).stroke_width(1) } else { color.stroke_width(3) };
        // a value logged once (a test metric) is a dot: a line through one point draws nothing
        let dots = points.iter().take(usize::from(points.len() == 1)).map(|&p| Circle::new(p, 5, color.filled()));
        chart.draw_series(dots).map_err(plot_err)?;
        let drawn = chart.draw_series(LineSeries::new(points, style)).map_err(plot_err)?;
        if per_step {
            let label = format!("{name} (faint: per step; bold: epoch mean)");
            let means = s.epoch_means();
            chart
                .draw_series(LineSeries::new(means, color.stroke_width(3)))
                .map_err(plot_err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(3)));
        } else {
            drawn
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(3)));
        }
    }
    for (i, m) in best.iter().enumerate() {
        let ys = chart.plotting_area().get_y_range();
        let color = MARKER_COLORS[i % MARKER_COLORS.len()];
        chart
            .draw_series(LineSeries::new([(m.step, ys.start), (m.step, ys.end)], color.stroke_width(2)))
            .map_err(plot_err)?
            .label(m.label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        // accuracies rise to the upper right, losses fall to the lower right
        .position(if group == Group::Accuracy {
            SeriesLabelPosition::LowerRight
        } else {
            SeriesLabelPosition::UpperRight
        })
        .draw()
        .map_err(plot_err)
}
