//! Random mixed workloads on the memory backend keep every invariant.

use proptest::prelude::*;
use stockade_tests::harness::TestApp;
use stockade_tests::workload::{op, scenario, workload_settings};

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_mixed_workloads_keep_every_invariant(
        tasks in prop::collection::vec(prop::collection::vec(op(), 5..30), 4..12)
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(scenario(TestApp::with_settings(workload_settings()), tasks));
    }
}
