//! The sweep's picture (Lightning's `lr_finder.plot(suggest=True)`): the smoothed loss
//! against the rate, on a log axis in exponential mode, with the suggestion marked.

use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

use super::{LrFindMode, LrFinder};
use crate::{Error, Result};

impl LrFinder {
    /// The plot as SVG text: loss against learning rate, the suggestion as a red dot.
    pub fn plot_svg(&self) -> Result<String> {
        let pts: Vec<(f64, f64)> = self.points().filter(|(lr, l)| l.is_finite() && *lr >= 0.0).collect();
        if pts.len() < 2 {
            return Err(Error::Tuner(format!("lr_find plot: {} finite points, at least 2 are needed", pts.len())));
        }
        let fold = |f: fn(f64, f64) -> f64, init: f64, pick: fn(&(f64, f64)) -> f64| pts.iter().map(pick).fold(init, f);
        let (x0, x1) = (fold(f64::min, f64::INFINITY, |p| p.0), fold(f64::max, 0.0, |p| p.0));
        let (y0, y1) = (fold(f64::min, f64::INFINITY, |p| p.1), fold(f64::max, f64::NEG_INFINITY, |p| p.1));
        let pad = ((y1 - y0) * 0.05).max(1e-9);
        let best = self.optimal_index(10, 1).map(|i| (self.lrs[i], self.losses[i]));
        let mut text = String::new();
        let y = y0 - pad..y1 + pad;
        if self.mode == LrFindMode::Exponential && x0 > 0.0 {
            draw(&mut text, &pts, best, (x0..x1).log_scale(), y)?;
        } else {
            draw(&mut text, &pts, best, x0..x1, y)?;
        }
        Ok(text)
    }

    /// Writes the plot to `path`: a PNG when the name ends in `.png`, else SVG.
    pub fn plot(&self, path: impl AsRef<Path>) -> Result<()> {
        let (path, svg) = (path.as_ref(), self.plot_svg()?);
        let png = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
        let bytes = if png { crate::logging::plot_png::svg_to_png(&svg)? } else { svg.into_bytes() };
        crate::checkpoints::atomic::write_atomic(path, &bytes)
    }
}

fn draw<X>(text: &mut String, pts: &[(f64, f64)], best: Option<(f64, f64)>, x: X, y: std::ops::Range<f64>) -> Result<()>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let err = |e: &dyn std::fmt::Display| Error::Tuner(format!("drawing the lr_find plot: {e}"));
    let root = SVGBackend::with_string(text, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Learning-rate finder", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("Learning rate")
        .y_desc("Loss")
        .x_label_formatter(&|v| format!("{v:.0e}"))
        .draw()
        .map_err(|e| err(&e))?;
    chart.draw_series(LineSeries::new(pts.iter().copied(), BLUE.stroke_width(2))).map_err(|e| err(&e))?;
    if let Some(p) = best {
        chart.draw_series([Circle::new(p, 6, RED.filled())]).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}
