//! Replaying recorded issuance failures on the production pipeline: Postgres store and locks,
//! the Redis gate and queue (each test in a schema and a key namespace of its own).

use std::sync::Arc;
use std::time::Duration;
use stockade_application::Settings;
use stockade_redis::{RedisCouponGate, RedisIssuanceQueue};
use stockade_tests::harness::TestApp;
use stockade_tests::pg::TestDb;
use stockade_tests::redis::{namespace, url};

async fn with_pipeline<F, Fut>(run: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let db = TestDb::new().await;
    let ns = namespace();
    let gate = RedisCouponGate::connect(&url(), ns.clone())
        .await
        .expect("Redis answers");
    let queue = RedisIssuanceQueue::connect(&url(), &ns, "a".to_owned(), Duration::from_secs(30))
        .await
        .expect("Redis answers");
    let settings = Settings {
        lock_wait: Duration::from_secs(60),
        ..Settings::default()
    };
    let t = TestApp::on_pipeline(
        &db,
        Arc::new(db.store()),
        Arc::new(gate),
        Arc::new(queue),
        settings,
    )
    .await;
    run(t).await;
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replays_at_once_issue_each_user_once() {
    with_pipeline(|t| async move {
        stockade_tests::replay::two_replays_at_once_issue_each_user_once(&t).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_of_a_sold_out_coupon_keep_failing() {
    with_pipeline(|t| async move {
        stockade_tests::replay::replays_of_a_sold_out_coupon_keep_failing(&t).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_page_by_user_and_a_holder_counts_issued() {
    with_pipeline(|t| async move {
        stockade_tests::replay::the_list_pages_by_user_and_a_holder_counts_issued(&t).await;
    })
    .await;
}
