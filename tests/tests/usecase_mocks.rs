//! Use-case tests with mockall mocks of the ports, combined with the memory adapters.
//!
//! - the payment saga's compensation when the data platform fails or hangs;
//! - lock time-outs: nothing is written;
//! - store failures at every operation of a use case: nothing half-written, and a retry has the
//!   effect of a clean run;
//! - idempotency outcomes (in progress, mismatch, replay, abandon vs complete);
//! - FLASH issuance whose queue hand-off fails: the gate reservation is rolled back.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stockade_application::ports::gate::{CouponGate, GateOutcome, MockCouponGate};
use stockade_application::ports::idempotency::{
    Begin, Fingerprint, MockIdempotencyStore, Scope, StoredOutcome, Ticket,
};
use stockade_application::ports::lock::{LockError, MockLockManager};
use stockade_application::ports::platform::{
    DataPlatform, MockDataPlatform, PaidOrder, PlatformError,
};
use stockade_application::ports::queue::IssuanceQueue;
use stockade_application::ports::queue::MockIssuanceQueue;
use stockade_application::ports::store::{MockStore, Store, WalletAudit};
use stockade_application::usecases::balance::ChargeBalance;
use stockade_application::usecases::cart::CartChange;
use stockade_application::usecases::orders::{CreateOrder, OrderSource};
use stockade_application::usecases::payment::ProcessPayment;
use stockade_application::views::{ChargeReceipt, OrderView, PaymentReceipt};
use stockade_application::{AppError, BackendError, Ports, Replayable, Settings, Stockade};
use stockade_domain::{
    Cart, ChargeAmount, CouponId, Discount, ErrorCode, IdempotencyKey, IssuanceMode, LedgerEntry,
    LineRequest, Money, Order, OrderId, OrderStatus, Payment, PaymentId, Product, ProductId,
    Quantity, Timestamp, TransactionId, UserCoupon, UserCouponId, UserId,
};
use stockade_memory::StoreFaults;
use stockade_tests::harness::{user, TestApp, EPOCH_MS};

const USER: i64 = 7;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn qty(n: i64) -> Quantity {
    Quantity::new(n, "quantity").unwrap()
}

fn money(won: i64) -> Money {
    Money::new(won, "amount").unwrap()
}

fn key(raw: &str) -> IdempotencyKey {
    IdempotencyKey::parse(raw).unwrap()
}

fn backend_down(what: &'static str) -> BackendError {
    BackendError::new(what, "down (mock)")
}

/// A lock manager that always times out, called exactly `times` times.
fn timing_out_locks(times: usize) -> MockLockManager {
    let mut locks = MockLockManager::new();
    locks
        .expect_acquire()
        .times(times)
        .returning(|_, _| Err(LockError::Timeout));
    locks
}

/// A lock manager that must never be asked.
fn unused_locks() -> MockLockManager {
    let mut locks = MockLockManager::new();
    locks.expect_acquire().times(0);
    locks
}

/// A store that must never be opened.
fn untouched_store() -> MockStore {
    let mut store = MockStore::new();
    store.expect_begin().times(0);
    store
}

/// A data platform that never answers.
#[derive(Debug, Default)]
struct HangingPlatform {
    calls: AtomicUsize,
}

#[async_trait]
impl DataPlatform for HangingPlatform {
    async fn order_paid(&self, _event: &PaidOrder) -> Result<(), PlatformError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// A seeded shop: three products, a LOCKED CART coupon and a LOCKED CART_ITEM coupon issued to
/// `USER`, whose wallet holds 100,000.
#[derive(Debug, Clone)]
struct World {
    t: TestApp,
    user: UserId,
    products: Vec<ProductId>,
    cart_uc: UserCouponId,
    item_uc: UserCouponId,
}

impl World {
    async fn new() -> Self {
        Self::with_settings(Settings::default()).await
    }

