//! Paying an order: the saga compensates when the data platform fails or hangs, and a store
//! failure before or after the platform was told leaves nothing half-written.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use super::support::faults::*;
use super::support::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockade_application::ports::platform::{DataPlatform, MockDataPlatform, PlatformError};
use stockade_application::{AppError, Settings, Stockade};
use stockade_domain::{ErrorCode, OrderId};

/// Runs a payment whose platform call fails (through `platform`) and checks every step was
/// compensated.
async fn assert_pay_compensated(w: &World, platform: Arc<dyn DataPlatform>, settings: Settings) {
    let stock_before_order = w.stock().await;
    let coupons_before_order = w.app().my_coupons(w.user).await.unwrap();
    assert_eq!(coupons_before_order.len(), 2);
    assert!(coupons_before_order.iter().all(|c| c.status == "ISSUED"));

    let order = w.create_order().await;
    assert_eq!(order.total, 20_500, "{order:?}");
    assert_eq!(order.discount, 4_000, "{order:?}");
    assert_ne!(w.stock().await, stock_before_order);
    assert!(w
        .app()
        .my_coupons(w.user)
        .await
        .unwrap()
        .iter()
        .all(|c| c.status == "USED"));
    let balance_before_pay = w.balance().await;
    let ledger_before_pay = w.app().transactions(w.user).await.unwrap();

    let mut ports = w.ports();
    ports.platform = platform;
    let app = Stockade::new(ports, settings);
    let r = w.pay_with(&app, &order).await;
    assert!(matches!(r, Err(AppError::PaymentFailed)), "{r:?}");
    assert_code(&r, ErrorCode::PaymentFailed, "pay");

    assert_eq!(w.balance().await, balance_before_pay);
    assert_eq!(w.stock().await, stock_before_order);
    assert_eq!(
        w.app().my_coupons(w.user).await.unwrap(),
        coupons_before_order
    );
    let order_now = w
        .app()
        .order(w.user, OrderId::new(order.order_id).unwrap())
        .await
        .unwrap();
    assert_eq!(order_now.status, "PAYMENT_FAILED");
    // The ledger, newest first: REFUND then USE of the order's total, on top of what was there.
    let ledger = w.app().transactions(w.user).await.unwrap();
    assert_eq!(ledger.len(), ledger_before_pay.len() + 2, "{ledger:#?}");
    assert_eq!(ledger[1].kind, "USE");
    assert_eq!(ledger[1].amount, order.total);
    assert_eq!(ledger[0].kind, "REFUND");
    assert_eq!(ledger[0].amount, order.total);
    assert_eq!(ledger[0].balance_after, balance_before_pay);
    assert_eq!(&ledger[2..], &ledger_before_pay[..]);
    w.assert_audit_clean().await;

    // The saga released its locks: the wallet and the order can be used at once.
    w.t.charge(USER, 1_000).await;
    let again = w.pay_with(&app, &order).await;
    assert_code(
        &again,
        ErrorCode::InvalidOrderState,
        "pay after PAYMENT_FAILED",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_failure_compensates_balance_stock_and_coupons() {
    let w = World::new().await;
    let mut platform = MockDataPlatform::new();
    let u = w.user;
    platform
        .expect_order_paid()
        .times(1)
        .withf(move |e| e.user_id == u && e.amount == money(20_500))
        .returning(|_| Err(PlatformError("refused (mock)".into())));
    assert_pay_compensated(&w, Arc::new(platform), Settings::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_platform_times_out_and_compensates() {
    let settings = Settings {
        platform_timeout: Duration::from_millis(100),
        ..Settings::default()
    };
    let w = World::with_settings(settings.clone()).await;
    let platform = Arc::new(HangingPlatform::default());
    let started = Instant::now();
    assert_pay_compensated(&w, platform.clone(), settings).await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(platform.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn platform_success_confirms_the_payment() {
    let w = World::new().await;
    let order = w.create_order().await;
    let stock_after_order = w.stock().await;
    let balance = w.balance().await;
    let mut platform = MockDataPlatform::new();
    let oid = OrderId::new(order.order_id).unwrap();
    platform
        .expect_order_paid()
        .times(1)
        .withf(move |e| e.order_id == oid && e.amount == money(20_500))
        .returning(|_| Ok(()));
    let mut ports = w.ports();
    ports.platform = Arc::new(platform);
    let app = Stockade::new(ports, Settings::default());
    let receipt = w.pay_with(&app, &order).await.unwrap();
    assert_eq!(receipt.status, "APPROVED");
    assert_eq!(receipt.balance, balance - 20_500);
    assert_eq!(w.balance().await, balance - 20_500);
    assert_eq!(w.stock().await, stock_after_order);
    assert_eq!(w.app().order(w.user, oid).await.unwrap().status, "PAID");
    w.assert_audit_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_store_failure_before_the_platform_leaves_nothing_half_written() {
    // The debit step: fences, order, payments, insert, append, and the commit.
    assert!(check_all_or_nothing(Op::Pay).await >= 6);
}

/// The saga's step 3 (confirm or compensate) runs in its own unit of work after the debit was
/// committed and the platform told. When the store fails there, `pay` answers
/// BACKEND_UNAVAILABLE but leaves the wallet debited, a PENDING payment and the order
/// PENDING_PAYMENT; the client's retry is refused (INVALID_ORDER_STATE, "PAYMENT_IN_PROGRESS"),
/// so only expiry ever resolves it, refunding an order the platform was told is paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_store_failure_after_the_platform_is_resolved_by_a_retry() {
    let (clean, order) = prepare(Op::Pay).await;
    run(Op::Pay, &clean, order.as_ref()).await.unwrap();
    let expected = Snapshot::of(&clean).await.normalized();
    let mut seen = 0;
    for n in 0..50 {
        let (w, order) = prepare(Op::Pay).await;
        w.faults().fail_ops_after.store(n, Ordering::SeqCst);
        let r = run(Op::Pay, &w, order.as_ref()).await;
        w.faults().clear();
        if r.is_ok() {
            break;
        }
        if w.t.backend.platform.received().is_empty() {
            continue;
        }
        seen += 1;
        assert_code(&r, ErrorCode::BackendUnavailable, "pay");
        // The client retries once the store is back: the payment must end as a clean run's.
        let retry = run(Op::Pay, &w, order.as_ref()).await;
        assert!(retry.is_ok(), "n={n}: retry answered {retry:?}");
        assert_eq!(Snapshot::of(&w).await.normalized(), expected, "n={n}");
        let told = w.t.backend.platform.received();
        assert!(told.iter().all(|e| e.payment_id == told[0].payment_id));
    }
    assert!(seen > 0);
}
