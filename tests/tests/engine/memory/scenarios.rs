//! The concurrency scenarios on the memory backend.

#![allow(clippy::unwrap_used)]

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

/// One received batch holding reservations of two coupons, one of which the store cannot take
/// whole (eight reservations for five coupons, as after a gate that over-reserved): the other
/// coupon's go in together, this one's one by one, in the order received: the first five are
/// persisted, the last three dead-lettered with a failure recorded, and everything is settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_store_refuses_whole_is_persisted_one_by_one() {
    use std::collections::BTreeSet;
    use std::time::Duration;
    use stockade_domain::Discount;
    use stockade_tests::harness::user;

    let t = TestApp::new();
    let tight = t
        .coupon(
            "CART",
            Discount::new("FIXED", 100, None).unwrap(),
            0,
            5,
            IssuanceMode::Flash,
        )
        .await;
    let roomy = t
        .coupon(
            "CART",
            Discount::new("FIXED", 100, None).unwrap(),
            0,
            10,
            IssuanceMode::Flash,
        )
        .await;
    let queue = t.app.ports().queue.clone();
    for u in 1..=8 {
        for (coupon, uid) in [(tight, u), (roomy, 100 + u)] {
            if coupon == roomy && u > 3 {
                continue;
            }
            publish(&*queue, coupon, uid).await;
        }
    }
    let handled = t
        .app
        .consume_issuances(256, Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!(handled, 11);

    let mut uow = t.app.ports().store.begin().await.unwrap();
    let holders = |v: Vec<_>| v.into_iter().collect::<BTreeSet<_>>();
    assert_eq!(
        holders(uow.coupons().holders(tight).await.unwrap()),
        (1..=5).map(user).collect()
    );
    assert_eq!(
        holders(uow.coupons().failures(tight).await.unwrap()),
        (6..=8).map(user).collect()
    );
    assert_eq!(
        holders(uow.coupons().holders(roomy).await.unwrap()),
        (101..=103).map(user).collect()
    );
    assert!(uow.coupons().failures(roomy).await.unwrap().is_empty());
    drop(uow);
    let depth = queue.depth().await.unwrap();
    assert!(depth.is_drained(), "{depth:?}");
    assert_eq!(depth.dead, 3);
}

/// A store that counts the units of work begun on it.
#[derive(Debug)]
struct CountingStore {
    inner: std::sync::Arc<dyn stockade_application::ports::store::Store>,
    begun: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl stockade_application::ports::store::Store for CountingStore {
    async fn begin(
        &self,
    ) -> Result<
        Box<dyn stockade_application::ports::store::UnitOfWork>,
        stockade_application::ports::store::StoreError,
    > {
        self.begun.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.begin().await
    }
}

/// Fifty reservations of one coupon received together are persisted in one unit of work (one
/// more at most to read the coupon's policy), not one each, and all are settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_batch_of_one_coupon_is_persisted_in_one_unit() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    use stockade_application::ports::clock::Clock;
    use stockade_application::{Settings, Stockade};
    use stockade_domain::{Discount, NewCoupon};
    use stockade_memory::{ManualClock, MemoryBackend};
    use stockade_tests::harness::EPOCH_MS;

