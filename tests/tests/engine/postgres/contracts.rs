//! Every port contract suite that has a Postgres adapter, run against it (real time: the
//! server keeps the clock). Each test works in a schema of its own.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use stockade_application::ports::clock::IdGenerator;
use stockade_application::ports::idempotency::IdempotencyStore;
use stockade_application::ports::lock::LockManager;
use stockade_application::ports::store::Store;
use stockade_memory::ProcessIds;
use stockade_tests::contracts::Time;
use stockade_tests::pg::TestDb;

/// Postgres keeps time on the server: the suites run in real time.
const CONTRACT_TIME: Time = Time::Real;

/// The lock and store of one schema, so fencing checks see the same database.
async fn db() -> TestDb {
    TestDb::new().await
}

mod lock {
    use super::*;
    stockade_tests::lock_contract!(
        async {
            let db = db().await;
            Arc::new(db.locks().await) as Arc<dyn LockManager>
        },
        async {
            let db = db().await;
            Arc::new(db.store()) as Arc<dyn Store>
        }
    );
}

mod idempotency {
    use super::*;
    stockade_tests::idempotency_contract!(
        async {
            let db = db().await;
            Arc::new(db.idempotency(Arc::new(ProcessIds::default()) as Arc<dyn IdGenerator>))
                as Arc<dyn IdempotencyStore>
        },
        purge_counts
    );
}

/// The same contract on a pool of the store's own, whose sessions it keeps between requests;
/// the pool is small, so the concurrent claims queue for its sessions.
mod idempotency_own_pool {
    use super::*;
    stockade_tests::idempotency_contract!(
        async {
            let db = db().await;
            Arc::new(stockade_postgres::PgIdempotencyStore::on_own_pool(
                db.pool(4).await,
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
        let db = db().await;
        Arc::new(stockade_postgres::PgAccounts::new(db.pool.clone())) as Arc<dyn AccountStore>
    });
}

mod store {
    use super::*;
    stockade_tests::store_contract!(async {
        let db = db().await;
        Arc::new(db.store()) as Arc<dyn Store>
    });
}

mod changes {
    use super::*;
    use stockade_application::ports::changes::ChangeFeed;
    use stockade_postgres::PgChangeFeed;

    /// Two instances' feeds on one database.
    #[test]
    fn changes_reach_every_instance() {
        stockade_tests::contracts::run(CONTRACT_TIME, async {
            let db = db().await;
            let a = Arc::new(PgChangeFeed::start(db.pool.clone())) as Arc<dyn ChangeFeed>;
            let b = Arc::new(PgChangeFeed::start(db.pool.clone())) as Arc<dyn ChangeFeed>;
            stockade_tests::contracts::changes::a_change_reaches_every_instance(a, b).await;
        });
    }
}

/// The Postgres sections as the postgres profile wires them: units on the sessions holding the
/// advisory locks, outcomes recorded in the last unit's transaction.
mod section_on_lock_sessions {
    use super::*;
    use stockade_postgres::PgSections;
    use stockade_tests::contracts::section::Fixture;

    async fn fixture() -> Fixture {
        let db = db().await;
        Fixture {
            sections: Arc::new(
                PgSections::on_lock_sessions(db.store(), db.locks().await).recording_outcomes(),
            ),
            store: Arc::new(db.store()),
            idempotency: Arc::new(
                db.idempotency(Arc::new(ProcessIds::default()) as Arc<dyn IdGenerator>),
            ),
        }
    }

    stockade_tests::section_contract!(fixture());
}

/// The Postgres sections under another lock manager's grants (fenced units), without
/// recording outcomes.
mod section_fenced {
    use super::*;
    use stockade_postgres::PgSections;
    use stockade_tests::contracts::section::Fixture;

    async fn fixture() -> Fixture {
        let db = db().await;
        Fixture {
            sections: Arc::new(PgSections::fenced(
                db.store(),
                Arc::new(db.locks().await) as Arc<dyn LockManager>,
            )),
            store: Arc::new(db.store()),
            idempotency: Arc::new(
                db.idempotency(Arc::new(ProcessIds::default()) as Arc<dyn IdGenerator>),
            ),
        }
    }

    stockade_tests::section_contract!(fixture());
}
