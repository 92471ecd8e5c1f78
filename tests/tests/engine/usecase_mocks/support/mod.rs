//! What the use-case tests share: mock ports that time out, must stay unused or never answer,
//! a seeded shop ([`World`]) on the memory adapters whose single ports can be swapped for mocks,
//! and a [`Snapshot`] of everything the store holds, to show that a failed run wrote nothing.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use stockade_application::ports::lock::{LockError, MockLockManager};
use stockade_application::ports::platform::{DataPlatform, PaidOrder, PlatformError};
use stockade_application::ports::store::{MockStore, WalletAudit};
use stockade_application::usecases::create_order::{CreateOrder, OrderSource};
use stockade_application::usecases::process_payment::ProcessPayment;
use stockade_application::views::{OrderView, PaymentReceipt};
use stockade_application::{AppError, BackendError, Ports, Settings, Stockade};
use stockade_domain::{
    Cart, CouponId, Discount, ErrorCode, IdempotencyKey, IssuanceMode, LedgerEntry, LineRequest,
    Money, Order, OrderId, Payment, PaymentId, Product, ProductId, Quantity, TransactionId,
    UserCoupon, UserCouponId, UserId,
};
use stockade_memory::StoreFaults;
use stockade_tests::harness::{user, TestApp};

pub(crate) mod faults;

pub(crate) const USER: i64 = 7;

pub(crate) fn qty(n: i64) -> Quantity {
    Quantity::new(n, "quantity").unwrap()
}

pub(crate) fn money(won: i64) -> Money {
    Money::new(won, "amount").unwrap()
}

pub(crate) fn key(raw: &str) -> IdempotencyKey {
    IdempotencyKey::parse(raw).unwrap()
}

pub(crate) fn backend_down(what: &'static str) -> BackendError {
    BackendError::new(what, "down (mock)")
}

/// A lock manager that always times out, called exactly `times` times.
pub(crate) fn timing_out_locks(times: usize) -> MockLockManager {
    let mut locks = MockLockManager::new();
    locks
        .expect_acquire()
        .times(times)
        .returning(|_, _| Err(LockError::Timeout));
    locks
}

/// A lock manager that must never be asked.
pub(crate) fn unused_locks() -> MockLockManager {
    let mut locks = MockLockManager::new();
    locks.expect_acquire().times(0);
    locks
}

/// A store that must never be opened.
pub(crate) fn untouched_store() -> MockStore {
    let mut store = MockStore::new();
    store.expect_begin().times(0);
    store
}

/// A data platform that never answers.
#[derive(Debug, Default)]
pub(crate) struct HangingPlatform {
    pub(crate) calls: AtomicUsize,
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
pub(crate) struct World {
    pub(crate) t: TestApp,
    pub(crate) user: UserId,
    pub(crate) products: Vec<ProductId>,
    pub(crate) cart_uc: UserCouponId,
    pub(crate) item_uc: UserCouponId,
}

impl World {
    pub(crate) async fn new() -> Self {
        Self::with_settings(Settings::default()).await
    }

    pub(crate) async fn with_settings(settings: Settings) -> Self {
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

    pub(crate) fn app(&self) -> &Stockade {
        &self.t.app
    }

    pub(crate) fn faults(&self) -> &StoreFaults {
        self.t.backend.store.faults()
    }

    /// The memory ports, to swap single fields for mocks.
    pub(crate) fn ports(&self) -> Ports {
        self.t.backend.ports()
    }

    /// p0 x2 (with the CART_ITEM coupon placed by the use case), p1 x1, p2 x3, and the CART
    /// coupon: subtotal 24,500, discount 2,000 + 2,000, total 20,500.
    pub(crate) fn order_cmd(&self) -> CreateOrder {
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

    pub(crate) async fn create_order(&self) -> OrderView {
        self.app()
            .create_order(self.order_cmd(), None)
            .await
            .unwrap()
            .value
    }

    pub(crate) async fn pay_with(
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

    pub(crate) async fn stock(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for p in &self.products {
            out.push(self.app().product(*p).await.unwrap().stock);
        }
        out
    }

    pub(crate) async fn balance(&self) -> i64 {
        self.app().balance(self.user).await.unwrap().balance
    }

    pub(crate) async fn assert_audit_clean(&self) {
        let report = self.app().audit().await.unwrap();
        assert!(
            report.violations.is_empty(),
            "audit violations: {:#?}",
            report.violations
        );
    }
}

pub(crate) async fn issue_locked(app: &Stockade, coupon: CouponId, u: UserId) -> UserCouponId {
    let view = app.issue_coupon(coupon, u).await.unwrap();
    assert_eq!(view.status, "ISSUED");
    UserCouponId::new(view.user_coupon_id.unwrap()).unwrap()
}

/// Everything the store holds that the use cases under test can change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) products: Vec<Product>,
    pub(crate) wallets: Vec<WalletAudit>,
    pub(crate) ledger: Vec<LedgerEntry>,
    pub(crate) user_coupons: Vec<UserCoupon>,
    pub(crate) cart: Cart,
    pub(crate) orders: Vec<Order>,
    pub(crate) payments: Vec<Payment>,
}

impl Snapshot {
    /// Read straight from the (fault-free) store.
    pub(crate) async fn of(w: &World) -> Snapshot {
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
    pub(crate) fn normalized(&self) -> Snapshot {
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

pub(crate) fn assert_code<T: std::fmt::Debug>(
    r: &Result<T, AppError>,
    code: ErrorCode,
    what: &str,
) {
    match r {
        Err(e) => assert_eq!(e.code(), code, "{what}: unexpected error {e:?}"),
        Ok(v) => panic!("{what}: expected {code:?}, got Ok({v:?})"),
    }
}

/// A FLASH CART coupon of `quantity`.
pub(crate) async fn flash_coupon(t: &TestApp, quantity: i64) -> CouponId {
    t.coupon(
        "CART",
        Discount::new("FIXED", 1_000, None).unwrap(),
        0,
        quantity,
        IssuanceMode::Flash,
    )
    .await
}