    let clock = ManualClock::at(EPOCH_MS);
    let backend = MemoryBackend::new(Arc::new(clock) as Arc<dyn Clock>);
    let mut ports = backend.ports();
    let store = Arc::new(CountingStore {
        inner: ports.store.clone(),
        begun: AtomicUsize::new(0),
    });
    ports.store = store.clone();
    let app = Stockade::new(ports, Settings::default());
    let coupon = app
        .create_coupon(
            NewCoupon::new(
                "coupon",
                "CART",
                Discount::new("FIXED", 100, None).unwrap(),
                0,
                100,
                "FLASH",
                None,
                None,
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let coupon = stockade_domain::CouponId::new(coupon.id).unwrap();
    for u in 1..=50 {
        publish(&*app.ports().queue, coupon, u).await;
    }
    let before = store.begun.load(Ordering::SeqCst);
    let handled = app
        .consume_issuances(256, Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!(handled, 50);
    let units = store.begun.load(Ordering::SeqCst) - before;
    assert!(units <= 2, "50 reservations took {units} units of work");
    let mut uow = app.ports().store.begin().await.unwrap();
    assert_eq!(uow.coupons().issued_count(coupon).await.unwrap(), 50);
    drop(uow);
    assert!(app.ports().queue.depth().await.unwrap().is_drained());
}

/// Publishes user `uid`'s reservation of `coupon`, made at the epoch plus `uid` ms.
async fn publish(
    queue: &dyn stockade_application::ports::queue::IssuanceQueue,
    coupon: stockade_domain::CouponId,
    uid: i64,
) {
    use stockade_application::ports::queue::IssuanceRequest;
    use stockade_tests::harness::{user, EPOCH_MS};
    queue
        .publish(IssuanceRequest {
            coupon_id: coupon,
            user_id: user(uid),
            reserved_at: stockade_domain::Timestamp::from_millis(EPOCH_MS + uid),
        })
        .await
        .unwrap();
}

/// The sold-out fast path on the memory backend: refusals without a lock, restocks seen at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sold_out_is_refused_without_a_lock() {
    stockade_tests::combining::sold_out_is_refused_without_a_lock(TestApp::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_near_the_cap_run_in_combined_turns() {
    scenarios::charges_near_the_cap_run_in_combined_turns(TestApp::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replays_at_once_issue_each_user_once() {
    stockade_tests::replay::two_replays_at_once_issue_each_user_once(&TestApp::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_of_a_sold_out_coupon_keep_failing() {
    stockade_tests::replay::replays_of_a_sold_out_coupon_keep_failing(&TestApp::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_page_by_user_and_a_holder_counts_issued() {
    stockade_tests::replay::the_list_pages_by_user_and_a_holder_counts_issued(&TestApp::new())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_of_an_unknown_coupon_are_not_found() {
    stockade_tests::replay::unknown_coupons_are_not_found(&TestApp::new()).await;
}

/// The whole path: issuances the store refuses are dead-lettered by the consumer and listed
/// with the refusal's API code as the reason (never a message); a replay with nothing left
/// records them again with one more attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_lettered_issuances_are_listed_then_replayed() {
    use stockade_domain::Discount;
    use stockade_tests::harness::user;
    let t = TestApp::new();
    let coupon = t
        .coupon(
            "CART",
            Discount::new("FIXED", 100, None).unwrap(),
            0,
            3,
            IssuanceMode::Flash,
        )
        .await;
    for u in 1..=3 {
        t.app.issue_coupon(coupon, user(u)).await.unwrap();
    }
    t.drain().await;
    // Deliveries the gate never counted (as a stray or duplicated hand-off would be).
    let queue = t.app.ports().queue.clone();
    for u in 4..=6 {
        publish(&*queue, coupon, u).await;
    }
    t.drain().await;

    let listed = t.app.issuance_failures(coupon, None, 100).await.unwrap();
    let seen: Vec<(i64, &str, u32)> = listed
        .iter()
        .map(|f| (f.user_id, f.reason.as_str(), f.attempts))
        .collect();
    assert_eq!(
        seen,
        vec![
            (4, "COUPON_SOLD_OUT", 1),
            (5, "COUPON_SOLD_OUT", 1),
            (6, "COUPON_SOLD_OUT", 1)
        ]
    );
    let report = t.app.replay_failures(coupon).await.unwrap();
    assert_eq!(
        (report.replayed, report.issued, report.still_failing),
        (3, 0, 3)
    );
    let listed = t.app.issuance_failures(coupon, None, 100).await.unwrap();
    assert!(listed.iter().all(|f| f.attempts == 2));
    t.assert_invariants(&[coupon]).await;
}

/// A replay whose store write fails for any reason but a refusal keeps the gate place it took
/// (the write may have happened: a place given back for a stored coupon would let the gate
/// hand out one more than the store can hold); reconciliation then persists the user, and gate
/// and store agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_whose_store_write_fails_keeps_the_place_for_reconciliation() {
    use std::sync::atomic::Ordering;
    use stockade_tests::harness::user;
    let t = TestApp::new();
    let coupon = stockade_tests::replay::flash_coupon(&t, 5).await;
    stockade_tests::replay::record_failures(&t, coupon, &[user(9)], "BACKEND_UNAVAILABLE").await;
    t.backend
        .store
        .faults()
        .fail_commit
        .store(true, Ordering::SeqCst);
    let failed = t.app.replay_failures(coupon).await;
    t.backend.store.faults().clear();
    assert!(failed.is_err(), "{failed:?}");
    let gate = t.app.ports().gate.holders(coupon).await.unwrap();
    assert_eq!(gate, vec![user(9)], "the place taken is kept");
    let report = t.app.reconcile(coupon).await.unwrap();
    assert_eq!(report.repaired, 1, "{report:?}");
    let mine = t.app.my_coupons(user(9)).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert!(t
        .app
        .issuance_failures(coupon, None, 10)
        .await
        .unwrap()
        .is_empty());
    t.assert_invariants(&[coupon]).await;
}
