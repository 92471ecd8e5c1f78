//! Combined turns answer as serial execution does (docs/decisions/0012).
//!
//! The same generated order requests run twice: one by one on a `serial` application, and as
//! one combined turn on a `combined` one: the product's stock lock is held while the first
//! request's turn waits for it and the others queue behind it in a known order, then released.
//! Every answer (code, total, discount) must be the serial one, and both stores must end in the
//! same state. With a commit failure injected, every request of the turn fails with
//! `BACKEND_UNAVAILABLE`, nothing of it is left, and the same keyed requests run again give the
//! serial answers (their keys stayed retryable).

use crate::harness::{user, TestApp};
use proptest::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::lock::{LockError, LockGuard, LockKey, LockManager, LockOptions};
use stockade_application::ports::section::{Section, Sections};
use stockade_application::usecases::create_order::{CreateOrder, OrderSource};
use stockade_application::Stockade;
use stockade_domain::{
    CouponId, Discount, IdempotencyKey, IssuanceMode, LineRequest, ProductId, Quantity,
    UserCouponId,
};

/// A lock manager that counts its grants (a combined turn takes one; a turn split into turns
/// of one takes one per request).
#[derive(Debug)]
struct CountingLocks {
    inner: Arc<dyn LockManager>,
    grants: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl LockManager for CountingLocks {
    async fn acquire(
        &self,
        keys: &[LockKey],
        options: LockOptions,
    ) -> Result<LockGuard, LockError> {
        let guard = self.inner.acquire(keys, options).await?;
        self.grants.fetch_add(1, Ordering::SeqCst);
        Ok(guard)
    }
}

/// Counts the sections entered.
#[derive(Debug)]
struct CountingSections {
    inner: Arc<dyn Sections>,
    grants: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Sections for CountingSections {
    async fn enter(
        &self,
        keys: &[LockKey],
        options: LockOptions,
    ) -> Result<Box<dyn Section>, LockError> {
        let section = self.inner.enter(keys, options).await?;
        self.grants.fetch_add(1, Ordering::SeqCst);
        Ok(section)
    }
}

/// `t` with its lock grants counted (the grants of its sections, and those of its lock
/// manager taken directly).
pub fn counting_grants(t: TestApp) -> (TestApp, Arc<AtomicUsize>) {
    let grants = Arc::new(AtomicUsize::new(0));
    let mut ports = t.app.ports().clone();
    // Sections of their own take their keys without the ports' lock manager: count them there.
    ports.sections = ports.sections.map(|inner| {
        Arc::new(CountingSections {
            inner,
            grants: grants.clone(),
        }) as Arc<dyn Sections>
    });
    ports.locks = Arc::new(CountingLocks {
        inner: ports.locks.clone(),
        grants: grants.clone(),
    });
    let app = Stockade::new(ports, t.app.settings().clone());
    (TestApp { app, ..t }, grants)
}

/// Users of the generated requests.
const USERS: i64 = 6;

/// One generated create-order request.
#[derive(Debug, Clone)]
pub struct OrderSpec {
    /// 1..=USERS.
    pub user: i64,
    /// 1..=7 against a per-order limit of 5.
    pub quantity: i64,
    /// The CART_ITEM coupon issued to this user (1..=USERS; may be someone else's), if any.
    pub coupon_of: Option<i64>,
    pub keyed: bool,
}

pub fn order_spec() -> impl Strategy<Value = OrderSpec> {
    (
        1..=USERS,
        1..=7i64,
        prop::option::weighted(0.3, 1..=USERS),
        any::<bool>(),
    )
        .prop_map(|(user, quantity, coupon_of, keyed)| OrderSpec {
            user,
            quantity,
            coupon_of,
            keyed,
        })
}

/// What a request was answered, in a form both runs can be compared by.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Placed { total: i64, discount: i64 },
    Refused(String),
}

struct Shop {
    product: ProductId,
    /// The coupon issued to user i at index i - 1.
    coupons: Vec<UserCouponId>,
}

async fn shop(t: &TestApp, stock: i64) -> Shop {
    let product = t.product(1_000, stock, 5).await;
    let coupon: CouponId = t
        .coupon(
            "CART_ITEM",
            Discount::new("FIXED", 300, None).unwrap(),
            0,
            1_000,
            IssuanceMode::Locked,
        )
        .await;
    let mut coupons = Vec::new();
    for u in 1..=USERS {
        let issued = t.app.issue_coupon(coupon, user(u)).await.unwrap();
        coupons.push(UserCouponId::new(issued.user_coupon_id.unwrap()).unwrap());
    }
    Shop { product, coupons }
}

fn command(shop: &Shop, spec: &OrderSpec) -> CreateOrder {
    CreateOrder {
        user_id: user(spec.user),
        source: OrderSource::Lines(vec![LineRequest {
            product_id: shop.product,
            quantity: Quantity::new(spec.quantity, "quantity").unwrap(),
            user_coupon_id: spec.coupon_of.map(|u| shop.coupons[(u - 1) as usize]),
        }]),
        user_coupon_ids: vec![],
    }
}

fn key(i: usize, spec: &OrderSpec) -> Option<IdempotencyKey> {
    spec.keyed
        .then(|| IdempotencyKey::parse(&format!("combined-{i}")).unwrap())
}

async fn place(app: Stockade, cmd: CreateOrder, key: Option<IdempotencyKey>) -> Answer {
    match app.create_order(cmd, key.as_ref()).await {
        Ok(o) => Answer::Placed {
            total: o.value.total,
            discount: o.value.discount,
        },
        Err(e) => Answer::Refused(e.code().as_str().to_owned()),
    }
}

async fn serial_answers(t: &TestApp, shop: &Shop, specs: &[OrderSpec]) -> Vec<Answer> {
    let mut answers = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        answers.push(place(t.app.clone(), command(shop, spec), key(i, spec)).await);
    }
    answers
}

