//! The concurrency scenarios on the memory backend.

use stockade_domain::IssuanceMode;
use stockade_tests::harness::TestApp;
use stockade_tests::scenarios;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_coupon_500_users_for_100() {
    scenarios::coupon_race(&TestApp::new(), IssuanceMode::Flash, 500, 1, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_coupon_500_users_for_100() {
    scenarios::coupon_race(&TestApp::new(), IssuanceMode::Locked, 500, 1, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_coupon_10000_users_times_3_for_1000() {
    scenarios::coupon_race(&TestApp::new(), IssuanceMode::Flash, 10_000, 3, 1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_rush_1200_buyers_for_1000_units() {
    scenarios::stock_rush_1200_buyers_for_1000_units(&TestApp::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_charges() {
    scenarios::hundred_concurrent_charges(&TestApp::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_payment_key_sent_100_times_at_once() {
    scenarios::one_payment_key_sent_100_times_at_once(&TestApp::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_payments_with_different_keys_pay_once() {
    scenarios::twenty_payments_with_different_keys_pay_once(&TestApp::new()).await;
}
