//! Keyed (idempotent) execution, driven through charging a balance: in progress, mismatch,
//! replay, and which outcomes are completed and which abandoned.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use super::support::*;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stockade_application::ports::idempotency::{
    Begin, Fingerprint, MockIdempotencyStore, Scope, StoredOutcome, Ticket,
};
use stockade_application::ports::platform::{MockDataPlatform, PlatformError};
use stockade_application::usecases::charge_balance::ChargeBalance;
use stockade_application::usecases::create_order::{CreateOrder, OrderSource};
use stockade_application::usecases::process_payment::ProcessPayment;
use stockade_application::views::ChargeReceipt;
use stockade_application::{AppError, Ports, Replayable, Settings, Stockade};
use stockade_domain::{ChargeAmount, ErrorCode, IdempotencyKey, LineRequest, OrderId, OrderStatus};
use stockade_tests::harness::user;

fn ticket(k: &IdempotencyKey) -> Ticket {
    Ticket {
        scope: Scope(format!("user:{USER}")),
        key: k.clone(),
        owner: "owner-1".into(),
    }
}

fn charge_cmd(amount: i64) -> ChargeBalance {
    ChargeBalance {
        user_id: user(USER),
        amount: ChargeAmount::new(amount).unwrap(),
    }
}

/// Ports whose store and locks must never be used, with `idem` as the idempotency store.
fn ports_without_work(w: &World, idem: MockIdempotencyStore) -> Ports {
    let mut ports = w.ports();
    ports.store = Arc::new(untouched_store());
    ports.locks = Arc::new(unused_locks());
    ports.idempotency = Arc::new(idem);
    ports
}

#[tokio::test]
async fn idempotency_in_progress_and_mismatch_run_nothing() {
    let w = World::new().await;
    let k = key("charge-1");

    let mut idem = MockIdempotencyStore::new();
    let expected_key = k.clone();
    let lease = Settings::default().idempotency_lease;
    idem.expect_begin()
        .times(1)
        .withf(move |scope, key, _, l| {
            scope.0 == format!("user:{USER}") && *key == expected_key && *l == lease
        })
        .returning(|_, _, _, _| {
            Ok(Begin::InProgress {
                retry_after: Duration::from_secs(3),
            })
        });
    idem.expect_complete().times(0);
    idem.expect_abandon().times(0);
    let app = Stockade::new(ports_without_work(&w, idem), Settings::default());
    let r = app.charge(charge_cmd(5_000), Some(&k)).await;
    assert!(
        matches!(r, Err(AppError::RequestInProgress { retry_after }) if retry_after == Duration::from_secs(3)),
        "{r:?}"
    );
    assert_code(&r, ErrorCode::RequestInProgress, "charge");

    let mut idem = MockIdempotencyStore::new();
    idem.expect_begin()
        .times(1)
        .returning(|_, _, _, _| Ok(Begin::Mismatch));
    idem.expect_complete().times(0);
    idem.expect_abandon().times(0);
    let app = Stockade::new(ports_without_work(&w, idem), Settings::default());
    let r = app.charge(charge_cmd(5_000), Some(&k)).await;
    assert!(matches!(r, Err(AppError::IdempotencyKeyReused)), "{r:?}");
    assert_code(&r, ErrorCode::IdempotencyKeyReused, "charge");
}

#[tokio::test]
async fn idempotency_fingerprint_follows_the_command() {
    let w = World::new().await;
    let seen: Arc<Mutex<Vec<Fingerprint>>> = Arc::default();
    let mut idem = MockIdempotencyStore::new();
    let record = seen.clone();
    idem.expect_begin().times(3).returning(move |_, _, f, _| {
        record.lock().unwrap().push(f.clone());
        Ok(Begin::Mismatch)
    });
    let app = Stockade::new(ports_without_work(&w, idem), Settings::default());
    let k = key("charge-fp");
    for amount in [5_000, 5_000, 6_000] {
        let r = app.charge(charge_cmd(amount), Some(&k)).await;
        assert_code(&r, ErrorCode::IdempotencyKeyReused, "charge");
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0], seen[1]);
    assert_ne!(seen[0], seen[2]);
}