    async fn with_settings(settings: Settings) -> Self {
        let t = TestApp::with_settings(settings);
        let products = vec![
            t.product(10_000, 10, 5).await,
            t.product(3_000, 10, 5).await,
            t.product(500, 10, 5).await,
        ];
        let cart_coupon = t
            .coupon(
                "CART",
                Discount::new("FIXED", 2_000, None).unwrap(),
                0,
                10,
                IssuanceMode::Locked,
            )
            .await;
        let item_coupon = t
            .coupon(
                "CART_ITEM",
                Discount::new("PERCENT", 10, None).unwrap(),
                0,
                10,
                IssuanceMode::Locked,
            )
            .await;
        t.charge(USER, 100_000).await;
        let u = user(USER);
        let cart_uc = issue_locked(&t.app, cart_coupon, u).await;
        let item_uc = issue_locked(&t.app, item_coupon, u).await;
        World {
            t,
            user: u,
            products,
            cart_uc,
            item_uc,
        }
    }

    fn app(&self) -> &Stockade {
        &self.t.app
    }

    fn faults(&self) -> &StoreFaults {
        self.t.backend.store.faults()
    }

    /// The memory ports, to swap single fields for mocks.
    fn ports(&self) -> Ports {
        self.t.backend.ports()
    }

    /// p0 x2 (with the CART_ITEM coupon placed by the use case), p1 x1, p2 x3, and the CART
    /// coupon: subtotal 24,500, discount 2,000 + 2,000, total 20,500.
    fn order_cmd(&self) -> CreateOrder {
        CreateOrder {
            user_id: self.user,
            source: OrderSource::Lines(vec![
                LineRequest {
                    product_id: self.products[0],
                    quantity: qty(2),
                    user_coupon_id: None,
                },
                LineRequest {
                    product_id: self.products[1],
                    quantity: qty(1),
                    user_coupon_id: None,
                },
                LineRequest {
                    product_id: self.products[2],
                    quantity: qty(3),
                    user_coupon_id: None,
                },
            ]),
            user_coupon_ids: vec![self.cart_uc, self.item_uc],
        }
    }

    async fn create_order(&self) -> OrderView {
        self.app()
            .create_order(self.order_cmd(), None)
            .await
            .unwrap()
            .value
    }

    async fn pay_with(
        &self,
        app: &Stockade,
        order: &OrderView,
    ) -> Result<PaymentReceipt, AppError> {
        app.pay(
            ProcessPayment {
                user_id: self.user,
                order_id: OrderId::new(order.order_id).unwrap(),
                amount: money(order.total),
            },
            None,
        )
        .await
        .map(|r| r.value)
    }

    async fn stock(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for p in &self.products {
            out.push(self.app().product(*p).await.unwrap().stock);
        }
        out
    }

    async fn balance(&self) -> i64 {
        self.app().balance(self.user).await.unwrap().balance
    }

    async fn assert_audit_clean(&self) {
        let report = self.app().audit().await.unwrap();
        assert!(
            report.violations.is_empty(),
            "audit violations: {:#?}",
            report.violations
        );
    }
}

async fn issue_locked(app: &Stockade, coupon: CouponId, u: UserId) -> UserCouponId {
    let view = app.issue_coupon(coupon, u).await.unwrap();
    assert_eq!(view.status, "ISSUED");
    UserCouponId::new(view.user_coupon_id.unwrap()).unwrap()
}

/// Everything the store holds that the use cases under test can change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    products: Vec<Product>,
    wallets: Vec<WalletAudit>,
    ledger: Vec<LedgerEntry>,
    user_coupons: Vec<UserCoupon>,
    cart: Cart,
    orders: Vec<Order>,
    payments: Vec<Payment>,
}

impl Snapshot {
    /// Read straight from the (fault-free) store.
    async fn of(w: &World) -> Snapshot {
        let mut uow = w.app().ports().store.begin().await.unwrap();
        let products = uow.products().list().await.unwrap();
        let mut wallets = uow.wallets().audit().await.unwrap();
        wallets.sort_by_key(|a| a.user_id);
        let ledger = uow.wallets().entries(w.user).await.unwrap();
        let mut user_coupons = uow.coupons().user_coupons(w.user).await.unwrap();
        user_coupons.sort_by_key(|c| c.id);
        let cart = uow.carts().get(w.user).await.unwrap();
        let mut orders = uow.orders().all().await.unwrap();
        orders.sort_by_key(|o| o.id);
        let mut payments = Vec::new();
        for o in &orders {
            payments.extend(uow.payments().for_order(o.id).await.unwrap());
        }
        payments.sort_by_key(|p| p.id);
        Snapshot {
            products,
            wallets,
            ledger,
            user_coupons,
            cart,
            orders,
            payments,
        }
    }

