//! The FLASH pipeline on its production backends: the Redis gate and Streams queue in front of
//! the Postgres store (each test with a schema and a Redis namespace of its own). The headline
//! races, then the faults: a consumer that dies mid-batch, Postgres unreachable for a while, the
//! queue's Redis gone at publish time, and Redis restarted without persistence.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::gate::{CouponGate, GateConfig, GateOutcome};
use stockade_application::ports::queue::{Delivery, IssuanceQueue, IssuanceRequest};
use stockade_application::ports::store::Store;
use stockade_application::Settings;
use stockade_domain::{CouponId, Discount, ErrorCode, IssuanceMode, Timestamp, UserId};
use stockade_postgres::{connect, PgConfig, PgStore};
use stockade_redis::{RedisCouponGate, RedisIssuanceQueue};
use stockade_tests::harness::{user, TestApp};
use stockade_tests::pg::TestDb;
use stockade_tests::proxy::Proxy;
use stockade_tests::redis::{namespace, url, Nodes};
use stockade_tests::scenarios;
use tokio::time::Instant;

fn settings() -> Settings {
    Settings {
        lock_wait: Duration::from_secs(60),
        ..Settings::default()
    }
}

async fn gate_at(url: &str, ns: &str) -> RedisCouponGate {
    RedisCouponGate::connect(url, ns.to_owned())
        .await
        .expect("Redis answers")
}

async fn queue_at(url: &str, ns: &str, consumer: &str, visibility: Duration) -> RedisIssuanceQueue {
    RedisIssuanceQueue::connect(url, ns, consumer.to_owned(), visibility)
        .await
        .expect("Redis answers")
}

/// Postgres store, Redis gate and queue on the shared server.
async fn pipeline(
    db: &TestDb,
    visibility: Duration,
    settings: Settings,
) -> (TestApp, RedisIssuanceQueue) {
    let ns = namespace();
    let queue = queue_at(&url(), &ns, "a", visibility).await;
    let t = TestApp::on_pipeline(
        db,
        Arc::new(db.store()),
        Arc::new(gate_at(&url(), &ns).await),
        Arc::new(queue.clone()),
        settings,
    )
    .await;
    (t, queue)
}

async fn flash_coupon(t: &TestApp, quantity: i64) -> CouponId {
    t.coupon(
        "CART",
        Discount::new("FIXED", 1_000, None).unwrap(),
        0,
        quantity,
        IssuanceMode::Flash,
    )
    .await
}

/// Every user in `users` asks once, all at once; returns the winners.
async fn race(
    t: &TestApp,
    coupon: CouponId,
    users: impl IntoIterator<Item = i64>,
) -> BTreeSet<i64> {
    let mut tasks = Vec::new();
    for u in users {
        let app = t.app.clone();
        tasks.push(tokio::spawn(async move {
            (u, app.issue_coupon(coupon, user(u)).await)
        }));
    }
    let mut winners = BTreeSet::new();
    for task in tasks {
        let (u, r) = task.await.unwrap();
        match r {
            Ok(_) => assert!(winners.insert(u)),
            Err(e) => assert_eq!(e.code(), ErrorCode::CouponSoldOut, "user {u}: {e}"),
        }
    }
    winners
}

async fn stored_holders(t: &TestApp, coupon: CouponId) -> BTreeSet<UserId> {
    let mut uow = t.app.ports().store.begin().await.unwrap();
    let list = uow.coupons().holders(coupon).await.unwrap();
    let set: BTreeSet<UserId> = list.iter().copied().collect();
    assert_eq!(set.len(), list.len(), "a user holds coupon {coupon} twice");
    set
}

