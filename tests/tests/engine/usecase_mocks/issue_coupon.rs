//! Issuing a coupon: a LOCKED issue whose lock times out only reads the policy; a FLASH issue
//! whose queue hand-off fails rolls the gate reservation back, and a lost gate is rebuilt from
//! the store before it serves.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use super::support::*;
use std::sync::Arc;
use stockade_application::ports::gate::{CouponGate, GateOutcome, MockCouponGate};
use stockade_application::ports::lock::{LockError, MockLockManager};
use stockade_application::ports::queue::IssuanceQueue;
use stockade_application::ports::queue::MockIssuanceQueue;
use stockade_application::ports::store::{MockStore, Store};
use stockade_application::{Settings, Stockade};
use stockade_domain::{Discount, ErrorCode, IssuanceMode, Timestamp};
use stockade_tests::harness::{user, TestApp, EPOCH_MS};

#[tokio::test]
async fn lock_timeout_on_locked_issue_only_reads_the_policy() {
    let w = World::new().await;
    let coupon =
        w.t.coupon(
            "CART",
            Discount::new("FIXED", 500, None).unwrap(),
            0,
            5,
            IssuanceMode::Locked,
        )
        .await;
    let before = Snapshot::of(&w).await;
    // A fresh Stockade has no cached policy: it reads it through exactly one unit of work (a
    // memory one handed out by the mock), and must open none after the lock timed out.
    let policy_read = w.t.backend.store.begin().await.unwrap();
    let mut store = MockStore::new();
    store
        .expect_begin()
        .times(1)
        .return_once(move || Ok(policy_read));
    let mut ports = w.ports();
    ports.store = Arc::new(store);
    let mut locks = MockLockManager::new();
    locks
        .expect_acquire()
        .times(1)
        .withf(move |keys, _| keys.len() == 1 && keys[0].as_str() == format!("coupon:{coupon}"))
        .returning(|_, _| Err(LockError::Timeout));
    ports.locks = Arc::new(locks);
    let app = Stockade::new(ports, Settings::default());
    let r = app.issue_coupon(coupon, user(8)).await;
    assert_code(&r, ErrorCode::LockTimeout, "issue_coupon");
    drop(app);

    assert_eq!(Snapshot::of(&w).await, before);
    let stock = w.app().coupon_stock(coupon).await.unwrap();
    assert_eq!((stock.persisted, stock.remaining), (0, 5));
    assert!(w.app().my_coupons(user(8)).await.unwrap().is_empty());
}

#[tokio::test]
async fn flash_publish_failure_rolls_the_reservation_back() {
    let t = TestApp::new();
    let coupon = flash_coupon(&t, 3).await;
    let u = user(USER);

    let mut queue = MockIssuanceQueue::new();
    queue
        .expect_publish()
        .times(1)
        .withf(move |r| r.coupon_id == coupon && r.user_id == u)
        .returning(|_| Err(backend_down("queue")));
    let mut ports = t.backend.ports();
    ports.queue = Arc::new(queue);
    let app = Stockade::new(ports, Settings::default());
    let r = app.issue_coupon(coupon, u).await;
    assert_code(&r, ErrorCode::BackendUnavailable, "issue_coupon");
    drop(app);

    let stats = t.backend.gate.stats(coupon).await.unwrap().unwrap();
    assert_eq!((stats.quantity, stats.remaining, stats.reserved), (3, 3, 0));
    assert!(t.backend.gate.holders(coupon).await.unwrap().is_empty());
    let stock = t.app.coupon_stock(coupon).await.unwrap();
    assert_eq!((stock.remaining, stock.persisted), (3, 0));

    // The user may try again, and this time the coupon is persisted.
    let again = t.app.issue_coupon(coupon, u).await.unwrap();
    assert_eq!(again.status, "RESERVED");
    t.drain().await;
    let mine = t.app.my_coupons(u).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].status, "ISSUED");
    t.assert_invariants(&[coupon]).await;
}

#[tokio::test]
async fn flash_publish_failure_with_a_failing_rollback_still_answers_unavailable() {
    let t = TestApp::new();
    let coupon = flash_coupon(&t, 3).await;
    let u = user(USER);
    let mut gate = MockCouponGate::new();
    gate.expect_reserve()
        .times(1)
        .returning(|_, _, _| Ok(GateOutcome::Reserved));
    gate.expect_rollback()
        .times(1)
        .withf(move |c, who| *c == coupon && *who == u)
        .returning(|_, _| Err(backend_down("gate")));
    let mut queue = MockIssuanceQueue::new();
    queue
        .expect_publish()
        .times(1)
        .returning(|_| Err(backend_down("queue")));
    let mut ports = t.backend.ports();
    ports.gate = Arc::new(gate);
    ports.queue = Arc::new(queue);
    let app = Stockade::new(ports, Settings::default());
    let r = app.issue_coupon(coupon, u).await;
    assert_code(&r, ErrorCode::BackendUnavailable, "issue_coupon");
}

#[tokio::test]
async fn flash_lost_gate_is_rebuilt_from_the_store_before_it_serves() {
    let t = TestApp::new();
    let coupon = flash_coupon(&t, 3).await;
    let u = user(USER);
    // Someone already holds the coupon in the store (the gate that knew it was lost).
    let earlier = user(USER + 1);
    let policy = t
        .app
        .ports()
        .store
        .begin()
        .await
        .unwrap()
        .coupons()
        .get(coupon)
        .await
        .unwrap()
        .unwrap();
    let mut uow = t.app.ports().store.begin().await.unwrap();
    uow.coupons()
        .issue(&policy, earlier, Timestamp::from_millis(EPOCH_MS))
        .await
        .unwrap();
    uow.commit().await.unwrap();
    let mut gate = MockCouponGate::new();
    let mut seq = mockall::Sequence::new();
    gate.expect_reserve()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Ok(GateOutcome::NotInitialised));
    gate.expect_stats()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(None));
    gate.expect_rebuild()
        .times(1)
        .in_sequence(&mut seq)
        .withf(move |c, cfg, holders| *c == coupon && cfg.quantity == 3 && holders == [earlier])
        .returning(|_, _, _| Ok(true));
    gate.expect_reserve()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Ok(GateOutcome::Reserved));
    gate.expect_rollback().times(0);
    let mut ports = t.backend.ports();
    ports.gate = Arc::new(gate);
    let app = Stockade::new(ports, Settings::default());
    let r = app.issue_coupon(coupon, u).await.unwrap();
    assert_eq!(r.status, "RESERVED");
    assert_eq!(t.backend.queue.depth().await.unwrap().ready, 1);
}
