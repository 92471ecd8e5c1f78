//! Random mixed workloads on the memory backend keep every invariant.

use proptest::prelude::*;
use stockade_tests::combining::{self, order_spec};
use stockade_tests::harness::TestApp;
use stockade_tests::workload::{op, scenario, workload_settings};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

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

    /// A combined turn of random orders (some over the per-order limit, some over the stock,
    /// some with a coupon that is used already or someone else's) answers each as serial
    /// execution does.
    #[test]
    fn combined_turns_answer_as_serial(
        specs in prop::collection::vec(order_spec(), 2..40),
        stock in 0..60i64,
    ) {
        runtime().block_on(combining::combined_turn_answers_as_serial(
            TestApp::new(),
            TestApp::new(),
            specs,
            stock,
        ));
    }

    /// A combined turn whose commit fails leaves nothing and keeps its keys retryable.
    #[test]
    fn a_failed_turn_leaves_nothing(specs in prop::collection::vec(order_spec(), 2..20)) {
        runtime().block_on(combining::failed_turn_leaves_nothing(
            TestApp::new(),
            TestApp::new(),
            specs,
        ));
    }
}
