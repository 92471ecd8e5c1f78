//! What the store contract suites share: unique ids, a fixed time, units, orders.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};
use stockade_application::ports::store::{NewOrder, Store, UnitOfWork};
use stockade_domain::{Money, OrderLine, Pricing, Product, Quantity, Timestamp, UserId};

/// A positive id unique in this process and (very likely) across processes started at
/// different microseconds, so suites sharing one backend never collide.
pub fn unique_id() -> i64 {
    static BASE: OnceLock<i64> = OnceLock::new();
    static NEXT: AtomicI64 = AtomicI64::new(0);
    let base = *BASE.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| i64::try_from(d.as_micros()).unwrap_or(1))
    });
    base + NEXT.fetch_add(1, Ordering::Relaxed)
}

/// 2026-01-01T00:00:00Z.
pub(crate) const NOW: Timestamp = Timestamp::from_millis(1_767_225_600_000);

pub(crate) fn fresh_user() -> UserId {
    UserId::new(unique_id()).unwrap()
}

pub(crate) fn qty(n: i64) -> Quantity {
    Quantity::new(n, "quantity").unwrap()
}

pub(crate) fn won(n: i64) -> Money {
    Money::from_trusted(n)
}

pub(crate) async fn unit(store: &Arc<dyn Store>) -> Box<dyn UnitOfWork> {
    store.begin().await.expect("a unit of work")
}

pub(crate) fn new_order(user: UserId, product: &Product, n: i64) -> NewOrder {
    let quantity = qty(n);
    let total = won(product.price.won() * n);
    NewOrder {
        user_id: user,
        pricing: Pricing {
            lines: vec![OrderLine {
                product_id: product.id,
                name: product.name.clone(),
                unit_price: product.price,
                quantity,
                line_total: total,
                discount: Money::ZERO,
                user_coupon_id: None,
            }],
            cart_coupons: Vec::new(),
            subtotal: total,
            discount: Money::ZERO,
            total,
        },
        created_at: NOW,
        expires_at: NOW.plus_millis(15 * 60 * 1000),
        reference: None,
    }
}
