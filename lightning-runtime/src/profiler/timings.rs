//! What both profilers record: each action's durations, nested regions on a stack, and
//! optionally every region as a Chrome trace event.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One action's record.
#[derive(Debug, Clone, Default)]
pub struct ActionStats {
    /// How many times it ran.
    pub count: usize,
    /// Its total time.
    pub total: Duration,
    /// Each run's time, kept by [`AdvancedProfiler`](super::AdvancedProfiler) only.
    pub durations: Vec<Duration>,
}

impl ActionStats {
    /// Mean time of one run (zero before any).
    pub fn mean(&self) -> Duration {
        if self.count == 0 {
            Duration::ZERO
        } else {
            self.total / self.count as u32
        }
    }
}

/// One finished region, for the Chrome trace: start and length in µs since the origin.
#[derive(Debug, Clone, Copy)]
pub(super) struct Event {
    pub name: &'static str,
    pub start_us: f64,
    pub dur_us: f64,
    pub depth: usize,
}

#[derive(Debug)]
pub(super) struct Timings {
    pub origin: Instant,
    open: Vec<(&'static str, Instant)>,
    pub actions: HashMap<&'static str, ActionStats>,
    keep_durations: bool,
    pub events: Option<Vec<Event>>,
}

impl Timings {
    pub fn new(keep_durations: bool, trace: bool) -> Self {
        Timings {
            origin: Instant::now(),
            open: Vec::new(),
            actions: HashMap::new(),
            keep_durations,
            events: trace.then(Vec::new),
        }
    }

    pub fn start(&mut self, action: &'static str) {
        self.open.push((action, Instant::now()));
    }

    /// Ends the innermost open region named `action` (regions that were not closed inside
    /// it, after an error, end with it).
    pub fn stop(&mut self, action: &'static str) {
        let now = Instant::now();
        let Some(at) = self.open.iter().rposition(|(a, _)| *a == action) else { return };
        let (_, began) = self.open[at];
        self.open.truncate(at);
        let took = now - began;
        let s = self.actions.entry(action).or_default();
        s.count += 1;
        s.total += took;
        if self.keep_durations {
            s.durations.push(took);
        }
        if let Some(events) = &mut self.events {
            let start_us = (began - self.origin).as_secs_f64() * 1e6;
            events.push(Event { name: action, start_us, dur_us: took.as_secs_f64() * 1e6, depth: at });
        }
    }

    /// Starts afresh, for the next stage.
    pub fn reset(&mut self) {
        *self = Timings::new(self.keep_durations, self.events.is_some());
    }

    /// The actions by total time, longest first.
    pub fn by_total(&self) -> Vec<(&'static str, &ActionStats)> {
        let mut v: Vec<_> = self.actions.iter().map(|(a, s)| (*a, s)).collect();
        v.sort_by(|a, b| b.1.total.cmp(&a.1.total).then(a.0.cmp(b.0)));
        v
    }

    /// The Chrome trace (`chrome://tracing`, Perfetto) of the recorded regions.
    pub fn chrome_trace(&self) -> String {
        let events: Vec<serde_json::Value> = self
            .events
            .iter()
            .flatten()
            .map(|e| {
                serde_json::json!({
                    "name": e.name, "ph": "X", "ts": e.start_us, "dur": e.dur_us,
                    "pid": 1, "tid": 1, "args": { "depth": e.depth },
                })
            })
            .collect();
        serde_json::json!({ "traceEvents": events, "displayTimeUnit": "ms" }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_regions_are_timed_apart_and_traced() {
        let mut t = Timings::new(true, true);
        t.start("outer");
        t.start("inner");
        std::thread::sleep(Duration::from_millis(2));
        t.stop("inner");
        t.start("inner");
        t.stop("inner");
        t.stop("outer");
        assert_eq!(t.actions["inner"].count, 2);
        assert_eq!(t.actions["inner"].durations.len(), 2);
        assert!(t.actions["outer"].total >= t.actions["inner"].total);
        assert!(t.actions["inner"].total >= Duration::from_millis(2));
        assert_eq!(t.by_total()[0].0, "outer");
        let trace: serde_json::Value = serde_json::from_str(&t.chrome_trace()).unwrap();
        let events = trace["traceEvents"].as_array().unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0]["name"], "inner");
        assert_eq!(events[0]["ph"], "X");
        assert_eq!(events[2]["args"]["depth"], 0);
        // an unmatched stop is ignored; a stop closes the regions left open inside it
        t.reset();
        t.stop("never");
        t.start("a");
        t.start("b");
        t.stop("a");
        assert_eq!(t.actions.len(), 1);
        assert!(t.open.is_empty());
    }
}
