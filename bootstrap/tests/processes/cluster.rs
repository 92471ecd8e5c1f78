//! On a Redis Cluster: two instances of the production profile (`--redis-mode cluster`, locks on
//! Postgres) share one real cluster of 3 masters + 3 replicas (AOF on) and one database. Both
//! serve one FLASH coupon and agree on it; then a drop runs through both while the master that
//! holds the coupon's gate is killed (SIGKILL) and its replica takes over. Afterwards nothing is
//! over-issued, nobody holds the coupon twice, the gate and the store agree once reconciled, and
//! every user answered RESERVED holds the coupon.

use crate::support::*;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockade_application::ports::gate::CouponGate;
use stockade_domain::{CouponId, UserId};
use stockade_redis::{RedisCouponGate, RedisTarget};
use stockade_tests::pg::TestDb;
use stockade_tests::redis_cluster::Cluster;

/// Users in the drop, and the coupon's quantity.
const USERS: i64 = 20_000;
const QUANTITY: i64 = 2_000;
/// Requests in flight at once, over both instances.
const IN_FLIGHT: usize = 256;
/// The master is killed once this many users were answered RESERVED.
const KILL_AFTER: usize = 500;
/// Attempts per user: a request that meets the failover (503, or no answer) is sent again.
const ATTEMPTS: usize = 40;
/// The first user of the drop (user 1000 is the tests' admin).
const FIRST_USER: i64 = 10_001;

/// How one user's requests ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Reserved,
    SoldOut,
    AlreadyIssued,
    /// Every attempt met a 503 or no answer.
    Unavailable,
}

