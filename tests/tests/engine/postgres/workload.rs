//! Random mixed workloads with Postgres as the store, lock manager and idempotency store keep
//! every invariant (fewer cases than on memory: each needs a schema and real round trips).

use proptest::prelude::*;
use stockade_tests::harness::TestApp;
use stockade_tests::pg::TestDb;
use stockade_tests::workload::{op, scenario, workload_settings};

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn random_mixed_workloads_keep_every_invariant_on_postgres(
        tasks in prop::collection::vec(prop::collection::vec(op(), 5..25), 4..10)
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let db = TestDb::new().await;
            scenario(TestApp::on_postgres(&db, workload_settings()).await, tasks).await;
            db.drop_schema().await;
        });
    }
}