    /// The same state with the ids the store hands out after seeding (orders, payments, ledger
    /// entries) renumbered in order, so that a run whose failed attempts used up ids compares
    /// equal to a clean run.
    fn normalized(&self) -> Snapshot {
        let order_ids: HashMap<OrderId, OrderId> = self
            .orders
            .iter()
            .enumerate()
            .map(|(i, o)| (o.id, OrderId::new(i as i64 + 1).unwrap()))
            .collect();
        let payment_ids: HashMap<PaymentId, PaymentId> = self
            .payments
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id, PaymentId::new(i as i64 + 1).unwrap()))
            .collect();
        let mut s = self.clone();
        for o in &mut s.orders {
            o.id = order_ids[&o.id];
        }
        for p in &mut s.payments {
            p.id = payment_ids[&p.id];
            p.order_id = order_ids[&p.order_id];
        }
        for uc in &mut s.user_coupons {
            uc.order_id = uc.order_id.map(|id| order_ids[&id]);
        }
        for (i, e) in s.ledger.iter_mut().enumerate() {
            e.id = TransactionId::new(i as i64 + 1).unwrap();
            if let Some(r) = &e.reference {
                if let Some(old) = r.strip_prefix("payment:") {
                    let old = PaymentId::new(old.parse().unwrap()).unwrap();
                    e.reference = Some(format!("payment:{}", payment_ids[&old]));
                }
            }
        }
        s
    }
}