async fn gate_holders(t: &TestApp, coupon: CouponId) -> BTreeSet<UserId> {
    t.app
        .ports()
        .gate
        .holders(coupon)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// Gate and store agree, and the gate's counters add up.
async fn assert_exact(t: &TestApp, coupon: CouponId) -> usize {
    let stored = stored_holders(t, coupon).await;
    assert_eq!(
        gate_holders(t, coupon).await,
        stored,
        "gate and store disagree"
    );
    let stock = t.app.coupon_stock(coupon).await.unwrap();
    assert_eq!(stock.reserved as usize, stored.len());
    assert_eq!(stock.persisted as usize, stored.len());
    assert_eq!(
        stock.remaining + stock.reserved,
        stock.quantity,
        "{stock:?}"
    );
    stored.len()
}

/// Waits until the gate's and the queue's connections found the restarted server again (the
/// first command on a connection the server dropped fails, and it reconnects).
async fn reconnected(t: &TestApp, queue: &RedisIssuanceQueue) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let probe = CouponId::new(i64::MAX).unwrap();
    while t.app.ports().gate.stats(probe).await.is_err() || queue.depth().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "no reconnection to the restarted node"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_500_users_for_100() {
    let db = TestDb::new().await;
    let (t, _) = pipeline(&db, Duration::from_secs(30), settings()).await;
    scenarios::coupon_race(&t, IssuanceMode::Flash, 500, 1, 100).await;
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_10000_users_3_requests_each_for_1000() {
    let db = TestDb::new().await;
    let (t, _) = pipeline(&db, Duration::from_secs(30), settings()).await;
    scenarios::coupon_race(&t, IssuanceMode::Flash, 10_000, 3, 1_000).await;
    db.drop_schema().await;
}

/// Consumer `a` receives a batch, persists part of it and dies. Consumer `b` (another instance)
/// takes the rest over once it has been idle for the visibility time: each request is persisted
/// exactly once and nothing `a` acked comes to `b`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_killed_mid_batch_is_taken_over() {
    let db = TestDb::new().await;
    let (a, queue_a) = pipeline(&db, Duration::from_millis(300), settings()).await;
    let coupon = flash_coupon(&a, 100).await;
    let winners = race(&a, coupon, 1..=300).await;
    assert_eq!(winners.len(), 100);

    let batch = queue_a.receive(60, Duration::from_secs(1)).await.unwrap();
    assert_eq!(batch.len(), 60);
    let (done, dropped) = batch.split_at(25);
    for d in done {
        a.app.handle_issuance(d).await.unwrap();
    }
    // `a` dies here: 35 deliveries in hand, never acked.
    let acked_by_a: HashSet<UserId> = done.iter().map(|d| d.request.user_id).collect();
    let dropped: HashSet<UserId> = dropped.iter().map(|d| d.request.user_id).collect();
    let gate = a.app.ports().gate.clone();
    drop(a);

    let queue_b = Arc::new(queue_a.with_consumer("b"));
    let b =
        TestApp::on_pipeline(&db, Arc::new(db.store()), gate, queue_b.clone(), settings()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen: Vec<Delivery> = Vec::new();
    while seen.len() < 75 {
        assert!(Instant::now() < deadline, "only {} taken over", seen.len());
        for d in queue_b
            .receive(32, Duration::from_millis(200))
            .await
            .unwrap()
        {
            b.app.handle_issuance(&d).await.unwrap();
            seen.push(d);
        }
    }
    assert!(queue_b.depth().await.unwrap().is_drained());
    let users: Vec<UserId> = seen.iter().map(|d| d.request.user_id).collect();
    let distinct: HashSet<UserId> = users.iter().copied().collect();
    assert_eq!(distinct.len(), 75, "a request came to b twice");
    assert!(distinct.is_disjoint(&acked_by_a), "b got what a had acked");
    for d in &seen {
        let expected = if dropped.contains(&d.request.user_id) {
            2
        } else {
            1
        };
        assert_eq!(d.attempt, expected, "{d:?}");
    }
    let stored = {
        let mut uow = b.app.ports().store.begin().await.unwrap();
        let n = uow.coupons().issued_count(coupon).await.unwrap();
        assert!(uow.coupons().failures(coupon).await.unwrap().is_empty());
        n
    };
    assert_eq!(stored, 100);
    let held: BTreeSet<i64> = {
        let mut uow = b.app.ports().store.begin().await.unwrap();
        uow.coupons()
            .holders(coupon)
            .await
            .unwrap()
            .iter()
            .map(|u| u.get())
            .collect()
    };
    assert_eq!(held, winners);
    db.drop_schema().await;
}

/// The store is unreachable while reservations pour in: deliveries are retried with backoff,
/// and past the attempt limit dead-lettered and given back in the gate. When Postgres returns,
/// the rest persist, the users whose reservation was given back can reserve again, and
/// reconciliation finds gate and store equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unavailable_then_reconciled_exactly() {
    let db = TestDb::new().await;
    let target: SocketAddr = {
        let host = db.url.split('@').nth(1).unwrap().split('/').next().unwrap();
        tokio::net::lookup_host(host).await.unwrap().next().unwrap()
    };
    let proxy = Proxy::start(target).await;
    let proxied_url = db.url.replacen(
        &target.port().to_string(),
        &proxy.addr.port().to_string(),
        1,
    );
    let pool = connect(&PgConfig {
        schema: Some(db.schema.clone()),
        max_connections: 4,
        acquire_timeout: Duration::from_millis(150),
        ..PgConfig::new(proxied_url)
    })
    .await
    .unwrap();
    let ns = namespace();
    let queue = Arc::new(queue_at(&url(), &ns, "a", Duration::from_secs(30)).await);
    let t = TestApp::on_pipeline(
        &db,
        Arc::new(PgStore::new(pool)) as Arc<dyn Store>,
        Arc::new(gate_at(&url(), &ns).await) as Arc<dyn CouponGate>,
        queue.clone() as Arc<dyn IssuanceQueue>,
        Settings {
            issuance_max_attempts: 3,
            issuance_backoff: Duration::from_millis(50),
            ..settings()
        },
    )
    .await;
    let coupon = flash_coupon(&t, 30).await;

    proxy.cut().await;
    let winners = race(&t, coupon, 1..=60).await;
    assert_eq!(winners.len(), 30, "the gate serves without the store");
    // Consume until a third of the reservations were dead-lettered.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut retried = 0;
    while queue.depth().await.unwrap().dead < 10 {
        assert!(Instant::now() < deadline, "nothing dead-lettered");
        for d in queue.receive(4, Duration::from_millis(100)).await.unwrap() {
            use stockade_application::usecases::handle_issuance::IssuanceOutcome;
            if t.app.handle_issuance(&d).await.unwrap() == IssuanceOutcome::Retried {
                retried += 1;
            }
        }
    }
    assert!(retried >= 20, "deliveries were not retried: {retried}");
    let given_back = 30
        - t.app
            .ports()
            .gate
            .stats(coupon)
            .await
            .unwrap()
            .unwrap()
            .reserved;
    assert!(
        given_back >= 10,
        "dead letters were not given back: {given_back}"
    );

    proxy.heal();
    t.drain().await;
    let dead = queue.depth().await.unwrap().dead;
    assert_eq!(
        u64::from(given_back),
        dead,
        "each dead letter gives exactly one back"
    );
    let report = t.app.reconcile(coupon).await.unwrap();
    assert_eq!((report.repaired, report.rolled_back), (0, 0), "{report:?}");
    let held = assert_exact(&t, coupon).await;
    assert_eq!(held, 30 - given_back as usize);

    // The given-back places go to new askers, and users who lost theirs may ask again.
    let lost: Vec<i64> = {
        let stored = stored_holders(&t, coupon).await;
        winners
            .iter()
            .copied()
            .filter(|u| !stored.contains(&user(*u)))
            .collect()
    };
    assert_eq!(lost.len(), given_back as usize);
    let again = race(&t, coupon, lost.iter().copied()).await;
    assert_eq!(again.len(), lost.len());
    t.drain().await;
    assert_eq!(assert_exact(&t, coupon).await, 30);
    db.drop_schema().await;
}

/// When the queue cannot take the reservation (its Redis is gone), the reservation is given
/// back at once and the client gets 503 BACKEND_UNAVAILABLE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_failure_rolls_back_and_answers_unavailable() {
    let db = TestDb::new().await;
    let mut nodes = Nodes::start(1).await;
    let ns = namespace();
    let queue = queue_at(&nodes.urls[0], &ns, "a", Duration::from_secs(30)).await;
    let t = TestApp::on_pipeline(
        &db,
        Arc::new(db.store()),
        Arc::new(gate_at(&url(), &ns).await),
        Arc::new(queue),
        settings(),
    )
    .await;
    let coupon = flash_coupon(&t, 5).await;
    assert!(t.app.issue_coupon(coupon, user(1)).await.is_ok());
    nodes.kill(0);
    let err = t.app.issue_coupon(coupon, user(2)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::BackendUnavailable);
    let holders = gate_holders(&t, coupon).await;
    assert_eq!(
        holders,
        BTreeSet::from([user(1)]),
        "user 2's reservation was kept"
    );
    let stats = t.app.ports().gate.stats(coupon).await.unwrap().unwrap();
    assert_eq!((stats.remaining, stats.reserved), (4, 1));
    db.drop_schema().await;
}

