//! Interleavings found in review, each pinned by a test.

#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::platform::{DataPlatform, PaidOrder, PlatformError};
use stockade_application::ports::queue::{IssuanceQueue, IssuanceRequest};
use stockade_application::usecases::create_order::{CreateOrder, OrderSource};
use stockade_application::usecases::process_payment::ProcessPayment;
use stockade_application::{AppError, Settings, Stockade};
use stockade_domain::{
    CouponId, Discount, IdempotencyKey, IssuanceMode, LineRequest, Money, OrderId, Quantity,
    Timestamp,
};
use stockade_memory::MemoryIssuanceQueue;
use stockade_tests::harness::{user, TestApp};

fn one_unit_of(product: stockade_domain::ProductId) -> CreateOrder {
    CreateOrder {
        user_id: user(1),
        source: OrderSource::Lines(vec![LineRequest {
            product_id: product,
            quantity: Quantity::new(1, "quantity").unwrap(),
            user_coupon_id: None,
        }]),
        user_coupon_ids: vec![],
    }
}

/// The idempotency record of a keyed order is lost (its lease lapsed and was purged, or its
/// store restarted): running the same keyed request again finds the first order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_order_is_placed_once_even_if_its_idempotency_record_is_lost() {
    let t = TestApp::new();
    let product = t.product(1_000, 10, 5).await;
    let key = IdempotencyKey::parse("order-once").unwrap();
    let first = t
        .app
        .create_order(one_unit_of(product), Some(&key))
        .await
        .unwrap();
    t.backend.idempotency.clear();
    let again = t
        .app
        .create_order(one_unit_of(product), Some(&key))
        .await
        .unwrap();
    assert_eq!(again.value, first.value);
    assert_eq!(t.app.product(product).await.unwrap().stock, 9);
    assert_eq!(t.app.audit().await.unwrap().orders, 1);
}

/// A user whose earlier issuance failed reserves again; reconciliation running before the
/// consumer persists the new reservation must keep it, not roll it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_keeps_a_new_reservation_of_a_user_who_failed_before() {
    let t = TestApp::new();
    let coupon = t
        .coupon(
            "CART",
            Discount::new("FIXED", 100, None).unwrap(),
            0,
            5,
            IssuanceMode::Flash,
        )
        .await;
    let mut uow = t.app.ports().store.begin().await.unwrap();
    uow.coupons()
        .record_failure(
            coupon,
            user(3),
            "an earlier attempt failed",
            Timestamp::from_millis(0),
        )
        .await
        .unwrap();
    uow.commit().await.unwrap();
    let r = t.app.issue_coupon(coupon, user(3)).await.unwrap();
    assert_eq!(r.status, "RESERVED");
    let report = t.app.reconcile(coupon).await.unwrap();
    assert_eq!(report.rolled_back, 0, "{report:?}");
    t.drain().await;
    let stock = t.app.coupon_stock(coupon).await.unwrap();
    assert_eq!((stock.persisted, stock.reserved, stock.failed), (1, 1, 0));
    t.assert_invariants(&[coupon]).await;
}

/// A platform that accepts, but while it answers the store starts failing commits: step 3 of
/// the saga fails after the platform was told.
#[derive(Debug)]
struct AcceptThenBreakCommits(stockade_memory::MemoryStore);

#[async_trait]
impl DataPlatform for AcceptThenBreakCommits {
    async fn order_paid(&self, _event: &PaidOrder) -> Result<(), PlatformError> {
        self.0.faults().fail_commit.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// Cancelling an order whose payment saga was interrupted after the platform accepted it
/// settles the saga first (the order is paid) and then cancels it with a refund — it never
/// releases the order as if it had not been paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_an_order_with_an_open_saga_settles_it_first() {
    let t = TestApp::new();
    let product = t.product(1_000, 10, 5).await;
    t.charge(1, 10_000).await;
    let order = t
        .app
        .create_order(one_unit_of(product), None)
        .await
        .unwrap()
        .value;
    let mut ports = t.backend.ports();
    ports.platform = Arc::new(AcceptThenBreakCommits(t.backend.store.clone()));
    let breaking = Stockade::new(ports, Settings::default());
    let paid = breaking
        .pay(
            ProcessPayment {
                user_id: user(1),
                order_id: OrderId::new(order.order_id).unwrap(),
                amount: Money::new(order.total, "amount").unwrap(),
            },
            None,
        )
        .await;
    assert!(matches!(paid, Err(AppError::Unavailable(_))), "{paid:?}");
    t.backend.store.faults().clear();
    let cancelled = t
        .app
        .cancel_order(user(1), OrderId::new(order.order_id).unwrap())
        .await
        .unwrap();
    assert_eq!(cancelled.status, "CANCELLED");
    assert_eq!(t.app.balance(user(1)).await.unwrap().balance, 10_000);
    assert_eq!(t.app.product(product).await.unwrap().stock, 10);
    // The saga was confirmed before the cancel refunded it: USE, then REFUND.
    let kinds: Vec<String> = t
        .app
        .transactions(user(1))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, vec!["REFUND", "USE", "CHARGE"]);
    t.assert_invariants(&[]).await;
}