/// Runs `specs` as one combined turn (after a first turn of one) and answers them in order.
async fn combined_answers(t: &TestApp, shop: &Shop, specs: &[OrderSpec]) -> Vec<Answer> {
    let stock_key = LockKey::new(format!("stock:product:{}", shop.product)).unwrap();
    let held = t
        .app
        .ports()
        .locks
        .acquire(
            &[stock_key],
            LockOptions::new(Duration::from_secs(5), Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        tasks.push(tokio::spawn(place(
            t.app.clone(),
            command(shop, spec),
            key(i, spec),
        )));
        // The first request's turn takes it out of the queue and waits for the lock; each
        // later one is queued before the next is sent, so the turn takes them in this order.
        let queued = i;
        for _ in 0..2_000 {
            if t.app.combining_queue_depth() == queued && (i > 0 || settled(t).await) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(t.app.combining_queue_depth(), queued, "request {i} queued");
    }
    held.release().await.unwrap();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

/// Gives the first request's turn time to reach the held lock.
async fn settled(_t: &TestApp) -> bool {
    tokio::time::sleep(Duration::from_millis(30)).await;
    true
}

/// The stock left, and every order's (user, total, status).
async fn state(t: &TestApp, shop: &Shop) -> (i64, Vec<(i64, i64, String)>) {
    let stock = t.app.product(shop.product).await.unwrap().stock;
    let mut uow = t.app.ports().store.begin().await.unwrap();
    let mut orders: Vec<(i64, i64, String)> = uow
        .orders()
        .all()
        .await
        .unwrap()
        .iter()
        .map(|o| (o.user_id.get(), o.total.won(), o.status.as_str().to_owned()))
        .collect();
    orders.sort();
    (stock.into(), orders)
}

/// Every answer of the combined run equals the serial run's, and both end in the same state.
pub async fn combined_turn_answers_as_serial(
    serial: TestApp,
    combined: TestApp,
    specs: Vec<OrderSpec>,
    stock: i64,
) {
    let s_shop = shop(&serial, stock).await;
    let c_shop = shop(&combined, stock).await;
    let (combined, grants) = counting_grants(combined);
    let expected = serial_answers(&serial, &s_shop, &specs).await;
    let got = combined_answers(&combined, &c_shop, &specs).await;
    for (i, (e, g)) in expected.iter().zip(&got).enumerate() {
        assert_eq!(g, e, "request {i} ({:?})", specs[i]);
    }
    // The test's own hold, the first request's turn, and one turn for all the others: the
    // planned turn was written as planned, never split into turns of one.
    assert_eq!(grants.load(Ordering::SeqCst), 3, "lock grants");
    assert_eq!(
        state(&combined, &c_shop).await,
        state(&serial, &s_shop).await
    );
    combined.assert_invariants(&[]).await;
}

/// A turn whose commit fails answers every request BACKEND_UNAVAILABLE and leaves nothing;
/// the keyed requests sent again then get the serial answers.
pub async fn failed_turn_leaves_nothing(serial: TestApp, combined: TestApp, specs: Vec<OrderSpec>) {
    let stock = 20;
    let s_shop = shop(&serial, stock).await;
    let c_shop = shop(&combined, stock).await;
    let before = state(&combined, &c_shop).await;
    combined
        .backend
        .store
        .faults()
        .fail_commit
        .store(true, Ordering::SeqCst);
    let got = combined_answers(&combined, &c_shop, &specs).await;
    combined.backend.store.faults().clear();
    for (i, g) in got.iter().enumerate() {
        assert_eq!(
            g,
            &Answer::Refused("BACKEND_UNAVAILABLE".into()),
            "request {i} ({:?})",
            specs[i]
        );
    }
    assert_eq!(
        state(&combined, &c_shop).await,
        before,
        "nothing of the turn is left"
    );
    let expected = serial_answers(&serial, &s_shop, &specs).await;
    let again = serial_answers(&combined, &c_shop, &specs).await;
    assert_eq!(again, expected, "the keys stayed retryable");
    combined.assert_invariants(&[]).await;
}

fn one(product: ProductId, u: i64, quantity: i64) -> CreateOrder {
    CreateOrder {
        user_id: user(u),
        source: OrderSource::Lines(vec![LineRequest {
            product_id: product,
            quantity: Quantity::new(quantity, "quantity").unwrap(),
            user_coupon_id: None,
        }]),
        user_coupon_ids: vec![],
    }
}

/// The code of an order's refusal, or "OK".
async fn order_code(t: &TestApp, product: ProductId, u: i64, quantity: i64) -> String {
    match t.app.create_order(one(product, u, quantity), None).await {
        Ok(_) => "OK".into(),
        Err(e) => e.code().as_str().to_owned(),
    }
}

/// Once a product sold out, orders for it are refused without a lock grant (nor a unit of work);
/// a cancelled order and a stock edit each bring its orders back at once; a request over the
/// per-order limit still gets that answer from its turn. A LOCKED coupon that sold out is
/// refused the same way.
pub async fn sold_out_is_refused_without_a_lock(t: TestApp) {
    let (t, grants) = counting_grants(t);
    let grants_now = || grants.load(Ordering::SeqCst);
    let product = t.product(1_000, 2, 5).await;
    let first = t.app.create_order(one(product, 1, 2), None).await.unwrap();
    let before = grants_now();
    assert_eq!(order_code(&t, product, 2, 1).await, "INSUFFICIENT_STOCK");
    assert_eq!(grants_now(), before, "refused without a lock");
    assert_eq!(
        order_code(&t, product, 2, 6).await,
        "EXCEEDED_LIMITED_QUANTITY"
    );
    assert_eq!(grants_now(), before + 1, "over the limit: judged by a turn");

    t.app
        .cancel_order(
            user(1),
            stockade_domain::OrderId::new(first.value.order_id).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        order_code(&t, product, 3, 1).await,
        "OK",
        "cancelled: stock is back"
    );
    assert_eq!(order_code(&t, product, 4, 1).await, "OK");
    let before = grants_now();
    assert_eq!(order_code(&t, product, 5, 1).await, "INSUFFICIENT_STOCK");
    assert_eq!(grants_now(), before);
    t.app.set_stock(product, 1).await.unwrap();
    assert_eq!(order_code(&t, product, 5, 1).await, "OK", "restocked");

    let coupon = t
        .coupon(
            "CART",
            Discount::new("FIXED", 100, None).unwrap(),
            0,
            2,
            IssuanceMode::Locked,
        )
        .await;
    for u in 1..=3 {
        let _ = t.app.issue_coupon(coupon, user(u)).await;
    }
    let before = grants_now();
    let late = t.app.issue_coupon(coupon, user(9)).await;
    assert_eq!(late.unwrap_err().code().as_str(), "COUPON_SOLD_OUT");
    assert_eq!(
        grants_now(),
        before,
        "a sold-out LOCKED coupon is refused without a lock"
    );
    t.assert_invariants(&[]).await;
}

/// Two instances on one database: `a` knows the product sold out (and its marks would last a
/// minute), `b` restocks it, and `a` takes orders again as soon as the change reaches it.
pub async fn a_restock_elsewhere_reaches_every_instance(a: TestApp, b: TestApp) {
    let (a, grants) = counting_grants(a);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let follower = {
        let app = a.app.clone();
        tokio::spawn(async move { app.follow_changes(rx).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let product = a.product(1_000, 1, 5).await;
    assert_eq!(order_code(&a, product, 1, 1).await, "OK");
    let before = grants.load(Ordering::SeqCst);
    assert_eq!(order_code(&a, product, 2, 1).await, "INSUFFICIENT_STOCK");
    assert_eq!(grants.load(Ordering::SeqCst), before, "a knows it sold out");
    b.app.set_stock(product, 3).await.unwrap();
    let mut answer = String::new();
    for _ in 0..100 {
        answer = order_code(&a, product, 3, 1).await;
        if answer == "OK" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(answer, "OK", "the restock on b reached a within 2 s");
    stop.send(true).unwrap();
    follower.await.unwrap();
}
