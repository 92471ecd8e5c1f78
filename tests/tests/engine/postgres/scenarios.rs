//! The concurrency scenarios with Postgres as the store, the lock manager and the idempotency
//! store (each test in a schema of its own). Hot keys serialise hundreds of units of work here,
//! so the lock wait is generous: the scenarios check outcomes, not speed.

use std::time::Duration;
use stockade_application::Settings;
use stockade_domain::IssuanceMode;
use stockade_tests::harness::TestApp;
use stockade_tests::pg::TestDb;
use stockade_tests::scenarios;

fn settings() -> Settings {
    Settings {
        lock_wait: Duration::from_secs(120),
        ..Settings::default()
    }
}

async fn with_app<F, Fut>(run: F)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let db = TestDb::new().await;
    run(TestApp::on_postgres(&db, settings()).await).await;
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_coupon_500_users_for_100() {
    with_app(|t| async move { scenarios::coupon_race(&t, IssuanceMode::Flash, 500, 1, 100).await })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_coupon_500_users_for_100() {
    with_app(
        |t| async move { scenarios::coupon_race(&t, IssuanceMode::Locked, 500, 1, 100).await },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_rush_1200_buyers_for_1000_units() {
    with_app(|t| async move { scenarios::stock_rush_1200_buyers_for_1000_units(&t).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_charges() {
    with_app(|t| async move { scenarios::hundred_concurrent_charges(&t).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_payment_key_sent_100_times_at_once() {
    with_app(|t| async move { scenarios::one_payment_key_sent_100_times_at_once(&t).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_payments_with_different_keys_pay_once() {
    with_app(|t| async move { scenarios::twenty_payments_with_different_keys_pay_once(&t).await })
        .await;
}

/// A combined turn on Postgres (set-based writes, outcomes recorded in the turn's transaction)
/// answers each request as serial execution does: stock running out mid-turn, orders over the
/// per-order limit, coupons used twice or someone else's, keyed and unkeyed requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_combined_turn_answers_as_serial() {
    use stockade_tests::combining::{combined_turn_answers_as_serial, OrderSpec};
    let specs: Vec<OrderSpec> = (0..60)
        .map(|i: i64| OrderSpec {
            user: i % 6 + 1,
            quantity: i % 7 + 1,
            coupon_of: (i % 4 == 0).then_some((i * 5) % 6 + 1),
            keyed: i % 3 != 0,
        })
        .collect();
    let (a, b) = (TestDb::new().await, TestDb::new().await);
    let serial = TestApp::on_postgres(&a, settings()).await;
    let combined = TestApp::on_postgres(&b, settings()).await;
    combined_turn_answers_as_serial(serial, combined, specs, 90).await;
    a.drop_schema().await;
    b.drop_schema().await;
}

/// The sold-out fast path on Postgres, and a restock by another instance on the same database
/// reaching an instance that holds a sold-out mark (by the change feed, well before its
/// time-to-live).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sold_out_marks_follow_restocks_on_every_instance() {
    let db = TestDb::new().await;
    stockade_tests::combining::sold_out_is_refused_without_a_lock(
        TestApp::on_postgres(&db, settings()).await,
    )
    .await;
    let long_marks = Settings {
        sold_out_ttl: Duration::from_secs(60),
        ..settings()
    };
    let a = TestApp::on_postgres(&db, long_marks.clone()).await;
    let b = TestApp::on_postgres(&db, long_marks).await;
    stockade_tests::combining::a_restock_elsewhere_reaches_every_instance(a, b).await;
    db.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_near_the_cap_run_in_combined_turns() {
    with_app(|t| async move { scenarios::charges_near_the_cap_run_in_combined_turns(t).await })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replays_at_once_issue_each_user_once() {
    with_app(|t| async move {
        stockade_tests::replay::two_replays_at_once_issue_each_user_once(&t).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_of_a_sold_out_coupon_keep_failing() {
    with_app(|t| async move {
        stockade_tests::replay::replays_of_a_sold_out_coupon_keep_failing(&t).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_page_by_user_and_a_holder_counts_issued() {
    with_app(|t| async move {
        stockade_tests::replay::the_list_pages_by_user_and_a_holder_counts_issued(&t).await;
    })
    .await;
}