fn assert_code<T: std::fmt::Debug>(r: &Result<T, AppError>, code: ErrorCode, what: &str) {
    match r {
        Err(e) => assert_eq!(e.code(), code, "{what}: unexpected error {e:?}"),
        Ok(v) => panic!("{what}: expected {code:?}, got Ok({v:?})"),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The payment saga compensates when the data platform fails or hangs
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// 2. Lock time-outs write nothing
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn lock_timeout_on_charge_and_pay_touches_no_store() {
    let w = World::new().await;
    let mut ports = w.ports();
    ports.store = Arc::new(untouched_store());
    let mut locks = MockLockManager::new();
    locks
        .expect_acquire()
        .times(1)
        .withf(|keys, _| keys.len() == 1 && keys[0].as_str() == "balance:user:7")
        .returning(|_, _| Err(LockError::Timeout));
    locks
        .expect_acquire()
        .times(1)
        .withf(|keys, _| {
            keys.iter().any(|k| k.as_str() == "payment:order:999")
                && keys.iter().any(|k| k.as_str() == "balance:user:7")
        })
        .returning(|_, _| Err(LockError::Timeout));
    ports.locks = Arc::new(locks);
    let app = Stockade::new(ports, Settings::default());

    let r = app
        .charge(
            ChargeBalance {
                user_id: w.user,
                amount: ChargeAmount::new(5_000).unwrap(),
            },
            None,
        )
        .await;
    assert_code(&r, ErrorCode::LockTimeout, "charge");
    let r = app
        .pay(
            ProcessPayment {
                user_id: w.user,
                order_id: OrderId::new(999).unwrap(),
                amount: money(1_000),
            },
            None,
        )
        .await;
    assert_code(&r, ErrorCode::LockTimeout, "pay");
}

#[tokio::test]
async fn lock_timeout_on_create_and_cancel_order_touches_no_store() {
    let w = World::new().await;
    let order = w.create_order().await;
    let before = Snapshot::of(&w).await;

    let mut ports = w.ports();
    ports.store = Arc::new(untouched_store());
    ports.locks = Arc::new(timing_out_locks(2));
    let app = Stockade::new(ports, Settings::default());
    let r = app.create_order(w.order_cmd(), None).await;
    assert_code(&r, ErrorCode::LockTimeout, "create_order");
    let r = app
        .cancel_order(w.user, OrderId::new(order.order_id).unwrap())
        .await;
    assert_code(&r, ErrorCode::LockTimeout, "cancel_order");
    drop(app);
    assert_eq!(Snapshot::of(&w).await, before);
}

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

// ---------------------------------------------------------------------------------------------
// 3. A store failure anywhere in a use case leaves nothing half-written
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    CreateOrder,
    CreateOrderFromCart,
    Pay,
    CancelUnpaid,
    CancelPaid,
}

/// A world ready for `op`, and the order it acts on (if any).
async fn prepare(op: Op) -> (World, Option<OrderView>) {
    let w = World::new().await;
    let order = match op {
        Op::CreateOrder => None,
        Op::CreateOrderFromCart => {
            for (i, p) in w.products.iter().enumerate() {
                w.app()
                    .update_cart(w.user, CartChange::Add(*p, qty(i as i64 + 1)))
                    .await
                    .unwrap();
            }
            None
        }
        Op::Pay | Op::CancelUnpaid => Some(w.create_order().await),
        Op::CancelPaid => {
            let order = w.create_order().await;
            w.pay_with(w.app(), &order).await.unwrap();
            Some(order)
        }
    };
    (w, order)
}

async fn run(op: Op, w: &World, order: Option<&OrderView>) -> Result<(), AppError> {
    match op {
        Op::CreateOrder => w.app().create_order(w.order_cmd(), None).await.map(drop),
        Op::CreateOrderFromCart => w
            .app()
            .create_order(
                CreateOrder {
                    user_id: w.user,
                    source: OrderSource::FromCart,
                    user_coupon_ids: vec![w.cart_uc, w.item_uc],
                },
                None,
            )
            .await
            .map(drop),
        Op::Pay => w.pay_with(w.app(), order.unwrap()).await.map(drop),
        Op::CancelUnpaid | Op::CancelPaid => w
            .app()
            .cancel_order(w.user, OrderId::new(order.unwrap().order_id).unwrap())
            .await
            .map(drop),
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    AfterOps(i64),
    Commit,
}

impl Fault {
    fn inject(self, faults: &StoreFaults) {
        match self {
            Fault::AfterOps(n) => faults.fail_ops_after.store(n, Ordering::SeqCst),
            Fault::Commit => faults.fail_commit.store(true, Ordering::SeqCst),
        }
    }
}

/// What one faulty run ended as.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Succeeded,
    RolledBack,
    /// Failed after the data platform was told (only the payment saga gets there).
    FailedAfterPlatform,
}

/// Runs `op` once with `fault` on a fresh world and checks: it either succeeds with the effect
/// of a clean run, or answers BACKEND_UNAVAILABLE with the store exactly as before, after which
/// a retry succeeds with the effect of a clean run. Failures after the platform was told are
/// checked by the retry test below.
async fn run_with_fault(op: Op, fault: Fault, expected: &Snapshot) -> Ended {
    let (w, order) = prepare(op).await;
    let before = Snapshot::of(&w).await;
    fault.inject(w.faults());
    let r = run(op, &w, order.as_ref()).await;
    w.faults().clear();
    let what = format!("{op:?} with {fault:?}");
    let ended = match r {
        Ok(()) => Ended::Succeeded,
        Err(_) if !w.t.backend.platform.received().is_empty() && op == Op::Pay => {
            assert_code(&r, ErrorCode::BackendUnavailable, &what);
            let report = w.app().audit().await.unwrap();
            assert!(report.violations.is_empty(), "{what}: {report:#?}");
            return Ended::FailedAfterPlatform;
        }
        Err(_) => {
            assert_code(&r, ErrorCode::BackendUnavailable, &what);
            assert_eq!(Snapshot::of(&w).await, before, "{what}: half-written");
            w.assert_audit_clean().await;
            run(op, &w, order.as_ref())
                .await
                .unwrap_or_else(|e| panic!("{what}: retry after the fault failed: {e:?}"));
            Ended::RolledBack
        }
    };
    assert_eq!(
        &Snapshot::of(&w).await.normalized(),
        expected,
        "{what}: the effect differs from a clean run"
    );
    w.assert_audit_clean().await;
    ended
}

/// Every failure point of `op`, then a failing commit. Returns how many runs rolled back.
async fn check_all_or_nothing(op: Op) -> usize {
    let (clean, order) = prepare(op).await;
    let before = Snapshot::of(&clean).await;
    run(op, &clean, order.as_ref()).await.unwrap();
    let expected = Snapshot::of(&clean).await.normalized();
    assert_ne!(before.normalized(), expected, "{op:?} changed nothing");

    assert_eq!(
        run_with_fault(op, Fault::Commit, &expected).await,
        Ended::RolledBack,
        "{op:?}: a failing commit must roll back"
    );
    let mut rolled_back = 1;
    for n in 0.. {
        assert!(n < 200, "{op:?} never succeeded");
        match run_with_fault(op, Fault::AfterOps(n), &expected).await {
            Ended::Succeeded => break,
            Ended::RolledBack => rolled_back += 1,
            Ended::FailedAfterPlatform => {}
        }
    }
    rolled_back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_order_store_failure_leaves_nothing_half_written() {
    // get x3, get_user_coupon/get x2, deduct x3, insert, set_state x2 (and the fence check).
    assert!(check_all_or_nothing(Op::CreateOrder).await >= 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_order_from_cart_store_failure_leaves_nothing_half_written() {
    assert!(check_all_or_nothing(Op::CreateOrderFromCart).await >= 17);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_store_failure_before_the_platform_leaves_nothing_half_written() {
    // The debit step: fences, order, payments, insert, append, and the commit.
    assert!(check_all_or_nothing(Op::Pay).await >= 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_unpaid_order_store_failure_leaves_nothing_half_written() {
    assert!(check_all_or_nothing(Op::CancelUnpaid).await >= 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_paid_order_store_failure_leaves_nothing_half_written() {
    assert!(check_all_or_nothing(Op::CancelPaid).await >= 12);
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

// ---------------------------------------------------------------------------------------------
// 4. Idempotency outcomes
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// 5. FLASH issuance: a failed hand-off rolls the gate reservation back
// ---------------------------------------------------------------------------------------------

async fn flash_coupon(t: &TestApp, quantity: i64) -> CouponId {
    t.coupon(
        "CART",
        Discount::new("FIXED", 1_000, None).unwrap(),
        0,
        quantity,
        IssuanceMode::Flash,
    )
    .await
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

/// A consumer that gives up on a delivery another consumer has taken over (the queue answers
/// that the dead letter was not its to make) records no failure and gives nothing back in the
/// gate: the other consumer's outcome decides. When the queue accepts the dead letter, both
/// happen.
#[tokio::test]
async fn a_dead_letter_taken_over_by_another_consumer_changes_nothing() {
    use stockade_application::ports::queue::{Delivery, IssuanceRequest};
    use stockade_application::usecases::issuance::IssuanceOutcome;
    for accepted in [false, true] {
        let t = TestApp::new();
        let coupon = flash_coupon(&t, 1).await;
        let winner = user(USER);
        assert_eq!(
            t.app.issue_coupon(coupon, winner).await.unwrap().status,
            "RESERVED"
        );
        // The store is already full (another user holds the only coupon), so persisting the
        // winner's reservation is refused for good.
        {
            let mut uow = t.backend.store.begin().await.unwrap();
            let policy = uow.coupons().get(coupon).await.unwrap().unwrap();
            uow.coupons()
                .issue(&policy, user(USER + 1), Timestamp::from_millis(EPOCH_MS))
                .await
                .unwrap();
            uow.commit().await.unwrap();
        }
        let mut queue = MockIssuanceQueue::new();
        queue
            .expect_dead_letter()
            .times(1)
            .returning(move |_, _| Ok(accepted));
        let mut ports = t.backend.ports();
        ports.queue = Arc::new(queue);
        let app = Stockade::new(ports, Settings::default());
        let delivery = Delivery {
            id: "1".to_owned(),
            request: IssuanceRequest {
                coupon_id: coupon,
                user_id: winner,
                reserved_at: Timestamp::from_millis(EPOCH_MS),
            },
            attempt: 1,
        };
        let outcome = app.handle_issuance(&delivery).await.unwrap();
        let held = t.backend.gate.holders(coupon).await.unwrap();
        let failures = {
            let mut uow = t.backend.store.begin().await.unwrap();
            uow.coupons().failures(coupon).await.unwrap()
        };
        if accepted {
            assert_eq!(outcome, IssuanceOutcome::DeadLettered);
            assert!(held.is_empty(), "the reservation was not given back");
            assert_eq!(failures, vec![winner]);
        } else {
            assert_eq!(outcome, IssuanceOutcome::TakenOver);
            assert_eq!(
                held,
                vec![winner],
                "a taken-over reservation was given back"
            );
            assert!(
                failures.is_empty(),
                "a taken-over delivery recorded a failure"
            );
        }
    }
}