#[tokio::test]
async fn idempotency_replay_answers_the_stored_outcome_without_running() {
    let w = World::new().await;
    let k = key("charge-replayed");
    let mut idem = MockIdempotencyStore::new();
    idem.expect_begin().times(1).returning(|_, _, _, _| {
        Ok(Begin::Replay(StoredOutcome {
            ok: true,
            body: br#"{"userId":7,"balance":5000,"transactionId":3}"#.to_vec(),
        }))
    });
    idem.expect_complete().times(0);
    idem.expect_abandon().times(0);
    let app = Stockade::new(ports_without_work(&w, idem), Settings::default());
    let r = app.charge(charge_cmd(5_000), Some(&k)).await.unwrap();
    assert_eq!(
        r,
        Replayable {
            value: ChargeReceipt {
                user_id: USER,
                balance: 5_000,
                transaction_id: 3,
            },
            replayed: true,
        }
    );

    // A stored refusal is answered again, with its code.
    let mut idem = MockIdempotencyStore::new();
    idem.expect_begin().times(1).returning(|_, _, _, _| {
        Ok(Begin::Replay(StoredOutcome {
            ok: false,
            body: br#"{"code":"INSUFFICIENT_BALANCE","message":"not enough"}"#.to_vec(),
        }))
    });
    idem.expect_complete().times(0);
    idem.expect_abandon().times(0);
    let app = Stockade::new(ports_without_work(&w, idem), Settings::default());
    let r = app
        .pay(
            ProcessPayment {
                user_id: w.user,
                order_id: OrderId::new(1).unwrap(),
                amount: money(1_000),
            },
            Some(&k),
        )
        .await;
    match r {
        Err(AppError::Replayed { code, message }) => {
            assert_eq!(code, ErrorCode::InsufficientBalance);
            assert_eq!(message, "not enough");
        }
        other => panic!("expected a replayed refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn idempotency_success_is_completed_and_its_body_replays_identically() {
    let w = World::new().await;
    let k = key("charge-ok");
    let t = ticket(&k);
    let stored: Arc<Mutex<Option<StoredOutcome>>> = Arc::default();
    let mut idem = MockIdempotencyStore::new();
    let started = t.clone();
    idem.expect_begin()
        .times(1)
        .returning(move |_, _, _, _| Ok(Begin::Started(started.clone())));
    let keep = stored.clone();
    let expected_ticket = t.clone();
    idem.expect_complete()
        .times(1)
        .withf(move |tk, o, ttl| {
            *tk == expected_ticket && o.ok && *ttl == Settings::default().idempotency_ttl
        })
        .returning(move |_, o, _| {
            *keep.lock().unwrap() = Some(o);
            Ok(())
        });
    idem.expect_abandon().times(0);
    let mut ports = w.ports();
    ports.idempotency = Arc::new(idem);
    let app = Stockade::new(ports, Settings::default());
    let first = app.charge(charge_cmd(5_000), Some(&k)).await.unwrap();
    assert!(!first.replayed);
    assert_eq!(first.value.balance, 105_000);
    assert_eq!(w.balance().await, 105_000);

    let body = stored.lock().unwrap().clone().unwrap();
    let mut idem = MockIdempotencyStore::new();
    idem.expect_begin()
        .times(1)
        .returning(move |_, _, _, _| Ok(Begin::Replay(body.clone())));
    let app = Stockade::new(ports_without_work(&w, idem), Settings::default());
    let second = app.charge(charge_cmd(5_000), Some(&k)).await.unwrap();
    assert!(second.replayed);
    assert_eq!(second.value, first.value);
    assert_eq!(w.balance().await, 105_000);
}

/// An idempotency store that hands out `t` and expects the outcome to be abandoned.
fn abandoning(t: &Ticket) -> MockIdempotencyStore {
    let mut idem = MockIdempotencyStore::new();
    let started = t.clone();
    idem.expect_begin()
        .times(1)
        .returning(move |_, _, _, _| Ok(Begin::Started(started.clone())));
    let expected = t.clone();
    idem.expect_abandon()
        .times(1)
        .withf(move |tk| *tk == expected)
        .returning(|_| Ok(()));
    idem.expect_complete().times(0);
    idem
}

#[tokio::test]
async fn idempotency_lock_timeout_is_abandoned() {
    let w = World::new().await;
    let k = key("charge-busy");
    let mut ports = w.ports();
    ports.idempotency = Arc::new(abandoning(&ticket(&k)));
    ports.locks = Arc::new(timing_out_locks(1));
    ports.store = Arc::new(untouched_store());
    let app = Stockade::new(ports, Settings::default());
    let r = app.charge(charge_cmd(5_000), Some(&k)).await;
    assert_code(&r, ErrorCode::LockTimeout, "charge");
}

#[tokio::test]
async fn idempotency_backend_failure_and_payment_failure_are_abandoned() {
    let w = World::new().await;
    let k = key("charge-down");
    let before = Snapshot::of(&w).await;
    let mut ports = w.ports();
    ports.idempotency = Arc::new(abandoning(&ticket(&k)));
    let app = Stockade::new(ports, Settings::default());
    w.faults().fail_ops_after.store(1, Ordering::SeqCst);
    let r = app.charge(charge_cmd(5_000), Some(&k)).await;
    w.faults().clear();
    assert_code(&r, ErrorCode::BackendUnavailable, "charge");
    assert_eq!(Snapshot::of(&w).await, before);
    drop(app);

    // PAYMENT_FAILED is not kept either: the saga compensated and a retry may run.
    let order = w.create_order().await;
    let k = key("pay-failed");
    let mut platform = MockDataPlatform::new();
    platform
        .expect_order_paid()
        .times(1)
        .returning(|_| Err(PlatformError("refused (mock)".into())));
    let mut ports = w.ports();
    ports.idempotency = Arc::new(abandoning(&ticket(&k)));
    ports.platform = Arc::new(platform);
    let app = Stockade::new(ports, Settings::default());
    let r = app
        .pay(
            ProcessPayment {
                user_id: w.user,
                order_id: OrderId::new(order.order_id).unwrap(),
                amount: money(order.total),
            },
            Some(&k),
        )
        .await;
    assert_code(&r, ErrorCode::PaymentFailed, "pay");
}

#[tokio::test]
async fn idempotency_business_refusal_is_completed_as_not_ok() {
    let w = World::new().await;
    let poor = user(8);
    w.t.charge(8, 1_000).await;
    let order = w
        .app()
        .create_order(
            CreateOrder {
                user_id: poor,
                source: OrderSource::Lines(vec![LineRequest {
                    product_id: w.products[0],
                    quantity: qty(1),
                    user_coupon_id: None,
                }]),
                user_coupon_ids: vec![],
            },
            None,
        )
        .await
        .unwrap()
        .value;
    let before = Snapshot::of(&w).await;

    let k = key("pay-poor");
    let t = Ticket {
        scope: Scope("user:8".into()),
        key: k.clone(),
        owner: "owner-2".into(),
    };
    let mut idem = MockIdempotencyStore::new();
    let started = t.clone();
    idem.expect_begin()
        .times(1)
        .returning(move |_, _, _, _| Ok(Begin::Started(started.clone())));
    idem.expect_complete()
        .times(1)
        .withf(move |tk, o, _| {
            *tk == t && !o.ok && String::from_utf8_lossy(&o.body).contains("INSUFFICIENT_BALANCE")
        })
        .returning(|_, _, _| Ok(()));
    idem.expect_abandon().times(0);
    let mut platform = MockDataPlatform::new();
    platform.expect_order_paid().times(0);
    let mut ports = w.ports();
    ports.idempotency = Arc::new(idem);
    ports.platform = Arc::new(platform);
    let app = Stockade::new(ports, Settings::default());
    let r = app
        .pay(
            ProcessPayment {
                user_id: poor,
                order_id: OrderId::new(order.order_id).unwrap(),
                amount: money(order.total),
            },
            Some(&k),
        )
        .await;
    assert_code(&r, ErrorCode::InsufficientBalance, "pay");
    assert_eq!(Snapshot::of(&w).await, before);
    assert_eq!(
        w.app()
            .order(poor, OrderId::new(order.order_id).unwrap())
            .await
            .unwrap()
            .status,
        OrderStatus::PendingPayment.as_str()
    );
}
