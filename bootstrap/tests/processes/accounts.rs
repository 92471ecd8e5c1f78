//! Accounts over two instances on one database: the failed sign-ins of an email are counted in
//! the database, so failures on either instance add up to one throttle.

use crate::support::*;
use serde_json::{json, Value};
use stockade_tests::pg::TestDb;

async fn post(client: &reqwest::Client, url: String, body: Value) -> (u16, Value, Option<String>) {
    let r = client.post(url).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, r.json().await.unwrap_or(Value::Null), retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_window_of_failed_sign_ins() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDb::new().await;
    let a = start(&db, &[]).await;
    let b = start(&db, &[]).await;
    let client = reqwest::Client::new();
    let login = |base: &str, password: &str| {
        (
            format!("{base}/api/v1/auth/login"),
            json!({"email": "Shared@Example.com", "password": password}),
        )
    };

    // Registered on A, known on B.
    let (status, body, _) = post(
        &client,
        format!("{}/api/v1/auth/register", a.base),
        json!({"email": "shared@example.com", "password": "right password", "name": "S"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (url, body) = login(&b.base, "right password");
    let (status, signed_in, _) = post(&client, url, body).await;
    assert_eq!(status, 200, "{signed_in}");
    let id = signed_in["data"]["userId"].as_i64().unwrap_or(0);
    assert!(id >= 1_000_001, "{signed_in}");

    // Three failures on A and two on B make five.
    for (base, n) in [(&a.base, 3), (&b.base, 2)] {
        for _ in 0..n {
            let (url, body) = login(base, "wrong password");
            let (status, answer, _) = post(&client, url, body).await;
            assert_eq!(status, 401, "{answer}");
            assert_eq!(answer["error"]["code"], "INVALID_CREDENTIALS");
        }
    }
    for base in [&a.base, &b.base] {
        let (url, body) = login(base, "right password");
        let (status, answer, retry_after) = post(&client, url, body).await;
        assert_eq!(status, 429, "{base}: {answer}");
        assert_eq!(answer["error"]["code"], "TOO_MANY_REQUESTS");
        let secs: u64 = retry_after.and_then(|s| s.parse().ok()).unwrap_or(0);
        assert!((1..=900).contains(&secs), "Retry-After {secs}");
    }
    drop((a, b));
    db.drop_schema().await;
}
