//! The access log: one line per request at `info`, with method, route template, status,
//! latency and request id, and never a header's value or a body.

use crate::support::{spawn_via, token};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_logged_once_without_its_secrets() {
    let mut instance = spawn_via(
        Command::new(env!("CARGO_BIN_EXE_stockade")),
        &["--log-format", "json"],
        |cmd| {
            cmd.env("RUST_LOG", "info").stderr(Stdio::piped());
        },
    );
    crate::support::wait_until_ok(&instance, "/health").await;
    let client = reqwest::Client::new();
    let bearer = token(7);
    let r = client
        .post(format!("{}/api/v1/users/me/balance/charge", instance.base))
        .bearer_auth(&bearer)
        .header("Idempotency-Key", "log-1")
        .header("x-request-id", "access-log-request-1")
        .json(&serde_json::json!({"amount": 987_653}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = client
        .get(format!("{}/api/v1/orders/999", instance.base))
        .bearer_auth(&bearer)
        .header("x-request-id", "access-log-request-2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = instance.child.kill();
    let mut log = String::new();
    instance
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let access: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["target"] == "stockade::access")
        .collect();
    let find = |id: &str| {
        let lines: Vec<&serde_json::Value> = access
            .iter()
            .filter(|l| l["span"]["request_id"] == id)
            .collect();
        assert_eq!(lines.len(), 1, "one line for {id}: {log}");
        lines[0].clone()
    };
    let charge = find("access-log-request-1");
    assert_eq!(charge["level"], "INFO");
    assert_eq!(charge["fields"]["method"], "POST");
    assert_eq!(charge["fields"]["route"], "/api/v1/users/me/balance/charge");
    assert_eq!(charge["fields"]["status"], 200);
    assert!(
        charge["fields"]["latency_ms"].as_f64().is_some(),
        "{charge}"
    );
    let order = find("access-log-request-2");
    assert_eq!(order["fields"]["route"], "/api/v1/orders/{orderId}");
    assert_eq!(order["fields"]["status"], 404);
    // Neither the token nor the body ever reaches the log.
    let signature = bearer.rsplit('.').next().unwrap();
    assert!(!log.contains(signature), "the token was logged");
    assert!(!log.contains("987653"), "the body was logged");
}