/// A delivery dead-lettered after its visibility time-out put it back is not delivered again.
#[tokio::test(start_paused = true)]
async fn a_late_dead_letter_is_final() {
    let q = MemoryIssuanceQueue::new(100, Duration::from_millis(300));
    q.publish(IssuanceRequest {
        coupon_id: CouponId::new(1).unwrap(),
        user_id: user(1),
        reserved_at: Timestamp::from_millis(0),
    })
    .await
    .unwrap();
    let d = q
        .receive(1, Duration::from_millis(10))
        .await
        .unwrap()
        .pop()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(q.dead_letter(&d, "gave up").await.unwrap());
    assert!(q
        .receive(1, Duration::from_millis(500))
        .await
        .unwrap()
        .is_empty());
    let depth = q.depth().await.unwrap();
    assert_eq!((depth.ready, depth.in_flight, depth.dead), (0, 0, 1));
}

/// A memory gate that counts its rebuilds and, if `persist_first` is set, lets a consumer
/// persist one more reservation it had in hand (read from the stream before the gate was lost)
/// at the start of a rebuild: between the rebuild's read of the store and its script.
#[derive(Debug)]
struct WatchedGate {
    inner: stockade_memory::MemoryCouponGate,
    rebuilds: std::sync::atomic::AtomicUsize,
    persist_first: Option<(stockade_memory::MemoryStore, stockade_domain::UserId)>,
}

impl WatchedGate {
    fn over(inner: stockade_memory::MemoryCouponGate) -> Self {
        WatchedGate {
            inner,
            rebuilds: std::sync::atomic::AtomicUsize::new(0),
            persist_first: None,
        }
    }
}

#[async_trait]
impl stockade_application::ports::gate::CouponGate for WatchedGate {
    async fn init(
        &self,
        coupon: CouponId,
        config: stockade_application::ports::gate::GateConfig,
    ) -> Result<(), stockade_application::BackendError> {
        self.inner.init(coupon, config).await
    }
    async fn rebuild(
        &self,
        coupon: CouponId,
        config: stockade_application::ports::gate::GateConfig,
        holders: &[stockade_domain::UserId],
    ) -> Result<bool, stockade_application::BackendError> {
        self.rebuilds.fetch_add(1, Ordering::SeqCst);
        if let Some((store, late)) = &self.persist_first {
            use stockade_application::ports::store::Store;
            let mut uow = store.begin().await.unwrap();
            let policy = uow.coupons().get(coupon).await.unwrap().unwrap();
            uow.coupons()
                .issue(&policy, *late, Timestamp::from_millis(1))
                .await
                .unwrap();
            uow.commit().await.unwrap();
        }
        tokio::task::yield_now().await;
        self.inner.rebuild(coupon, config, holders).await
    }
    async fn reserve(
        &self,
        coupon: CouponId,
        user: stockade_domain::UserId,
        now: Timestamp,
    ) -> Result<stockade_application::ports::gate::GateOutcome, stockade_application::BackendError>
    {
        self.inner.reserve(coupon, user, now).await
    }
    async fn rollback(
        &self,
        coupon: CouponId,
        user: stockade_domain::UserId,
    ) -> Result<bool, stockade_application::BackendError> {
        self.inner.rollback(coupon, user).await
    }
    async fn restore(
        &self,
        coupon: CouponId,
        user: stockade_domain::UserId,
    ) -> Result<bool, stockade_application::BackendError> {
        self.inner.restore(coupon, user).await
    }
    async fn stats(
        &self,
        coupon: CouponId,
    ) -> Result<
        Option<stockade_application::ports::gate::GateStats>,
        stockade_application::BackendError,
    > {
        self.inner.stats(coupon).await
    }
    async fn holders(
        &self,
        coupon: CouponId,
    ) -> Result<Vec<stockade_domain::UserId>, stockade_application::BackendError> {
        self.inner.holders(coupon).await
    }
}

