//! Start-up and readiness: the production profile refuses a FLASH gate whose Redis keeps no
//! append-only file unless told to accept it; the process listens before the start-up
//! reconciliation is done; a Postgres outage answers 503 at once.

use crate::support::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use stockade_application::ports::gate::CouponGate;
use stockade_domain::{CouponId, Timestamp, UserId};
use stockade_tests::pg::TestDb;
use stockade_tests::proxy::Proxy;

/// A `redis-server` of the test's own on a free port, keeping nothing on disk until told to
/// (its files go to a directory of its own); stopped by pid and its directory removed when
/// dropped, panics included.
struct OwnRedis {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl OwnRedis {
    async fn start() -> OwnRedis {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("stockade-startup-redis-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--appendonly", "no", "--save", ""])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let redis = OwnRedis {
            child,
            dir,
            url: format!("redis://127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            if redis.command(&["PING"]).await.is_ok() {
                return redis;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server on {port} did not start");
    }

    async fn command(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let client = redis::Client::open(self.url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut conn).await
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    match client.get(format!("{base}{path}")).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_profile_refuses_a_gate_redis_without_aof_unless_allowed() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDb::new().await;
    let redis = OwnRedis::start().await;
    let ns = stockade_tests::redis::namespace();
    let production = owned(&[
        "--profile",
        "production",
        "--database-url",
        &db.url,
        "--database-schema",
        &db.schema,
        "--redis-url",
        &redis.url,
        "--lock-namespace",
        &ns,
        "--db-max-connections",
        "4",
    ]);

    // Refused: exits non-zero, naming the flag that would accept it.
    let mut refused = Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--jwt-secret", SECRET])
        .args(&production)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = refused.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = refused.kill();
            let _ = refused.wait();
            panic!("the production profile started on a Redis without AOF");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut refused.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("--allow-volatile-gate"), "{stderr}");
    assert!(stderr.contains("appendonly no"), "{stderr}");

    // Allowed: it serves, and /ready says what it serves without.
    let mut allowed = production.clone();
    allowed.push("--allow-volatile-gate".to_owned());
    let volatile = spawn(&allowed);
    wait_until_ok(&volatile, "/ready").await;
    let (status, body) = get(&volatile.base, "/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "ready");
    let warnings = body["data"]["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{body}");
    assert!(
        warnings[0].as_str().unwrap().contains("appendonly no"),
        "{body}"
    );

    // AOF turned on at run time: the warning goes (after the cached answer expires), and a new
    // instance starts without the flag and reports nothing.
    redis
        .command(&["CONFIG", "SET", "appendonly", "yes"])
        .await
        .unwrap();
    let mut cleared = false;
    for _ in 0..100 {
        let (status, body) = get(&volatile.base, "/ready").await;
        assert_eq!(status, 200, "{body}");
        if body["data"]["warnings"] == json!([]) {
            cleared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cleared, "/ready kept the warning after AOF was turned on");
    drop(volatile);
    let durable = spawn(&production);
    wait_until_ok(&durable, "/ready").await;
    let (status, body) = get(&durable.base, "/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["warnings"], json!([]), "{body}");
    drop(durable);
    drop(redis);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_listens_before_the_start_up_reconciliation_and_is_ready_after_it() {
    const BACKLOG: i64 = 2_000;
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDb::new().await;
    let ns = stockade_tests::redis::namespace();
    let url = stockade_tests::redis::url();
    let flags = [
        "--gate",
        "redis",
        "--queue",
        "redis",
        "--redis-url",
        &url,
        "--lock-namespace",
        &ns,
    ];
    let first = start(&db, &flags).await;
    let client = reqwest::Client::new();
    let (status, coupon) = call(&client, reqwest::Method::POST, format!("{}/api/v1/admin/coupons", first.base), 1_000, None,
        Some(json!({"name": "BACKLOG", "kind": "CART", "discountType": "FIXED", "discountValue": 100, "quantity": BACKLOG, "mode": "FLASH"}))).await;
    assert_eq!(status, 201, "{coupon}");
    let cid = CouponId::new(coupon["data"]["id"].as_i64().unwrap()).unwrap();
    drop(first);

    // A backlog the store never saw: reservations in the gate whose stream entries are gone
    // (the start-up reconciliation persists each of them).
    let gate = stockade_redis::RedisCouponGate::connect(&url, ns.as_str())
        .await
        .unwrap();
    let now = Timestamp::from_millis(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap(),
    );
    for u in 1..=BACKLOG {
        gate.reserve(cid, UserId::new(u).unwrap(), now)
            .await
            .unwrap();
    }

    let mut args = owned(&[
        "--store",
        "postgres",
        "--database-url",
        &db.url,
        "--database-schema",
        &db.schema,
    ]);
    args.extend(owned(&flags));
    args.extend(owned(&defaults(&flags)));
    let second = spawn(&args);
    let (mut health_while_starting, mut refused_while_starting) = (false, false);
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(120), "never ready");
        let (ready, body) = get(&second.base, "/ready").await;
        if ready == 200 {
            break;
        }
        if ready == 503 {
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.starts_with("starting"), "{body}");
            let (health, _) = get(&second.base, "/health").await;
            health_while_starting |= health == 200;
            let (products, body) = get(&second.base, "/api/v1/products").await;
            if products == 503 {
                assert_eq!(body["error"]["code"], "BACKEND_UNAVAILABLE", "{body}");
                refused_while_starting = true;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        health_while_starting,
        "/health never answered while /ready said starting"
    );
    assert!(
        refused_while_starting,
        "business requests were not refused while starting"
    );
    // Ready means reconciled: the whole backlog is in the store.
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM user_coupons WHERE coupon_id = $1")
        .bind(cid.get())
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(held, BACKLOG);
    let (products, body) = get(&second.base, "/api/v1/products").await;
    assert_eq!(products, 200, "{body}");
    drop(second);
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_answers_503_at_once_and_both_recover() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDb::new().await;
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let through_proxy = db
        .url
        .replacen("127.0.0.1:5432", &proxy.addr.to_string(), 1);
    assert_ne!(
        through_proxy, db.url,
        "the test database is not at 127.0.0.1:5432"
    );
    let instance = spawn(&owned(&[
        "--store",
        "postgres",
        "--lock",
        "memory",
        "--idempotency",
        "memory",
        "--database-url",
        &through_proxy,
        "--database-schema",
        &db.schema,
        "--db-max-connections",
        "4",
    ]));
    wait_until_ok(&instance, "/ready").await;
    let (status, body) = get(&instance.base, "/api/v1/products").await;
    assert_eq!(status, 200, "{body}");

    // The server stops answering: connections open but nothing comes back.
    proxy.stall().await;
    for _ in 0..3 {
        let asked = Instant::now();
        let (status, body) = get(&instance.base, "/api/v1/products").await;
        let took = asked.elapsed();
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "BACKEND_UNAVAILABLE", "{body}");
        assert!(took < Duration::from_secs(2), "a request took {took:?}");
        let asked = Instant::now();
        let (status, body) = get(&instance.base, "/ready").await;
        let took = asked.elapsed();
        assert_eq!(status, 503, "{body}");
        assert!(took < Duration::from_secs(1), "/ready took {took:?}");
    }

    proxy.heal();
    let mut recovered = false;
    for _ in 0..150 {
        let (ready, _) = get(&instance.base, "/ready").await;
        let (products, _) = get(&instance.base, "/api/v1/products").await;
        if ready == 200 && products == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the instance did not recover after the outage");
    drop(instance);
    db.drop_schema().await;
}
