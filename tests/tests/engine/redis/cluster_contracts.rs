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