/// The pipeline with its gate and queue on a Redis node of its own (which a test may restart).
async fn on_a_node_of_its_own() -> (TestDb, Nodes, Arc<RedisIssuanceQueue>, TestApp) {
    let db = TestDb::new().await;
    let nodes = Nodes::start(1).await;
    let ns = namespace();
    let node = nodes.urls[0].clone();
    let queue = Arc::new(queue_at(&node, &ns, "a", Duration::from_secs(30)).await);
    let t = TestApp::on_pipeline(
        &db,
        Arc::new(db.store()),
        Arc::new(gate_at(&node, &ns).await),
        queue.clone(),
        settings(),
    )
    .await;
    (db, nodes, queue, t)
}

/// Redis (gate and queue) restarts without persistence. What the store holds is recovered: the
/// next reserve rebuilds the gate from the store and its holders. What is lost: reservations
/// still in the queue when Redis went down; those users hold nothing and may ask again, and the
/// places they had return to the gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_recovers_what_the_store_holds() {
    let (db, mut nodes, queue, t) = on_a_node_of_its_own().await;
    let coupon = flash_coupon(&t, 50).await;
    let winners = race(&t, coupon, 1..=80).await;
    assert_eq!(winners.len(), 50);
    let batch = queue.receive(30, Duration::from_secs(1)).await.unwrap();
    assert_eq!(batch.len(), 30);
    for d in &batch {
        t.app.handle_issuance(d).await.unwrap();
    }
    let persisted = stored_holders(&t, coupon).await;
    assert_eq!(persisted.len(), 30);

    nodes.restart(0).await;
    reconnected(&t, &queue).await;
    assert_eq!(
        t.app.ports().gate.stats(coupon).await.unwrap(),
        None,
        "the restarted node still had the gate"
    );
    assert!(
        queue.depth().await.unwrap().is_drained(),
        "the queue survived"
    );

    // A persisted winner asks again: the gate is rebuilt from the store first.
    let again = t
        .app
        .issue_coupon(coupon, persisted.first().copied().unwrap())
        .await;
    assert_eq!(again.unwrap_err().code(), ErrorCode::CouponAlreadyIssued);
    assert_eq!(assert_exact(&t, coupon).await, 30);
    let stats = t.app.ports().gate.stats(coupon).await.unwrap().unwrap();
    assert_eq!((stats.remaining, stats.reserved), (20, 30));

    // The 20 whose reservations were lost may ask again and get them.
    let lost: Vec<i64> = winners
        .iter()
        .copied()
        .filter(|u| !persisted.contains(&user(*u)))
        .collect();
    assert_eq!(lost.len(), 20);
    assert_eq!(race(&t, coupon, lost).await.len(), 20);
    t.drain().await;
    assert_eq!(assert_exact(&t, coupon).await, 50);
    let report = t.app.reconcile(coupon).await.unwrap();
    assert_eq!((report.repaired, report.rolled_back), (0, 0));
    assert_eq!(
        t.app
            .ports()
            .gate
            .reserve(coupon, user(999), t.app.ports().clock.now())
            .await
            .unwrap(),
        GateOutcome::SoldOut
    );
    db.drop_schema().await;
}

