//! What the process tests share: starting the real `stockade` binary as a child, tokens, calls.

use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use stockade_http::{issue_token, JwtSecret};
use stockade_tests::pg::TestDb;

pub const SECRET: &str = "process-test-secret";

/// The process tests run one at a time: each starts instances with their own connection pools,
/// and together they would outgrow the server's `max_connections`.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Instance {
    pub child: Child,
    pub base: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Locks and idempotency on Postgres unless `extra` chooses otherwise, and pools small enough
/// for two instances and the test itself to fit the server's `max_connections`.
pub fn defaults(extra: &[&str]) -> Vec<&'static str> {
    let mut out = Vec::new();
    if !extra.contains(&"--db-max-connections") {
        out.extend(["--db-max-connections", "8", "--lock-max-connections", "16"]);
    }
    if !extra.contains(&"--lock") {
        out.extend(["--lock", "postgres"]);
    }
    if !extra.contains(&"--idempotency") {
        out.extend(["--idempotency", "postgres"]);
    }
    out
}

pub async fn start(db: &TestDb, extra: &[&str]) -> Instance {
    let mut args = vec![
        "--store".to_owned(),
        "postgres".to_owned(),
        "--database-url".to_owned(),
        db.url.clone(),
        "--database-schema".to_owned(),
        db.schema.clone(),
        "--lock-wait-ms".to_owned(),
        "60000".to_owned(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args.extend(defaults(extra).iter().map(|a| (*a).to_owned()));
    let instance = spawn(&args);
    wait_until_ok(&instance, "/ready").await;
    instance
}

/// Starts `stockade serve` on a free port with the test secret and `args`, without waiting.
pub fn spawn<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Instance {
    spawn_via(Command::new(env!("CARGO_BIN_EXE_stockade")), args, |_| {})
}

/// [`spawn`] through `cmd`: the binary itself, or a program that runs it with the arguments
/// it is given. `adjust` changes the command last (environment, stderr) before it starts.
pub fn spawn_via<S: AsRef<std::ffi::OsStr>>(
    mut cmd: Command,
    args: &[S],
    adjust: impl FnOnce(&mut Command),
) -> Instance {
    let port = free_port();
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--jwt-secret",
        SECRET,
    ])
    .args(args)
    .env("RUST_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    adjust(&mut cmd);
    // Owned by an Instance at once, so that its Drop kills and reaps it on every path.
    Instance {
        child: cmd.spawn().unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    }
}

/// Waits (up to 15 s) until `path` answers 2xx; panics otherwise.
pub async fn wait_until_ok(instance: &Instance, path: &str) {
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{}{path}", instance.base)).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the instance did not answer {path} with 2xx");
}

pub fn token(user: i64) -> String {
    issue_token(&JwtSecret::new(SECRET), user, user == 1_000, 3_600).unwrap()
}

pub async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    user: i64,
    key: Option<String>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method, url).bearer_auth(token(user));
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    // No answer (the instance was killed mid-request) is status 0.
    let Ok(r) = req.send().await else {
        return (0, Value::Null);
    };
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Every wallet's balance equals its ledger sum, per the database itself.
pub async fn assert_wallets_match_ledgers(db: &TestDb) {
    let bad: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM wallets w
         WHERE w.balance <> COALESCE((SELECT SUM(CASE kind WHEN 'USE' THEN -amount ELSE amount END)
                                      FROM ledger l WHERE l.user_id = w.user_id), 0)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(bad, 0, "a wallet disagrees with its ledger");
}
