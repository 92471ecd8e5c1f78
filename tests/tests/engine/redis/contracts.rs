//! The lock, idempotency, gate and queue contract suites against the Redis adapters (the shared server, a
//! namespace per test, real time: Redis keeps the clock and the TTLs). The lock manager runs
//! with its watchdog off here, so that the lease-expiry check sees a lease end.

use std::sync::Arc;
use stockade_application::ports::clock::IdGenerator;
use stockade_application::ports::idempotency::IdempotencyStore;
use stockade_application::ports::lock::LockManager;
use stockade_application::ports::store::Store;
use stockade_memory::{MemoryStore, ProcessIds};
use stockade_redis::{RedisIdempotencyStore, RedisLockManager};
use stockade_tests::contracts::Time;
use stockade_tests::redis::{namespace, url};

const CONTRACT_TIME: Time = Time::Real;

mod lock {
    use super::*;
    stockade_tests::lock_contract!(
        async {
            Arc::new(
                RedisLockManager::connect(&[url()], namespace(), false)
                    .await
                    .expect("Redis answers at REDIS_URL"),
            ) as Arc<dyn LockManager>
        },
        async { Arc::new(MemoryStore::new()) as Arc<dyn Store> },
        fair
    );
}

mod idempotency {
    use super::*;
    stockade_tests::idempotency_contract!(async {
        Arc::new(
            RedisIdempotencyStore::connect(
                &url(),
                namespace(),
                Arc::new(ProcessIds::default()) as Arc<dyn IdGenerator>,
            )
            .await
            .expect("Redis answers at REDIS_URL"),
        ) as Arc<dyn IdempotencyStore>
    });
}

mod gate {
    use super::*;
    use stockade_application::ports::gate::CouponGate;
    use stockade_redis::RedisCouponGate;
    stockade_tests::gate_contract!(async {
        Arc::new(
            RedisCouponGate::connect(&url(), namespace())
                .await
                .expect("Redis answers at REDIS_URL"),
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
            RedisIssuanceQueue::connect(&url(), &namespace(), "contract", visibility)
                .await
                .expect("Redis answers at REDIS_URL"),
        )
    }

    stockade_tests::queue_contract!(
        queue(Duration::from_secs(30)),
        redelivery = queue(Duration::from_millis(300))
    );
}

/// The production profile's sections: Postgres units under Redlock grants, fenced, with the
/// outcomes recorded in the last unit's transaction.
mod section {
    use super::*;
    use stockade_postgres::PgSections;
    use stockade_tests::contracts::section::Fixture;
    use stockade_tests::pg::TestDb;

    async fn fixture() -> Fixture {
        let db = TestDb::new().await;
        let locks = RedisLockManager::connect(&[url()], namespace(), false)
            .await
            .expect("Redis answers at REDIS_URL");
        Fixture {
            sections: Arc::new(
                PgSections::fenced(db.store(), Arc::new(locks) as Arc<dyn LockManager>)
                    .recording_outcomes(),
            ),
            store: Arc::new(db.store()),
            idempotency: Arc::new(
                db.idempotency(Arc::new(ProcessIds::default()) as Arc<dyn IdGenerator>),
            ),
        }
    }

    stockade_tests::section_contract!(fixture());
}