fn production(db: &TestDb, cluster: &Cluster, ns: &str) -> Vec<String> {
    [
        "--profile",
        "production",
        "--database-url",
        &db.url,
        "--database-schema",
        &db.schema,
        "--redis-mode",
        "cluster",
        "--redis-url",
        &cluster.urls().join(","),
        "--lock-namespace",
        ns,
        "--db-max-connections",
        "8",
        "--lock-max-connections",
        "16",
        "--issuance-visibility-secs",
        "3",
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect()
}

/// One user's issue request through `base`, sent again (a bounded number of times) while it
/// meets the failover.
async fn issue(client: &reqwest::Client, base: &str, cid: i64, user: i64) -> (Answer, usize) {
    let url = format!("{base}/api/v1/coupons/{cid}/issue");
    for attempt in 1..=ATTEMPTS {
        let (status, body) =
            call(client, reqwest::Method::POST, url.clone(), user, None, None).await;
        match (status, code(&body)) {
            (200, _) if body["data"]["status"] == "RESERVED" => return (Answer::Reserved, attempt),
            (409, Some("COUPON_SOLD_OUT")) => return (Answer::SoldOut, attempt),
            (409, Some("COUPON_ALREADY_ISSUED")) => return (Answer::AlreadyIssued, attempt),
            (0 | 503, _) => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("user {user} answered {other:?}: {body}"),
        }
    }
    (Answer::Unavailable, ATTEMPTS)
}

fn code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

async fn stock(client: &reqwest::Client, base: &str, cid: i64) -> Value {
    let (status, body) = call(
        client,
        reqwest::Method::GET,
        format!("{base}/api/v1/admin/coupons/{cid}/stock"),
        1_000,
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

async fn store_holders(db: &TestDb, cid: i64) -> BTreeSet<i64> {
    let users: Vec<i64> =
        sqlx::query_scalar("SELECT user_id FROM user_coupons WHERE coupon_id = $1")
            .bind(cid)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let set: BTreeSet<i64> = users.iter().copied().collect();
    assert_eq!(set.len(), users.len(), "a user holds the coupon twice");
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_drop_on_a_cluster_survives_the_loss_of_the_coupons_master() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDb::new().await;
    let mut cluster = Cluster::start().await;
    let ns = stockade_tests::redis::namespace();
    let args = production(&db, &cluster, &ns);
    let a = spawn(&args);
    let b = spawn(&args);
    wait_until_ok(&a, "/ready").await;
    wait_until_ok(&b, "/ready").await;
    let bases = [a.base.clone(), b.base.clone()];
    eprintln!("cluster drop: instances ready");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()
        .unwrap();

    let (status, coupon) = call(&client, reqwest::Method::POST, format!("{}/api/v1/admin/coupons", bases[0]), 1_000, None,
        Some(json!({"name": "CLUSTER DROP", "kind": "CART", "discountType": "FIXED", "discountValue": 100, "quantity": QUANTITY, "mode": "FLASH"}))).await;
    assert_eq!(status, 201, "{coupon}");
    let cid = coupon["data"]["id"].as_i64().unwrap();

    // Both instances serve the coupon and agree: a place taken through one is known to the
    // other, and both count the same stock.
    assert_eq!(
        issue(&client, &bases[0], cid, FIRST_USER).await,
        (Answer::Reserved, 1)
    );
    assert_eq!(
        issue(&client, &bases[1], cid, FIRST_USER).await,
        (Answer::AlreadyIssued, 1)
    );
    for base in &bases {
        let s = stock(&client, base, cid).await;
        assert_eq!(
            (
                s["quantity"].as_i64(),
                s["remaining"].as_i64(),
                s["reserved"].as_i64()
            ),
            (Some(QUANTITY), Some(QUANTITY - 1), Some(1)),
            "{s}"
        );
    }

    // The drop, over both instances; the coupon's master dies once KILL_AFTER were reserved.
    let gate = RedisCouponGate::connect(RedisTarget::Cluster(cluster.urls()), ns.as_str())
        .await
        .unwrap();
    let [meta, _, _] = gate.keys(CouponId::new(cid).unwrap());
    let reserved = Arc::new(AtomicUsize::new(1));
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for user in FIRST_USER + 1..FIRST_USER + USERS {
        let (client, reserved, slots) = (client.clone(), reserved.clone(), slots.clone());
        let base = bases[(user % 2) as usize].clone();
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await.unwrap();
            let (answer, attempts) = issue(&client, &base, cid, user).await;
            if answer == Answer::Reserved {
                reserved.fetch_add(1, Ordering::SeqCst);
            }
            (user, answer, attempts)
        }));
    }
    while reserved.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the drop stalled"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at_kill = reserved.load(Ordering::SeqCst);
    eprintln!("cluster drop: killing the master of {meta} at {at_kill} reserved");
    let failover = cluster.kill_master_of(&meta).await;
    let healed = reserved.load(Ordering::SeqCst);
    eprintln!("cluster drop: {failover:?} at {healed} reserved");
    let mut answers: HashMap<i64, Answer> = HashMap::from([(FIRST_USER, Answer::Reserved)]);
    let mut retried = 0usize;
    for t in tasks {
        let (user, answer, attempts) = t.await.unwrap();
        retried += usize::from(attempts > 1);
        answers.insert(user, answer);
    }
    let took = started.elapsed();
    let count = |a: Answer| answers.values().filter(|x| **x == a).count();
    eprintln!(
        "cluster drop: {USERS} users / {QUANTITY} in {took:?}; master {} killed at {at_kill} reserved, \
         replica {} serving at {healed}; reserved {}, sold out {}, already issued {}, unavailable {}, \
         retried {retried}",
        failover.killed,
        failover.promoted,
        count(Answer::Reserved),
        count(Answer::SoldOut),
        count(Answer::AlreadyIssued),
        count(Answer::Unavailable),
    );
    assert!(
        at_kill < QUANTITY as usize,
        "the master died after the drop sold out"
    );
    assert_eq!(
        count(Answer::Unavailable),
        0,
        "a user was never served after the failover"
    );
    assert!(count(Answer::Reserved) <= QUANTITY as usize);

    // Reconcile (as an operator would after a failover) until the gate and the store agree:
    // consumers may still be persisting, and entries a dead consumer connection held are taken
    // over after the visibility time.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (gate_holders, stored) = loop {
        let (status, report) = call(
            &client,
            reqwest::Method::POST,
            format!("{}/api/v1/admin/coupons/{cid}/reconcile", bases[1]),
            1_000,
            None,
            None,
        )
        .await;
        assert_eq!(status, 200, "{report}");
        let gate_holders: BTreeSet<i64> = gate
            .holders(CouponId::new(cid).unwrap())
            .await
            .unwrap()
            .into_iter()
            .map(UserId::get)
            .collect();
        let stored = store_holders(&db, cid).await;
        eprintln!(
            "cluster drop: reconciled {report}; gate {} store {}",
            gate_holders.len(),
            stored.len()
        );
        if gate_holders == stored || Instant::now() > deadline {
            break (gate_holders, stored);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        stored.len() <= QUANTITY as usize,
        "over-issued: {}",
        stored.len()
    );
    assert_eq!(
        gate_holders.symmetric_difference(&stored).count(),
        0,
        "gate and store disagree after reconciliation"
    );
    let lost: Vec<i64> = answers
        .iter()
        .filter(|(u, a)| **a == Answer::Reserved && !stored.contains(u))
        .map(|(u, _)| *u)
        .collect();
    assert!(
        lost.is_empty(),
        "{} users answered RESERVED hold no coupon (e.g. {:?})",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    // Whoever holds the coupon asked for it, and everyone answered RESERVED or "already
    // issued" (a first attempt that took a place but whose answer was lost) holds it.
    for u in &stored {
        assert!(answers.contains_key(u), "user {u} never asked");
    }
    let already_without: usize = answers
        .iter()
        .filter(|(u, a)| **a == Answer::AlreadyIssued && !stored.contains(u))
        .count();
    assert_eq!(already_without, 0, "answered already issued, holds nothing");
    for base in &bases {
        let s = stock(&client, base, cid).await;
        assert_eq!(s["reserved"].as_i64(), Some(stored.len() as i64), "{s}");
        assert_eq!(s["persisted"].as_i64(), Some(stored.len() as i64), "{s}");
    }
    drop((a, b));
    drop(cluster);
    db.drop_schema().await;
}