/// Redis restarts without persistence while a crowd is asking: every request finds the gate
/// gone at once and the gate is rebuilt, with the holders the store knows, while the others
/// reserve. Whoever is told `RESERVED` gets the coupon: exactly the places the store has left are
/// won, no reservation is refused later, and the gate is rebuilt once per process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_rebuild_racing_a_crowd_answers_truthfully() {
    let (db, mut nodes, queue, t) = on_a_node_of_its_own().await;
    let coupon = flash_coupon(&t, 50).await;
    assert_eq!(race(&t, coupon, 1..=30).await.len(), 30);
    t.drain().await;
    assert_eq!(assert_exact(&t, coupon).await, 30);

    nodes.restart(0).await;
    reconnected(&t, &queue).await;
    assert_eq!(t.app.ports().gate.stats(coupon).await.unwrap(), None);

    // Requests keep arriving while the first of them rebuilds the gate.
    let mut tasks = Vec::new();
    for u in 101..=400_i64 {
        let app = t.app.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_micros(100 * (u as u64 % 100))).await;
            (u, app.issue_coupon(coupon, user(u)).await)
        }));
    }
    let mut winners = BTreeSet::new();
    for task in tasks {
        let (u, r) = task.await.unwrap();
        match r {
            Ok(_) => assert!(winners.insert(u)),
            Err(e) => assert_eq!(e.code(), ErrorCode::CouponSoldOut, "user {u}: {e}"),
        }
    }
    assert_eq!(winners.len(), 20, "only the 20 places left can be won");
    t.drain().await;
    let stored = stored_holders(&t, coupon).await;
    for w in &winners {
        assert!(
            stored.contains(&user(*w)),
            "user {w} was told RESERVED but holds nothing"
        );
    }
    assert_eq!(assert_exact(&t, coupon).await, 50);
    let stock = t.app.coupon_stock(coupon).await.unwrap();
    assert_eq!(stock.failed, 0, "a reservation was refused after the fact");
    let report = t.app.reconcile(coupon).await.unwrap();
    assert_eq!((report.repaired, report.rolled_back), (0, 0));
    db.drop_schema().await;
}