/// The gate is lost (its backend restarted empty) and 300 requests find it gone at once: it is
/// rebuilt once, from the store, with the 30 holders in it, and only the 20 places left are won
/// (each then persisted, none refused afterwards).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_gate_is_rebuilt_once_with_its_holders() {
    let t = TestApp::new();
    let coupon = t
        .coupon(
            "CART",
            Discount::new("FIXED", 1_000, None).unwrap(),
            0,
            50,
            IssuanceMode::Flash,
        )
        .await;
    for n in 1..=30 {
        t.app.issue_coupon(coupon, user(n)).await.unwrap();
    }
    t.drain().await;
    t.backend.gate.wipe();
    let gate = Arc::new(WatchedGate::over(t.backend.gate.clone()));
    let mut ports = t.backend.ports();
    ports.gate = gate.clone();
    let app = Stockade::new(ports, Settings::default());
    let tasks: Vec<_> = (101..=400)
        .map(|n| {
            let app = app.clone();
            tokio::spawn(async move { app.issue_coupon(coupon, user(n)).await.is_ok() })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        if task.await.unwrap() {
            won += 1;
        }
    }
    assert_eq!(
        gate.rebuilds.load(Ordering::SeqCst),
        1,
        "rebuilt more than once"
    );
    assert_eq!(won, 20);
    t.drain().await;
    let stock = app.coupon_stock(coupon).await.unwrap();
    assert_eq!(
        (
            stock.remaining,
            stock.reserved,
            stock.persisted,
            stock.failed
        ),
        (0, 50, 50, 0)
    );
    t.assert_invariants(&[coupon]).await;
}

/// A keyed payment's saga is interrupted after the platform accepted it, and finished by the
/// recovery worker; the idempotency record of the request is gone. The same keyed request
/// again answers with that payment's receipt (not `INVALID_ORDER_STATE`), and charges nothing
/// more; another key for the same order is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_pay_retried_after_recovery_answers_with_its_receipt() {
    let t = TestApp::new();
    let product = t.product(1_000, 10, 5).await;
    t.charge(1, 10_000).await;
    let order = t
        .app
        .create_order(one_unit_of(product), None)
        .await
        .unwrap()
        .value;
    let cmd = ProcessPayment {
        user_id: user(1),
        order_id: OrderId::new(order.order_id).unwrap(),
        amount: Money::new(order.total, "amount").unwrap(),
    };
    let key = IdempotencyKey::parse("pay-once").unwrap();
    let mut ports = t.backend.ports();
    ports.platform = Arc::new(AcceptThenBreakCommits(t.backend.store.clone()));
    let breaking = Stockade::new(ports, Settings::default());
    let paid = breaking.pay(cmd.clone(), Some(&key)).await;
    assert!(matches!(paid, Err(AppError::Unavailable(_))), "{paid:?}");
    t.backend.store.faults().clear();
    t.clock.advance(Duration::from_secs(60));
    assert_eq!(
        t.app
            .recover_sagas(Duration::from_secs(30), 10)
            .await
            .unwrap(),
        1
    );
    t.backend.idempotency.clear();

    let again = t.app.pay(cmd.clone(), Some(&key)).await.unwrap().value;
    assert_eq!(again.status, "APPROVED");
    assert_eq!(again.amount, order.total);
    assert_eq!(again.balance, 10_000 - order.total);
    assert_eq!(
        t.app.balance(user(1)).await.unwrap().balance,
        10_000 - order.total
    );
    let other = IdempotencyKey::parse("pay-twice").unwrap();
    let refused = t.app.pay(cmd, Some(&other)).await;
    assert!(
        matches!(&refused, Err(e) if e.code() == stockade_domain::ErrorCode::InvalidOrderState),
        "{refused:?}"
    );
    let uses = t
        .app
        .transactions(user(1))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "USE")
        .count();
    assert_eq!(uses, 1);
    t.assert_invariants(&[]).await;
}

/// A reservation persisted while the lost gate is being rebuilt still gets its place in the
/// rebuilt gate: the crowd after it wins only the places left, and none is refused later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_persisted_during_the_rebuild_keeps_its_place() {
    let t = TestApp::new();
    let coupon = t
        .coupon(
            "CART",
            Discount::new("FIXED", 1_000, None).unwrap(),
            0,
            10,
            IssuanceMode::Flash,
        )
        .await;
    for n in 1..=5 {
        t.app.issue_coupon(coupon, user(n)).await.unwrap();
    }
    t.drain().await;
    t.backend.gate.wipe();
    let mut ports = t.backend.ports();
    ports.gate = Arc::new(WatchedGate {
        persist_first: Some((t.backend.store.clone(), user(6))),
        ..WatchedGate::over(t.backend.gate.clone())
    });
    let app = Stockade::new(ports, Settings::default());
    let mut won = 0;
    for n in 100..130 {
        if app.issue_coupon(coupon, user(n)).await.is_ok() {
            won += 1;
        }
    }
    assert_eq!(won, 4, "only the places nobody holds");
    t.drain().await;
    let stock = app.coupon_stock(coupon).await.unwrap();
    assert_eq!(
        (
            stock.remaining,
            stock.reserved,
            stock.persisted,
            stock.failed
        ),
        (0, 10, 10, 0)
    );
    t.assert_invariants(&[coupon]).await;
}
