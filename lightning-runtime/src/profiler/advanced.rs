//! The distribution of each action's times: our `AdvancedProfiler`.

use std::time::Duration;

use super::common::{profiler_common, Output};
use super::report::{sig5, table};
use super::timings::{ActionStats, Timings};
use super::Profiler;
use crate::{Result, Stage};

/// Every run of every action kept, reported as a distribution: count, mean, standard
/// deviation, min, median, p90, p99, max and total, with the same files and Chrome trace as
/// [`SimpleProfiler`](super::SimpleProfiler). Lightning's `AdvancedProfiler` reports
/// Python's `cProfile` per action (the functions called inside); Rust has no such hook, so
/// use `perf` for function-level profiles. It keeps one `Duration` per region run.
///
/// ```
/// use lightning::profiler::AdvancedProfiler;
/// let trainer = lightning::Trainer::builder().profiler(AdvancedProfiler::new().filename("perf")).build()?;
/// # let _ = trainer;
/// # Ok::<(), lightning::Error>(())
/// ```
#[derive(Debug)]
pub struct AdvancedProfiler {
    timings: Timings,
    out: Output,
}

profiler_common!(AdvancedProfiler, keep_durations: true);

impl AdvancedProfiler {
    /// Each action's distribution, longest total first, after a `Total` row.
    fn summary(&self, stage: Stage) -> String {
        let rows: Vec<Vec<String>> = self.timings.by_total().into_iter().map(|(a, s)| row(a, s)).collect();
        let calls: usize = self.timings.actions.values().map(|s| s.count).sum();
        let total = sig5(self.timings.origin.elapsed().as_secs_f64());
        let mut first = vec!["Total".to_string(), calls.to_string()];
        first.extend(std::iter::repeat_n("-".to_string(), 7));
        first.push(total);
        let header = ["Action", "Num calls", "Mean (s)", "Std (s)", "Min (s)", "Median (s)", "p90 (s)", "p99 (s)"];
        let header: Vec<&str> = header.into_iter().chain(["Max (s)", "Total time (s)"]).collect();
        table(&format!("{} Profiler Report", stage.as_str().to_uppercase()), &header, first, rows)
    }
}

/// One action's distribution, in seconds.
fn row(action: &str, s: &ActionStats) -> Vec<String> {
    let mut d: Vec<f64> = s.durations.iter().map(Duration::as_secs_f64).collect();
    d.sort_by(f64::total_cmp);
    let n = d.len().max(1) as f64;
    let mean = d.iter().sum::<f64>() / n;
    let std = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    // the nearest-rank percentile
    let pct = |p: f64| d.get(((p * n).ceil() as usize).saturating_sub(1).min(d.len().saturating_sub(1))).copied();
    let at = |p: f64| pct(p).map_or("-".into(), sig5);
    vec![
        action.to_string(),
        s.count.to_string(),
        sig5(mean),
        sig5(std),
        at(0.0),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0),
        sig5(s.total.as_secs_f64()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_distribution_of_known_durations() {
        let s = ActionStats {
            count: 4,
            total: Duration::from_millis(10),
            durations: [1, 2, 3, 4].map(Duration::from_millis).to_vec(),
        };
        let r = row("a", &s);
        assert_eq!(r[1], "4");
        assert_eq!(r[2], "0.0025");
        assert_eq!(r[4], "0.001", "min");
        assert_eq!(r[5], "0.002", "median by nearest rank");
        assert_eq!(r[8], "0.004", "max");
        assert_eq!(r[3], sig5((1.25f64).sqrt() / 1000.0), "population std");
    }
}
