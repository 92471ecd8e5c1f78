//! Every port contract suite, run against the memory adapters, in paused tokio time.

use std::sync::Arc;
use stockade_application::ports::clock::{Clock, IdGenerator};
use stockade_application::ports::gate::CouponGate;
use stockade_application::ports::idempotency::IdempotencyStore;
use stockade_application::ports::lock::LockManager;
use stockade_application::ports::queue::IssuanceQueue;
use stockade_application::ports::store::Store;
use stockade_memory::{
    MemoryCouponGate, MemoryIdempotencyStore, MemoryIssuanceQueue, MemoryLockManager, MemoryStore,
    ProcessIds, TokioClock,
};
use stockade_tests::contracts::Time;

/// The memory adapters keep time with tokio's timer, so the suites run in virtual time.
const CONTRACT_TIME: Time = Time::Paused;

mod lock {
    use super::*;
    stockade_tests::lock_contract!(
        async { Arc::new(MemoryLockManager::new()) as Arc<dyn LockManager> },
        async { Arc::new(MemoryStore::new()) as Arc<dyn Store> },
        fair
    );
}

mod idempotency {
    use super::*;
    stockade_tests::idempotency_contract!(
        async {
            Arc::new(MemoryIdempotencyStore::new(
                Arc::new(TokioClock::new()) as Arc<dyn Clock>,
                Arc::new(ProcessIds::default()) as Arc<dyn IdGenerator>,
            )) as Arc<dyn IdempotencyStore>
        },
        purge_counts
    );
}

mod accounts {
    use super::*;
    use stockade_application::ports::accounts::AccountStore;
    stockade_tests::accounts_contract!(async {
        Arc::new(stockade_memory::MemoryAccounts::new()) as Arc<dyn AccountStore>
    });
}

mod gate {
    use super::*;
    stockade_tests::gate_contract!(async {
        Arc::new(MemoryCouponGate::new()) as Arc<dyn CouponGate>
    });
}

mod queue {
    use super::*;
    stockade_tests::queue_contract!(
        async { Arc::new(MemoryIssuanceQueue::default()) as Arc<dyn IssuanceQueue> },
        redelivery = async {
            Arc::new(MemoryIssuanceQueue::new(
                1_000_000,
                std::time::Duration::from_millis(300),
            )) as Arc<dyn IssuanceQueue>
        }
    );
}

mod store {
    use super::*;
    stockade_tests::store_contract!(async { Arc::new(MemoryStore::new()) as Arc<dyn Store> });
}

mod changes {
    use super::*;
    use stockade_application::ports::changes::ChangeFeed;
    use stockade_memory::MemoryChangeFeed;

    /// One process: the same feed is every instance.
    #[test]
    fn changes_reach_every_instance() {
        stockade_tests::contracts::run(CONTRACT_TIME, async {
            let feed = Arc::new(MemoryChangeFeed::default()) as Arc<dyn ChangeFeed>;
            stockade_tests::contracts::changes::a_change_reaches_every_instance(feed.clone(), feed)
                .await;
        });
    }

    #[test]
    fn changes_encode_and_decode() {
        stockade_tests::contracts::changes::changes_encode_and_decode();
    }
}

/// The application's own sections over the memory lock manager and store.
mod section {
    use super::*;
    use stockade_application::FencedSections;
    use stockade_tests::contracts::section::Fixture;

    async fn fixture() -> Fixture {
        let store = Arc::new(MemoryStore::new()) as Arc<dyn Store>;
        let locks = Arc::new(MemoryLockManager::new()) as Arc<dyn LockManager>;
        Fixture {
            sections: Arc::new(FencedSections::new(locks, store.clone())),
            store,
            idempotency: Arc::new(MemoryIdempotencyStore::new(
                Arc::new(TokioClock::new()) as Arc<dyn Clock>,
                Arc::new(ProcessIds::default()) as Arc<dyn IdGenerator>,
            )),
        }
    }

    stockade_tests::section_contract!(fixture());
}
