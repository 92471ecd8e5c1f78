//! `spawn_app()`: the real service (router, workers, demo data) on an ephemeral port, and a
//! small client for it.

use reqwest::{Client, Method, StatusCode};
use serde_json::Value;
use std::time::Duration;
use stockade::config::{Cli, Command, ServeArgs};
use stockade::Service;
use stockade_http::{issue_token, JwtSecret};
use tokio::sync::watch;

pub const SECRET: &str = "e2e-test-secret";

/// A running service. Dropping it stops the server and its workers.
#[derive(Debug)]
pub struct TestServer {
    pub base: String,
    pub client: Client,
    pub service: Service,
    stop: watch::Sender<bool>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// One answer: status, headers that matter, and the JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub raw: String,
    pub replayed: bool,
    pub retry_after: Option<String>,
    pub www_authenticate: Option<String>,
    pub location: Option<String>,
    /// The `Link` header (a list's next page).
    pub link: Option<String>,
}

impl Answer {
    /// The path and query of the `Link: <...>; rel="next"` header, if any.
    pub fn next_page(&self) -> Option<String> {
        let link = self.link.as_deref()?;
        let (target, rel) = link.split_once(">;")?;
        (rel.trim() == "rel=\"next\"").then(|| target.trim_start_matches('<').to_owned())
    }

    /// The error code, if the envelope is a failure.
    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    /// The raw JSON text of `data` (for byte-for-byte comparisons).
    pub fn data_text(&self) -> String {
        let start = self.raw.find("\"data\":").map(|i| i + 7);
        let end = self.raw.rfind(",\"timestamp\"");
        match (start, end) {
            (Some(s), Some(e)) if s <= e => self.raw[s..e].to_owned(),
            _ => String::new(),
        }
    }
}

/// Starts the demo-profile service with extra `serve` flags.
pub async fn spawn_app(extra: &[&str]) -> TestServer {
    let mut argv = vec![
        "stockade",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--jwt-secret",
        SECRET,
    ];
    argv.extend_from_slice(extra);
    let cli = <Cli as clap::Parser>::try_parse_from(argv).expect("valid flags");
    let Command::Serve(args) = cli.command else {
        panic!("not serve")
    };
    let args: ServeArgs = *args;
    let service = Service::build(&args).await.expect("service builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    let workers = service.spawn_workers(&stopped);
    let router = service.router();
    // The start-up reconciliation runs in the background: serve the tests once it is done.
    for _ in 0..3_000 {
        if service.state.readiness.starting().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        service.state.readiness.starting().is_none(),
        "the start-up reconciliation did not finish in 30 s"
    );
    let options = stockade::listen::options(&args, None);
    let mut on_stop = stopped.clone();
    tokio::spawn(async move {
        let _workers = workers;
        let _ = stockade_http::serve(listener, router, options, async move {
            let _ = on_stop.wait_for(|s| *s).await;
        })
        .await;
    });
    TestServer {
        base: format!("http://{addr}"),
        client: Client::builder()
            .pool_max_idle_per_host(64)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        service,
        stop,
    }
}

pub fn token(user: i64) -> String {
    issue_token(&JwtSecret::new(SECRET), user, false, 3_600).unwrap()
}

pub fn admin_token() -> String {
    issue_token(&JwtSecret::new(SECRET), 1_000, true, 3_600).unwrap()
}

impl TestServer {
    /// Sends a request. `user` = `Some(id)` adds that user's token (1000 is the admin).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        user: Option<i64>,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(u) = user {
            let t = if u == 1_000 { admin_token() } else { token(u) };
            req = req.bearer_auth(t);
        }
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        answer(req.send().await.expect("the server answers")).await
    }

    pub async fn get(&self, path: &str, user: Option<i64>) -> Answer {
        self.call(Method::GET, path, user, None, None).await
    }

    pub async fn post(&self, path: &str, user: i64, key: Option<&str>, body: Value) -> Answer {
        self.call(Method::POST, path, Some(user), key, Some(body))
            .await
    }

    /// Sends `request` as raw bytes on a new connection and reads the answer until the server
    /// closes it (for requests no HTTP client would send).
    pub async fn raw(&self, request: &[u8]) -> Answer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.base.trim_start_matches("http://");
        let mut tcp = tokio::net::TcpStream::connect(addr)
            .await
            .expect("the server accepts");
        // The server may refuse before reading everything; the answer is what matters.
        let _ = tcp.write_all(request).await;
        let mut bytes = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut bytes)).await;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (head, raw) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .get(9..12)
            .and_then(|s| s.parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
        Answer {
            status,
            body: serde_json::from_str(raw).unwrap_or(Value::Null),
            raw: raw.to_owned(),
            replayed: false,
            retry_after: None,
            www_authenticate: None,
            location: None,
            link: None,
        }
    }

    /// Waits until the issuance queue has persisted everything.
    pub async fn drained(&self) {
        for _ in 0..1_000 {
            let d = self.service.app.ports().queue.depth().await.unwrap();
            if d.is_drained() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the issuance queue did not drain");
    }
}

pub async fn answer(r: reqwest::Response) -> Answer {
    let status = r.status();
    let replayed = r
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let www_authenticate = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let link = r
        .headers()
        .get("link")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let raw = r.text().await.unwrap_or_default();
    let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
    Answer {
        status,
        body,
        raw,
        replayed,
        retry_after,
        www_authenticate,
        location,
        link,
    }
}
