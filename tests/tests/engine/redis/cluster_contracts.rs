//! The idempotency, gate and queue contract suites and the popularity checks against the Redis
//! adapters in cluster mode: one real Redis Cluster (3 masters + 3 replicas) for the test run,
//! started by the first test that needs it ([`shared`]), a key namespace per test. The
//! namespaces put the tests' keys on different masters, so the suites cross slots and nodes.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use stockade_application::ports::clock::IdGenerator;
use stockade_application::ports::idempotency::IdempotencyStore;
use stockade_memory::ProcessIds;
use stockade_redis::{RedisIdempotencyStore, RedisTarget};
use stockade_tests::contracts::Time;
use stockade_tests::redis::namespace;
use stockade_tests::redis_cluster::shared;

const CONTRACT_TIME: Time = Time::Real;

/// The shared cluster's nodes as seeds.
async fn cluster() -> RedisTarget {
    RedisTarget::Cluster(shared().await.urls())
}

mod idempotency {
    use super::*;
    stockade_tests::idempotency_contract!(async {
        Arc::new(
            RedisIdempotencyStore::connect(
                cluster().await,
                namespace(),
                Arc::new(ProcessIds::default()) as Arc<dyn IdGenerator>,
            )
            .await
            .expect("the cluster answers"),
        ) as Arc<dyn IdempotencyStore>
    });
}

mod gate {
    use super::*;
    use stockade_application::ports::gate::CouponGate;
    use stockade_redis::RedisCouponGate;
    stockade_tests::gate_contract!(async {
        Arc::new(
            RedisCouponGate::connect(cluster().await, namespace())
                .await
                .expect("the cluster answers"),
        ) as Arc<dyn CouponGate>
    });
}

mod queue {
    use super::*;
    use std::time::Duration;
    use stockade_application::ports::queue::IssuanceQueue;
    use stockade_redis::RedisIssuanceQueue;

    async fn queue(visibility: Duration) -> Arc<dyn IssuanceQueue> {
        Arc::new(
            RedisIssuanceQueue::connect(cluster().await, &namespace(), "contract", visibility)
                .await
                .expect("the cluster answers"),
        )
    }

    stockade_tests::queue_contract!(
        queue(Duration::from_secs(30)),
        redelivery = queue(Duration::from_millis(300))
    );
}

mod popularity {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sales_are_summed_over_the_days_of_the_window() {
        super::super::popularity::sales_are_summed(cluster().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_ranking_cache_keeps_an_answer_for_its_ttl_only() {
        super::super::popularity::ranking_cache_keeps_its_ttl(cluster().await).await;
    }
}

/// Beyond the contract, on a cluster of its own: reserves for coupons on every master go out in
/// the same batches, and after every node lost its scripts (`SCRIPT FLUSH`, as a restarted node
/// or a promoted replica that never saw the load) the `NOSCRIPT` answers are healed per node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_reserves_span_the_masters_and_survive_lost_scripts() {
    use std::collections::BTreeSet;
    use stockade_application::ports::gate::{CouponGate, GateConfig, GateOutcome};
    use stockade_domain::{CouponId, Timestamp, UserId};
    use stockade_redis::RedisCouponGate;
    use stockade_tests::redis_cluster::Cluster;

    let cluster = Cluster::start().await;
    let gate = Arc::new(
        RedisCouponGate::connect(RedisTarget::Cluster(cluster.urls()), namespace())
            .await
            .unwrap(),
    );
    let coupons: Vec<CouponId> = (1..=48).map(|i| CouponId::new(i).unwrap()).collect();
    let mut masters = BTreeSet::new();
    for c in &coupons {
        let [meta, holders, tokens] = gate.keys(*c);
        let slot = cluster.slot_of(&meta).await;
        assert_eq!(
            slot,
            cluster.slot_of(&holders).await,
            "a coupon's keys share a slot"
        );
        assert_eq!(slot, cluster.slot_of(&tokens).await);
        masters.insert(cluster.serving(slot).await.0);
        let config = GateConfig {
            quantity: 5,
            valid_from: None,
            valid_until: None,
        };
        gate.init(*c, config).await.unwrap();
    }
    assert_eq!(masters.len(), 3, "the coupons spread over every master");

    for url in cluster.urls() {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }

    let now = Timestamp::from_millis(1_767_225_600_000);
    let tasks: Vec<_> = coupons
        .iter()
        .flat_map(|c| (1..=10).map(move |u| (*c, UserId::new(u).unwrap())))
        .map(|(c, u)| {
            let gate = gate.clone();
            tokio::spawn(async move { (c, gate.reserve(c, u, now).await.unwrap()) })
        })
        .collect();
    let mut reserved = std::collections::HashMap::<CouponId, u32>::new();
    for t in tasks {
        let (c, outcome) = t.await.unwrap();
        match outcome {
            GateOutcome::Reserved => *reserved.entry(c).or_default() += 1,
            GateOutcome::SoldOut => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    for c in &coupons {
        assert_eq!(reserved.get(c), Some(&5), "coupon {c}");
        let s = gate.stats(*c).await.unwrap().unwrap();
        assert_eq!((s.quantity, s.remaining, s.reserved), (5, 0, 5));
        assert_eq!(gate.holders(*c).await.unwrap().len(), 5);
    }
}

/// A reserve the cluster client sends again (after a connection error it cannot tell whether
/// the first run happened) answers "reserved" again and takes no second unit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_a_resent_reserve_answers_reserved_and_takes_one_unit() {
    super::resend::resent_reserve(cluster().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_resends_racing_a_crowd_take_one_unit() {
    super::resend::resends_race_a_crowd(cluster().await).await;
}

/// The reserves of one coupon go to its master as one pipeline. When the coupon's slot has
/// moved to another master since the client last looked, that pipeline is answered `MOVED`
/// and must be sent again to the new master: a crowd on a coupon whose slot was just migrated,
/// leaving as one batch, gets exactly the quantity, and no errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_reserves_follow_a_slot_migrated_under_them() {
    use stockade_application::ports::gate::{CouponGate, GateConfig, GateOutcome};
    use stockade_domain::{CouponId, Timestamp, UserId};
    use stockade_redis::RedisCouponGate;
    use stockade_tests::redis_cluster::Cluster;

    async fn on(port: u16, args: &[&str]) -> redis::Value {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut conn).await.unwrap()
    }
    async fn id_of(port: u16) -> String {
        match on(port, &["CLUSTER", "MYID"]).await {
            redis::Value::BulkString(b) => String::from_utf8(b).unwrap(),
            redis::Value::SimpleString(s) => s,
            other => panic!("CLUSTER MYID answered {other:?}"),
        }
    }

    let cluster = Cluster::start().await;
    let gate = Arc::new(
        RedisCouponGate::connect(RedisTarget::Cluster(cluster.urls()), namespace())
            .await
            .unwrap(),
    );
    let coupon = CouponId::new(11).unwrap();
    let quantity = 100;
    let config = GateConfig {
        quantity,
        valid_from: None,
        valid_until: None,
    };
    gate.init(coupon, config).await.unwrap();
    let now = Timestamp::from_millis(1_767_225_600_000);
    // The client has routed to the coupon's master once.
    assert_eq!(
        gate.reserve(coupon, UserId::new(1).unwrap(), now)
            .await
            .unwrap(),
        GateOutcome::Reserved
    );

    // Move the coupon's slot, keys and all, to another master, behind the client's back.
    let [meta, holders, _tokens] = gate.keys(coupon);
    let slot = cluster.slot_of(&meta).await;
    let (from, _) = cluster.serving(slot).await;
    let to = cluster
        .masters()
        .await
        .into_iter()
        .find(|m| *m != from)
        .unwrap();
    let (from_id, to_id) = (id_of(from).await, id_of(to).await);
    let s = slot.to_string();
    on(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]).await;
    on(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]).await;
    let port = to.to_string();
    on(
        from,
        &[
            "MIGRATE",
            "127.0.0.1",
            &port,
            "",
            "0",
            "5000",
            "KEYS",
            &meta,
            &holders,
        ],
    )
    .await;
    let masters = cluster.masters().await;
    let rest = masters.iter().copied().filter(|m| *m != to && *m != from);
    for m in [to, from].into_iter().chain(rest) {
        on(m, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]).await;
    }
    assert_eq!(
        on(to, &["CLUSTER", "COUNTKEYSINSLOT", &s]).await,
        redis::Value::Int(2),
        "the coupon's keys are on the new master"
    );

    // Hold the gate's batching task on a trip to the third master (paused), so that the crowd
    // below queues up and leaves as one batch: one pipeline to the coupon's old master.
    let third = masters
        .iter()
        .copied()
        .find(|m| *m != to && *m != from)
        .unwrap();
    let mut other = CouponId::new(1_000).unwrap();
    for id in 1_000.. {
        other = CouponId::new(id).unwrap();
        let [k, _, _] = gate.keys(other);
        if cluster.serving(cluster.slot_of(&k).await).await.0 == third {
            break;
        }
    }
    on(third, &["CLIENT", "PAUSE", "700", "ALL"]).await;
    let held = {
        let gate = gate.clone();
        tokio::spawn(async move { gate.reserve(other, UserId::new(1).unwrap(), now).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let tasks: Vec<_> = (2..=300)
        .map(|u| {
            let gate = gate.clone();
            tokio::spawn(async move { gate.reserve(coupon, UserId::new(u).unwrap(), now).await })
        })
        .collect();
    let mut reserved = 1;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            GateOutcome::Reserved => reserved += 1,
            GateOutcome::SoldOut => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(reserved, quantity);
    assert_eq!(
        held.await.unwrap().unwrap(),
        GateOutcome::NotInitialised,
        "the held reserve was answered too"
    );
    let s = gate.stats(coupon).await.unwrap().unwrap();
    assert_eq!(
        (s.quantity, s.remaining, s.reserved),
        (quantity, 0, quantity)
    );
    assert_eq!(gate.holders(coupon).await.unwrap().len(), 100);
}
