//! MLflow's REST API (`/api/2.0/mlflow/...`) over `ureq`, with the retry policy: a transient
//! failure (no connection, HTTP 429 or 5xx) is retried with a growing pause; a refusal (any
//! other 4xx) is not, since sending the same request again cannot help.

use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

/// Pauses between the tries of one request: 4 tries over 3.5 s.
const BACKOFF: [Duration; 3] = [Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2)];

/// Why a request failed.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// No answer: connection refused, reset, timed out; or HTTP 429/5xx. Worth retrying.
    Transient(String),
    /// The server answered no (HTTP 4xx): `error_code` is MLflow's (`RESOURCE_DOES_NOT_EXIST`, ...).
    Refused { status: u16, error_code: String, message: String },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transient(m) => f.write_str(m),
            Failure::Refused { status, error_code, message } => write!(f, "HTTP {status} {error_code}: {message}"),
        }
    }
}

/// A tracking server's address with an agent and the credentials MLflow's client reads
/// (`MLFLOW_TRACKING_TOKEN`, or `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`).
#[derive(Clone)]
pub(crate) struct Client {
    pub base: String,
    agent: ureq::Agent,
    auth: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

impl Client {
    pub fn new(uri: &str, timeout: Duration) -> Self {
        let agent =
            ureq::AgentBuilder::new().timeout_connect(timeout.min(Duration::from_secs(10))).timeout(timeout).build();
        let auth = match (std::env::var("MLFLOW_TRACKING_TOKEN"), std::env::var("MLFLOW_TRACKING_USERNAME")) {
            (Ok(token), _) => Some(format!("Bearer {token}")),
            (_, Ok(user)) => {
                let password = std::env::var("MLFLOW_TRACKING_PASSWORD").unwrap_or_default();
                Some(format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))))
            }
            _ => None,
        };
        Client { base: uri.trim_end_matches('/').to_owned(), agent, auth }
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let r = self.agent.request(method, &format!("{}{path}", self.base));
        match &self.auth {
            Some(a) => r.set("Authorization", a),
            None => r,
        }
    }

    /// `GET /api/2.0/mlflow/<endpoint>?query`, once.
    pub fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value, Failure> {
        let mut r = self.request("GET", &format!("/api/2.0/mlflow/{endpoint}"));
        for (k, v) in query {
            r = r.query(k, v);
        }
        answer(r.call())
    }

    /// `POST /api/2.0/mlflow/<endpoint>` with a JSON body, once.
    pub fn post(&self, endpoint: &str, body: &Value) -> Result<Value, Failure> {
        let r = self.request("POST", &format!("/api/2.0/mlflow/{endpoint}")).set("Content-Type", "application/json");
        answer(r.send_string(&body.to_string()))
    }

    /// Uploads a file through the server's artifact proxy (`mlflow server` serves
    /// `/api/2.0/mlflow-artifacts/artifacts/<path>` by default), once; streamed, not read whole.
    pub fn put_file(&self, artifact_path: &str, file: &Path) -> Result<(), Failure> {
        let f = std::fs::File::open(file).map_err(|e| Failure::Transient(format!("{}: {e}", file.display())))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or_default();
        let r = self
            .request("PUT", &format!("/api/2.0/mlflow-artifacts/artifacts/{}", encode_path(artifact_path)))
            .set("Content-Type", "application/octet-stream")
            .set("Content-Length", &len.to_string());
        answer(r.send(std::io::BufReader::new(f))).map(|_| ())
    }

    /// Runs `f` until it succeeds, is refused, or has failed `1 + BACKOFF.len()` times.
    pub fn retrying<T>(&self, mut f: impl FnMut(&Self) -> Result<T, Failure>) -> Result<T, Failure> {
        let mut pauses = BACKOFF.iter();
        loop {
            match f(self) {
                Err(Failure::Transient(e)) => match pauses.next() {
                    Some(p) => std::thread::sleep(*p),
                    None => return Err(Failure::Transient(e)),
                },
                other => return other,
            }
        }
    }
}

fn answer(r: Result<ureq::Response, ureq::Error>) -> Result<Value, Failure> {
    match r {
        Ok(resp) => {
            let text = resp.into_string().map_err(|e| Failure::Transient(format!("reading the answer: {e}")))?;
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_str(&text)
                .map_err(|e| Failure::Transient(format!("the answer is not JSON ({e}): {text:.200}")))
        }
        Err(ureq::Error::Status(status, resp)) => {
            let text = resp.into_string().unwrap_or_default();
            let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let error_code = json["error_code"].as_str().unwrap_or("").to_owned();
            let message =
                json["message"].as_str().map(str::to_owned).unwrap_or_else(|| text.chars().take(300).collect());
            if status == 429 || status >= 500 {
                Err(Failure::Transient(format!("HTTP {status} {error_code}: {message}")))
            } else {
                Err(Failure::Refused { status, error_code, message })
            }
        }
        Err(ureq::Error::Transport(t)) => Err(Failure::Transient(t.to_string())),
    }
}

/// Percent-encodes what may not stand in a URL path (`=` of `epoch=1-step=10.ckpt` may).
fn encode_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~=+:@,".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_names_stay_readable_in_urls() {
        assert_eq!(encode_path("ck/epoch=1-step=10.ckpt/a b"), "ck/epoch=1-step=10.ckpt/a%20b");
    }
}
