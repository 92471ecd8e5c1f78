//! The real `stockade` binary, run as separate processes on Postgres: two instances sharing one
//! database, and a crash in the middle of payments followed by recovery.

#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use stockade_http::{issue_token, JwtSecret};
use stockade_tests::pg::TestDb;

const SECRET: &str = "process-test-secret";

/// The process tests run one at a time: each starts instances with their own connection pools,
/// and together they would outgrow the server's `max_connections`.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Instance {
    child: Child,
    base: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Locks and idempotency on Postgres unless `extra` chooses otherwise, and pools small enough
/// for two instances and the test itself to fit the server's `max_connections`.
fn defaults(extra: &[&str]) -> Vec<&'static str> {
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

async fn start(db: &TestDb, extra: &[&str]) -> Instance {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stockade"));
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--jwt-secret",
        SECRET,
        "--store",
        "postgres",
        "--database-url",
        &db.url,
        "--database-schema",
        &db.schema,
        "--lock-wait-ms",
        "60000",
    ])
    .args(extra)
    .args(defaults(extra))
    .env("RUST_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    // Owned by an Instance at once, so that its Drop kills and reaps it on every path.
    let instance = Instance {
        child: cmd.spawn().unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{}/ready", instance.base)).send().await {
            if r.status().is_success() {
                return instance;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the instance did not become ready");
}

fn token(user: i64) -> String {
    issue_token(&JwtSecret::new(SECRET), user, user == 1_000, 3_600).unwrap()
}

async fn call(
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
async fn assert_wallets_match_ledgers(db: &TestDb) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_database_and_every_invariant_holds() {
    two_instances(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_and_redis_keep_every_invariant() {
    let ns = stockade_tests::redis::namespace();
    let url = stockade_tests::redis::url();
    two_instances(&[
        "--lock",
        "redis",
        "--idempotency",
        "redis",
        "--gate",
        "redis",
        "--queue",
        "redis",
        "--redis-url",
        &url,
        "--lock-namespace",
        &ns,
    ])
    .await;
}

/// With the gate on Redis, a FLASH coupon of 100 raced by 500 users over both instances has
/// exactly 100 winners, each persisted once (by whichever instance's consumer took it).
async fn flash_race_over(bases: &[String; 2], db: &TestDb) {
    let client = reqwest::Client::new();
    let (status, coupon) = call(&client, reqwest::Method::POST, format!("{}/api/v1/admin/coupons", bases[1]), 1_000, None,
        Some(json!({"name": "DROP", "kind": "CART", "discountType": "FIXED", "discountValue": 100, "quantity": 100, "mode": "FLASH"}))).await;
    assert_eq!(status, 201, "{coupon}");
    let cid = coupon["data"]["id"].as_i64().unwrap();
    let mut tasks = Vec::new();
    for u in 1..=500i64 {
        let (client, base) = (client.clone(), bases[(u % 2) as usize].clone());
        tasks.push(tokio::spawn(async move {
            let url = format!("{base}/api/v1/coupons/{cid}/issue");
            call(&client, reqwest::Method::POST, url, u, None, None)
                .await
                .0
        }));
    }
    let mut reserved = 0;
    for t in tasks {
        match t.await.unwrap() {
            202 | 200 => reserved += 1,
            409 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(reserved, 100);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (persisted, distinct): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT user_id) FROM user_coupons WHERE coupon_id = $1",
        )
        .bind(cid)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(persisted, distinct, "a user holds the coupon twice");
        if persisted == 100 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {persisted} persisted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for base in bases {
        let (status, stock) = call(
            &client,
            reqwest::Method::GET,
            format!("{base}/api/v1/admin/coupons/{cid}/stock"),
            1_000,
            None,
            None,
        )
        .await;
        assert_eq!(status, 200);
        let d = &stock["data"];
        assert_eq!(
            (
                d["remaining"].as_i64(),
                d["reserved"].as_i64(),
                d["persisted"].as_i64(),
                d["failed"].as_i64()
            ),
            (Some(0), Some(100), Some(100), Some(0)),
            "{stock}"
        );
    }
}

async fn two_instances(extra: &[&str]) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDb::new().await;
    // Two instances' pools must fit the server's max_connections together.
    let flags = extra.to_vec();
    let a = start(&db, &flags).await;
    let b = start(&db, &flags).await;
    let bases = [a.base.clone(), b.base.clone()];
    let client = reqwest::Client::new();

    // A LOCKED coupon of 100 raced by 500 users spread over both instances.
    let (status, coupon) = call(&client, reqwest::Method::POST, format!("{}/api/v1/admin/coupons", bases[0]), 1_000, None,
        Some(json!({"name": "SHARED", "kind": "CART", "discountType": "FIXED", "discountValue": 100, "quantity": 100, "mode": "LOCKED"}))).await;
    assert_eq!(status, 201, "{coupon}");
    let cid = coupon["data"]["id"].as_i64().unwrap();
    // A product of 300 raced by 400 buyers.
    let (_, product) = call(
        &client,
        reqwest::Method::POST,
        format!("{}/api/v1/admin/products", bases[1]),
        1_000,
        None,
        Some(json!({"name": "Rush", "price": 1_000, "stock": 300, "maxPerOrder": 1})),
    )
    .await;
    let pid = product["data"]["id"].as_i64().unwrap();

    let mut tasks = Vec::new();
    for u in 1..=500i64 {
        let (client, base) = (client.clone(), bases[(u % 2) as usize].clone());
        tasks.push(tokio::spawn(async move {
            call(
                &client,
                reqwest::Method::POST,
                format!("{base}/api/v1/coupons/{cid}/issue"),
                u,
                None,
                None,
            )
            .await
            .0
        }));
    }
    let mut issued = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => issued += 1,
            409 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(issued, 100);

    let mut tasks = Vec::new();
    for u in 1..=400i64 {
        let client = client.clone();
        let base = bases[(u % 2) as usize].clone();
        let other = bases[((u + 1) % 2) as usize].clone();
        tasks.push(tokio::spawn(async move {
            let (s, order) = call(
                &client,
                reqwest::Method::POST,
                format!("{base}/api/v1/orders"),
                u,
                Some(format!("rush-{u}")),
                Some(json!({"items": [{"productId": pid, "quantity": 1}]})),
            )
            .await;
            if s != 201 {
                return (s, None);
            }
            // Fund the wallet through the other instance.
            let total = order["data"]["total"].as_i64().unwrap();
            let id = order["data"]["orderId"].as_i64().unwrap();
            let (c, _) = call(
                &client,
                reqwest::Method::POST,
                format!("{other}/api/v1/users/me/balance/charge"),
                u,
                Some(format!("fund-{u}")),
                Some(json!({"amount": total})),
            )
            .await;
            assert_eq!(c, 200);
            (s, Some((id, total)))
        }));
    }
    let mut orders = Vec::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            (201, Some(o)) => orders.push(o),
            (400, None) => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((orders.len(), refused), (300, 100));
    // Pay every order on both instances at once with one key (a double click across the pair).
    let mut tasks = Vec::new();
    for (n, (id, total)) in orders.iter().copied().enumerate() {
        let user: i64 = sqlx::query_scalar("SELECT user_id FROM orders WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        for base in bases.clone() {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                call(
                    &client,
                    reqwest::Method::POST,
                    format!("{base}/api/v1/orders/{id}/payment"),
                    user,
                    Some(format!("pay-{n}")),
                    Some(json!({"amount": total})),
                )
                .await
                .0
            }));
        }
    }
    for t in tasks {
        let s = t.await.unwrap();
        assert!(s == 200 || s == 409, "payment answered {s}");
    }
    // Invariants, read from the database.
    let stock: i64 = sqlx::query_scalar("SELECT stock FROM products WHERE id = $1")
        .bind(pid)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stock, 0);
    let holders: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT user_id) FROM user_coupons WHERE coupon_id = $1")
            .bind(cid)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(holders, 100);
    let uses: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger WHERE kind = 'USE'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let paid: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'PAID'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'PENDING_PAYMENT'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(paid + pending, 300);
    assert_eq!(uses, paid, "one debit per paid order, never two");
    assert_wallets_match_ledgers(&db).await;
    if extra.contains(&"--gate") {
        flash_race_over(&bases, &db).await;
    }
    drop((a, b));
    db.drop_schema().await;
}