/// An entry the queue cannot read (not written by `publish`: a field missing or not a number)
/// is moved to the dead-letter stream as it is and acked; the entries delivered with it still
/// reach the consumer, and later receives do not trip over it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_entry_is_quarantined_not_blocking_its_batch() {
    let ns = namespace();
    let queue = queue_at(&url(), &ns, "a", Duration::from_millis(200)).await;
    let request = |u: i64| IssuanceRequest {
        coupon_id: CouponId::new(7).unwrap(),
        user_id: user(u),
        reserved_at: Timestamp::from_millis(1_000),
    };
    queue.publish(request(1)).await.unwrap();
    let client = redis::Client::open(url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: String = redis::cmd("XADD")
        .arg(queue.stream_key())
        .arg("*")
        .arg("c")
        .arg("seven")
        .arg("u")
        .arg(2)
        .query_async(&mut conn)
        .await
        .unwrap();
    queue.publish(request(3)).await.unwrap();

    let batch = queue.receive(10, Duration::from_secs(1)).await.unwrap();
    let users: Vec<UserId> = batch.iter().map(|d| d.request.user_id).collect();
    assert_eq!(users, vec![user(1), user(3)]);
    let depth = queue.depth().await.unwrap();
    assert_eq!((depth.ready, depth.in_flight, depth.dead), (0, 2, 1));
    let dead: Vec<Vec<(String, String)>> = redis::cmd("XRANGE")
        .arg(format!("{{{ns}:issuance}}:dead"))
        .arg("-")
        .arg("+")
        .query_async::<Vec<(String, Vec<(String, String)>)>>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, f)| f)
        .collect();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].contains(&("c".to_owned(), "seven".to_owned())));
    assert!(dead[0]
        .iter()
        .any(|(k, v)| k == "reason" && v.starts_with("malformed")));
    assert!(queue.dead_letters(10).await.unwrap().is_empty());

    // After the visibility time the two unacked entries come back; nothing else does.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = queue.receive(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(again.len(), 2);
    for d in &again {
        queue.ack(d).await.unwrap();
    }
    assert!(queue.depth().await.unwrap().is_drained());
}

/// The gate calls its scripts by SHA. A server that lost its script cache (restarted, or
/// `SCRIPT FLUSH`) answers `NOSCRIPT`; the gate loads the script again and the call succeeds,
/// for every script it runs. On a node of its own, so no other test sees the flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_reloads_its_scripts_after_the_server_forgets_them() {
    let (nodes, gate, mut admin) = gate_on_own_node().await;
    let flush = || {
        let mut admin = admin.clone();
        async move {
            let ok: String = redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async(&mut admin)
                .await
                .unwrap();
            assert_eq!(ok, "OK");
        }
    };
    let (coupon, now) = (CouponId::new(7).unwrap(), Timestamp::from_millis(1_000));
    flush().await;
    gate.init(coupon, open_gate(2)).await.unwrap();
    flush().await;
    assert_eq!(
        gate.reserve(coupon, user(1), now).await.unwrap(),
        GateOutcome::Reserved
    );
    flush().await;
    assert_eq!(
        gate.reserve(coupon, user(1), now).await.unwrap(),
        GateOutcome::AlreadyIssued
    );
    flush().await;
    assert!(gate.rollback(coupon, user(1)).await.unwrap());
    flush().await;
    assert!(gate.restore(coupon, user(1)).await.unwrap());
    flush().await;
    let stats = gate.stats(coupon).await.unwrap().unwrap();
    assert_eq!((stats.quantity, stats.remaining, stats.reserved), (2, 1, 1));
    flush().await;
    assert_eq!(
        gate.reserve(coupon, user(2), now).await.unwrap(),
        GateOutcome::Reserved
    );
    let scripts: Vec<bool> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(gate.reserve_sha())
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(scripts, vec![true], "the reserve script is loaded again");
    drop(nodes);
}

