//! The HTTP side: round-robin over targets, bearer tokens minted per user, and each request
//! timed and classified.

use jsonwebtoken::{encode, EncodingKey, Header};
use reqwest::{Client, Method};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One request's result.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// HTTP status, or 0 when no answer came (connection error, time-out).
    pub status: u16,
    /// The envelope's error code, if any.
    pub code: Option<String>,
    /// The envelope's error message, if any.
    pub message: Option<String>,
    /// Why no answer came (status 0): the transport error and its causes.
    pub error: Option<String>,
    pub latency: Duration,
    pub body: Value,
    /// The raw `data` text (for byte-for-byte comparisons of replays).
    pub data_text: String,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// One line for a person: `409 COUPON_SOLD_OUT: the coupon is sold out`, or
    /// `no answer: <transport error>`.
    pub fn describe(&self) -> String {
        if self.status == 0 {
            return format!(
                "no answer: {}",
                self.error.as_deref().unwrap_or("unknown transport error")
            );
        }
        let mut out = self.status.to_string();
        if let Some(code) = &self.code {
            out.push(' ');
            out.push_str(code);
        }
        match &self.message {
            Some(m) => {
                out.push_str(": ");
                out.push_str(m);
            }
            None if self.code.is_none() && !self.data_text.is_empty() => {
                out.push_str(": ");
                out.push_str(&self.data_text);
            }
            None => {}
        }
        out
    }
}

/// An error and its causes, `outer: inner: innermost` (reqwest's own text names only the URL).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// The API of one deployment (one or several instances).
pub struct Api {
    client: Client,
    targets: Vec<String>,
    next: AtomicUsize,
    key: EncodingKey,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no target given")]
    NoTarget,
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("could not sign a token: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
}

fn data_text(raw: &str) -> String {
    let start = raw.find("\"data\":").map(|i| i + 7);
    let end = raw.rfind(",\"timestamp\"");
    match (start, end) {
        (Some(s), Some(e)) if s <= e => raw[s..e].to_owned(),
        _ => String::new(),
    }
}

impl Api {
    pub fn new(targets: &[String], secret: &str, concurrency: usize) -> Result<Api, ApiError> {
        let targets: Vec<String> = targets
            .iter()
            .map(|t| t.trim().trim_end_matches('/').to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        if targets.is_empty() {
            return Err(ApiError::NoTarget);
        }
        let client = Client::builder()
            .pool_max_idle_per_host(concurrency.max(1))
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Api {
            client,
            targets,
            next: AtomicUsize::new(0),
            key: EncodingKey::from_secret(secret.as_bytes()),
        })
    }

    pub fn targets(&self) -> &[String] {
        &self.targets
    }

    /// A token for `user` (an admin token for `admin`).
    pub fn token(&self, user: i64, admin: bool) -> Result<String, ApiError> {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + 24 * 3_600;
        let claims = serde_json::json!({
            "sub": user.to_string(),
            "role": if admin { "admin" } else { "user" },
            "exp": exp,
        });
        Ok(encode(&Header::default(), &claims, &self.key)?)
    }

    /// Sends one request to the next target in turn.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Outcome {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len();
        let mut req = self
            .client
            .request(method, format!("{}{}", self.targets[i], path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let started = Instant::now();
        let answer = req.send().await;
        let (status, raw, error) = match answer {
            Ok(r) => {
                let status = r.status().as_u16();
                match r.text().await {
                    Ok(text) => (status, text, None),
                    Err(e) => (
                        0,
                        String::new(),
                        Some(format!("{status} cut off: {}", chain(&e))),
                    ),
                }
            }
            Err(e) => (0, String::new(), Some(chain(&e))),
        };
        let latency = started.elapsed();
        let body: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
        let code = body["error"]["code"].as_str().map(str::to_owned);
        let message = body["error"]["message"].as_str().map(str::to_owned);
        Outcome {
            status,
            code,
            message,
            error,
            latency,
            data_text: data_text(&raw),
            body,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_answer_is_described_by_its_transport_error() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let api = Api::new(&[format!("http://127.0.0.1:{port}")], "s", 1).unwrap();
        let o = api.send(Method::GET, "/health", None, None, None).await;
        assert_eq!(o.status, 0);
        let line = o.describe();
        assert!(
            line.starts_with("no answer: error sending request"),
            "{line}"
        );
        assert!(line.to_lowercase().contains("connect"), "{line}");
    }

    #[test]
    fn an_answer_is_described_by_status_code_and_message() {
        let o = Outcome {
            status: 400,
            code: Some("INVALID_INPUT".into()),
            message: Some("mode: unknown variant".into()),
            error: None,
            latency: Duration::ZERO,
            body: Value::Null,
            data_text: String::new(),
        };
        assert_eq!(o.describe(), "400 INVALID_INPUT: mode: unknown variant");
    }
}