async fn crash_in_the_middle_of_payments(platform_after_restart: &str, expected: &str) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDb::new().await;
    let client = reqwest::Client::new();
    // The first instance's data platform never answers: payments stop after their debit.
    let first = start(
        &db,
        &[
            "--platform-mode",
            "hang",
            "--db-max-connections",
            "8",
            "--lock-max-connections",
            "32",
            "--platform-timeout-ms",
            "600000",
            "--request-timeout-secs",
            "600",
        ],
    )
    .await;
    let mut orders = Vec::new();
    for u in 1..=20i64 {
        let (s, _) = call(
            &client,
            reqwest::Method::POST,
            format!("{}/api/v1/users/me/balance/charge", first.base),
            u,
            Some(format!("c{u}")),
            Some(json!({"amount": 100_000})),
        )
        .await;
        assert_eq!(s, 200);
        let (s, o) = call(
            &client,
            reqwest::Method::POST,
            format!("{}/api/v1/orders", first.base),
            u,
            Some(format!("o{u}")),
            Some(json!({"items": [{"productId": 2, "quantity": 1}]})),
        )
        .await;
        assert_eq!(s, 201, "{o}");
        orders.push((
            u,
            o["data"]["orderId"].as_i64().unwrap(),
            o["data"]["total"].as_i64().unwrap(),
        ));
    }
    for (u, id, total) in orders.clone() {
        let (client, base) = (client.clone(), first.base.clone());
        tokio::spawn(async move {
            let _ = call(
                &client,
                reqwest::Method::POST,
                format!("{base}/api/v1/orders/{id}/payment"),
                u,
                Some(format!("p{u}")),
                Some(json!({"amount": total})),
            )
            .await;
        });
    }
    // Wait until every saga has debited, then kill the process.
    for _ in 0..400 {
        let debited: i64 =
            sqlx::query_scalar("SELECT count(*) FROM saga_log WHERE step = 'DEBITED'")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        if debited == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let debited: i64 = sqlx::query_scalar("SELECT count(*) FROM saga_log WHERE step = 'DEBITED'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(debited, 20);
    drop(first); // SIGKILL
    let second = start(
        &db,
        &[
            "--platform-mode",
            platform_after_restart,
            "--saga-recovery-after-secs",
            "1",
        ],
    )
    .await;
    let mut settled = false;
    for _ in 0..300 {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM saga_log WHERE step = 'DEBITED'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        if open == 0 {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(settled, "the recovery worker did not finish the sagas");
    for (u, id, _) in &orders {
        let (s, o) = call(
            &client,
            reqwest::Method::GET,
            format!("{}/api/v1/orders/{id}", second.base),
            *u,
            None,
            None,
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(o["data"]["status"], expected, "{o}");
    }
    let stock: i64 = sqlx::query_scalar("SELECT stock FROM products WHERE id = 2")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let sold = if expected == "PAID" { 20 } else { 0 };
    assert_eq!(stock, 1_000 - sold);
    assert_wallets_match_ledgers(&db).await;
    let balance_total: i64 =
        sqlx::query_scalar("SELECT COALESCE(SUM(balance), 0)::BIGINT FROM wallets")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let spent: i64 = orders.iter().map(|o| o.2).sum::<i64>() * i64::from(expected == "PAID");
    assert_eq!(balance_total, 20 * 100_000 - spent);
    drop(second);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_payment_is_finished_by_recovery() {
    crash_in_the_middle_of_payments("accept", "PAID").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_payment_is_compensated_when_the_platform_refuses() {
    crash_in_the_middle_of_payments("fail", "PAYMENT_FAILED").await;
}