/// A gate on a Redis node of its own, with an admin connection to that node.
async fn gate_on_own_node() -> (
    Nodes,
    Arc<RedisCouponGate>,
    redis::aio::MultiplexedConnection,
) {
    let nodes = Nodes::start(1).await;
    let node = nodes.urls[0].clone();
    let gate = Arc::new(gate_at(&node, &namespace()).await);
    let admin = redis::Client::open(node.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    (nodes, gate, admin)
}

/// A gate of `quantity` without a validity window.
fn open_gate(quantity: u32) -> GateConfig {
    GateConfig {
        quantity,
        valid_from: None,
        valid_until: None,
    }
}

/// 300 reserves at once on a coupon of 100 travel in shared batches, yet each is its own script
/// call with its own answer: exactly 100 reserved, to the users told so. Then the server
/// forgets its scripts and 200 more arrive at once: the batch that meets `NOSCRIPT` loads the
/// script and sends those reserves again, and every one gets its true answer. On a node of its
/// own, so no other test sees the flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_reserves_each_get_their_own_answer() {
    let (nodes, gate, mut admin) = gate_on_own_node().await;
    let (coupon, now) = (CouponId::new(11).unwrap(), Timestamp::from_millis(1_000));
    gate.init(coupon, open_gate(100)).await.unwrap();
    let race = |users: std::ops::RangeInclusive<i64>| {
        let tasks: Vec<_> = users
            .map(|u| {
                let gate = gate.clone();
                tokio::spawn(async move { (u, gate.reserve(coupon, user(u), now).await.unwrap()) })
            })
            .collect();
        async move {
            let mut answers = Vec::new();
            for t in tasks {
                answers.push(t.await.unwrap());
            }
            answers
        }
    };

    let answers = race(1..=300).await;
    let winners: BTreeSet<UserId> = answers
        .iter()
        .filter(|(_, o)| *o == GateOutcome::Reserved)
        .map(|(u, _)| user(*u))
        .collect();
    assert_eq!(winners.len(), 100);
    assert!(answers
        .iter()
        .all(|(_, o)| matches!(o, GateOutcome::Reserved | GateOutcome::SoldOut)));
    let holders: BTreeSet<UserId> = gate.holders(coupon).await.unwrap().into_iter().collect();
    assert_eq!(holders, winners);

    let _: String = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(gate
        .rollback(coupon, *winners.iter().next().unwrap())
        .await
        .unwrap());
    let answers = race(201..=400).await;
    let count = |o: GateOutcome| answers.iter().filter(|(_, a)| *a == o).count();
    // Users 201..=300 raced before: those who won hold it, except the one rolled back, who is
    // a newcomer again; one place is free.
    assert_eq!(count(GateOutcome::Reserved), 1, "{answers:?}");
    assert_eq!(
        count(GateOutcome::AlreadyIssued),
        winners.iter().filter(|u| u.get() >= 201).count()
            - usize::from(winners.iter().next().unwrap().get() >= 201),
        "{answers:?}"
    );
    let s = gate.stats(coupon).await.unwrap().unwrap();
    assert_eq!((s.quantity, s.remaining, s.reserved), (100, 0, 100));
    drop(nodes);
}

