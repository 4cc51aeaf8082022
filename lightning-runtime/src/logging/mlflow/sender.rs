//! Metrics leave the training thread in batches (`runs/log-batch`, at most 1000 a request)
//! and are posted by a thread of their own, so no step waits for the network.
//!
//! A batch the server cannot take now (no connection, 429, 5xx) is retried with pauses,
//! then held, with one warning, and sent before the next batch; the end of the run tries
//! once more and reports what is still held. A batch the server refuses (4xx) is dropped
//! with a warning that quotes the server.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::client::{Client, Failure};
use crate::dist::rank_zero_warn;

/// MLflow's limit of metrics in one `runs/log-batch`.
pub(crate) const MAX_METRICS: usize = 1000;
/// Batches held while the server is away, beyond which the oldest are dropped (with a warning).
const MAX_HELD: usize = 1000;
/// While the server is away, a new batch is not tried sooner than this after the last try.
const QUIET: Duration = Duration::from_secs(5);

/// One value of `runs/log-batch`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Metric {
    pub key: String,
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
}

impl Metric {
    fn to_json(&self) -> Value {
        // protobuf's JSON spelling of the doubles JSON has no numbers for
        let value = match self.value {
            v if v.is_nan() => json!("NaN"),
            v if v == f64::INFINITY => json!("Infinity"),
            v if v == f64::NEG_INFINITY => json!("-Infinity"),
            v => json!(v),
        };
        json!({"key": self.key, "value": value, "timestamp": self.timestamp, "step": self.step})
    }
}

/// What the sender could not deliver by the end of the run.
#[derive(Debug, Default)]
pub(crate) struct Undelivered {
    pub metrics: usize,
    pub last_error: Option<String>,
}

/// The sending thread: metrics go in through a channel, `finish` joins it.
#[derive(Debug)]
pub(crate) struct Sender {
    tx: mpsc::Sender<Vec<Metric>>,
    handle: JoinHandle<Undelivered>,
}

impl Sender {
    pub fn start(client: Client, run_id: String) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Vec<Metric>>();
        let handle = std::thread::Builder::new()
            .name("mlflow-sender".into())
            .spawn(move || Delivery::new(client, run_id).run(rx))?;
        Ok(Sender { tx, handle })
    }

    /// Hands a batch over; never waits.
    pub fn send(&self, batch: Vec<Metric>) {
        if !batch.is_empty() {
            // the thread ends only when `finish` drops this end, so the send cannot fail
            let _ = self.tx.send(batch);
        }
    }

    /// Sends what is left (retrying a held batch once more) and returns what was lost.
    pub fn finish(self) -> Undelivered {
        drop(self.tx);
        self.handle.join().unwrap_or_else(|_| Undelivered {
            metrics: 0,
            last_error: Some("the MLflow sender thread panicked".into()),
        })
    }
}

struct Delivery {
    client: Client,
    run_id: String,
    held: VecDeque<Vec<Metric>>,
    /// When the server was last found away; `None` while it answers.
    away_since: Option<Instant>,
    last_try: Option<Instant>,
    last_error: Option<String>,
}

impl Delivery {
    fn new(client: Client, run_id: String) -> Self {
        Delivery { client, run_id, held: VecDeque::new(), away_since: None, last_try: None, last_error: None }
    }

    fn run(mut self, rx: mpsc::Receiver<Vec<Metric>>) -> Undelivered {
        for batch in rx {
            self.held.push_back(batch);
            if self.held.len() > MAX_HELD {
                let lost = self.held.pop_front().map_or(0, |b| b.len());
                rank_zero_warn(format!("MLflow: dropped {lost} metric values: the server has been away too long"));
            }
            let quiet = self.away_since.is_some() && self.last_try.is_some_and(|t| t.elapsed() < QUIET);
            if !quiet {
                self.drain();
            }
        }
        // the end of the run: one more full try
        self.drain();
        Undelivered { metrics: self.held.iter().map(Vec::len).sum(), last_error: self.last_error }
    }

    /// Sends the held batches in order, stopping at the first the server cannot take now.
    fn drain(&mut self) {
        while let Some(batch) = self.held.front() {
            self.last_try = Some(Instant::now());
            let body = json!({"run_id": self.run_id, "metrics": batch.iter().map(Metric::to_json).collect::<Vec<_>>()});
            match self.client.retrying(|c| c.post("runs/log-batch", &body)) {
                Ok(_) => {
                    if let Some(since) = self.away_since.take() {
                        eprintln!(
                            "MLflow: {} is back after {:.0?}; sending the {} held batch(es)",
                            self.client.base,
                            since.elapsed(),
                            self.held.len()
                        );
                    }
                    self.held.pop_front();
                }
                Err(Failure::Transient(e)) => {
                    if self.away_since.is_none() {
                        rank_zero_warn(format!(
                            "MLflow: cannot send metrics to {} ({e}); training goes on, the metrics are held and sent \
                             when the server answers again (checkpoints are written locally as usual)",
                            self.client.base
                        ));
                        self.away_since = Some(Instant::now());
                    }
                    self.last_error = Some(e);
                    return;
                }
                Err(refused) => {
                    let n = batch.len();
                    rank_zero_warn(format!("MLflow: the server refused {n} metric values, dropped: {refused}"));
                    self.last_error = Some(refused.to_string());
                    self.held.pop_front();
                }
            }
        }
    }
}
