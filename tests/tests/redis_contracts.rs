//! The lock and idempotency contract suites against the Redis adapters (the shared server, a
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
        async { Arc::new(MemoryStore::new()) as Arc<dyn Store> }
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