/// A reserve whose caller gave up (its request was cancelled) keeps no place, wherever it was:
/// waiting for its batch (left out), already on its way (the place Redis gave it is given
/// back), or answered `NOSCRIPT` after the server lost its scripts (not sent again). The server
/// is paused so that a batch is still on its way when its caller gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserve_given_up_keeps_no_place() {
    let (nodes, gate, mut admin) = gate_on_own_node().await;
    let (coupon, now) = (CouponId::new(12).unwrap(), Timestamp::from_millis(1_000));
    gate.init(coupon, open_gate(10)).await.unwrap();
    let paused = admin.clone();
    let pause = |ms: u64| {
        let mut admin = paused.clone();
        async move {
            let _: String = redis::cmd("CLIENT")
                .arg("PAUSE")
                .arg(ms)
                .arg("WRITE")
                .query_async(&mut admin)
                .await
                .unwrap();
        }
    };
    let give_up = |u: i64| {
        let gate = gate.clone();
        async move {
            let r = tokio::time::timeout(
                Duration::from_millis(100),
                gate.reserve(coupon, user(u), now),
            )
            .await;
            assert!(r.is_err(), "the server was paused: {r:?}");
        }
    };
    let held = |gate: Arc<RedisCouponGate>| async move {
        gate.holders(coupon)
            .await
            .unwrap()
            .into_iter()
            .collect::<BTreeSet<UserId>>()
    };

    // Waiting: user 1's batch is on its way when user 2 gives up behind it.
    pause(500).await;
    let first = {
        let gate = gate.clone();
        tokio::spawn(async move { gate.reserve(coupon, user(1), now).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    give_up(2).await;
    assert_eq!(first.await.unwrap(), GateOutcome::Reserved);
    assert_eq!(held(gate.clone()).await, BTreeSet::from([user(1)]));

    // On its way: user 3's batch leaves at once and is answered after its caller left.
    pause(400).await;
    give_up(3).await;
    // The next reserve goes through the same task, after the give-back.
    assert_eq!(
        gate.reserve(coupon, user(4), now).await.unwrap(),
        GateOutcome::Reserved
    );
    assert_eq!(held(gate.clone()).await, BTreeSet::from([user(1), user(4)]));

    // NOSCRIPT: the server forgot the script; user 5's batch meets it after its caller left.
    let _: String = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut admin)
        .await
        .unwrap();
    pause(400).await;
    give_up(5).await;
    assert_eq!(
        gate.reserve(coupon, user(6), now).await.unwrap(),
        GateOutcome::Reserved
    );
    assert_eq!(
        held(gate.clone()).await,
        BTreeSet::from([user(1), user(4), user(6)])
    );
    let s = gate.stats(coupon).await.unwrap().unwrap();
    assert_eq!((s.quantity, s.remaining, s.reserved), (10, 7, 3));
    drop(nodes);
}

async fn consumer_names(queue: &RedisIssuanceQueue) -> BTreeSet<String> {
    let mut conn = redis::Client::open(url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let consumers: Vec<Vec<redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(queue.stream_key())
        .arg(stockade_redis::ISSUANCE_GROUP)
        .query_async(&mut conn)
        .await
        .unwrap();
    consumers
        .into_iter()
        .map(|fields| redis::from_redis_value::<String>(fields[1].clone()).unwrap())
        .collect()
}

/// Each life of an instance reads under a consumer name of its own. The group forgets a
/// consumer once it holds nothing and has not read for ten visibility times; one that still
/// holds entries stays until they are taken over and settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_that_are_gone_are_forgotten() {
    let (ns, visibility) = (namespace(), Duration::from_millis(100));
    let idle_one = queue_at(&url(), &ns, "gone-idle", visibility).await;
    let holding = queue_at(&url(), &ns, "gone-holding", visibility).await;
    let live = queue_at(&url(), &ns, "live", visibility).await;
    for u in 1..=2 {
        holding
            .publish(IssuanceRequest {
                coupon_id: CouponId::new(7).unwrap(),
                user_id: user(u),
                reserved_at: Timestamp::from_millis(1_000),
            })
            .await
            .unwrap();
    }
    assert_eq!(holding.receive(1, Duration::ZERO).await.unwrap().len(), 1);
    let settled = idle_one.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(settled.len(), 1);
    idle_one.ack(&settled[0]).await.unwrap();
    assert_eq!(
        consumer_names(&live).await,
        BTreeSet::from(["gone-holding".to_owned(), "gone-idle".to_owned()])
    );

    tokio::time::sleep(visibility * 12).await;
    let taken = live.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(taken.len(), 1, "the holder's entry is taken over");
    assert_eq!(
        consumer_names(&live).await,
        BTreeSet::from(["gone-holding".to_owned(), "live".to_owned()]),
        "the idle consumer is forgotten, the one that held an entry is not (yet)"
    );
    live.ack(&taken[0]).await.unwrap();

    tokio::time::sleep(visibility * 12).await;
    assert!(live.receive(10, Duration::ZERO).await.unwrap().is_empty());
    assert_eq!(
        consumer_names(&live).await,
        BTreeSet::from(["live".to_owned()])
    );
}
