//! The sold-out fast path (docs/decisions/0012): refuse without a lock or a unit of work what
//! is known to have nothing left.
//!
//! The marks can only err towards trying:
//! - A product is marked by a turn that left (or found) its stock at 0, and only if no restock
//!   was heard of since that turn began (a generation counter), so a turn that read the stock
//!   before a restock committed cannot mark it afterwards.
//! - A mark is dropped when this instance restocks the product (after the commit) and when the
//!   change feed tells of a restock anywhere; it lives at most `Settings::sold_out_ttl` in any
//!   case, in case a change was lost on its way.
//! - A LOCKED coupon is marked when a turn answers `COUPON_SOLD_OUT`: its quantity never grows,
//!   so the mark lasts (until the policies are forgotten).
//!
//! The store stays the authority: a request that passes the fast path is judged by its turn.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use stockade_domain::{CouponId, ProductId};
use tokio::time::Instant;

#[derive(Debug)]
struct Mark {
    /// The product's per-order limit: a request over it gets that refusal from its turn.
    max_per_order: u32,
    until: Instant,
}

/// What this instance knows to be sold out.
#[derive(Debug)]
pub(crate) struct SoldOut {
    products: Mutex<HashMap<ProductId, Mark>>,
    coupons: Mutex<HashSet<CouponId>>,
    /// Moves on every restock heard of.
    generation: AtomicU64,
    ttl: Duration,
}

impl SoldOut {
    pub(crate) fn new(ttl: Duration) -> Self {
        SoldOut {
            products: Mutex::default(),
            coupons: Mutex::default(),
            generation: AtomicU64::new(0),
            ttl,
        }
    }

    /// Read before a turn reads any stock; pass to [`SoldOut::mark`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Whether an order of `quantity` of `product` can be refused as out of stock now.
    pub(crate) fn refuses(&self, product: ProductId, quantity: u32) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let mut products = self.products.lock();
        match products.get(&product) {
            Some(m) if m.until > Instant::now() => quantity <= m.max_per_order,
            Some(_) => {
                products.remove(&product);
                false
            }
            None => false,
        }
    }

    /// Marks `product` sold out, unless a restock was heard of since `generation` was read.
    pub(crate) fn mark(&self, product: ProductId, max_per_order: u32, generation: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut products = self.products.lock();
        // Checked under the lock that `forget` also takes: a restock heard of after this check
        // removes the mark made here.
        if self.generation.load(Ordering::SeqCst) == generation {
            products.insert(
                product,
                Mark {
                    max_per_order,
                    until: Instant::now() + self.ttl,
                },
            );
        }
    }

    /// Drops `product`'s mark (it has stock again, or may have).
    pub(crate) fn forget(&self, product: ProductId) {
        let mut products = self.products.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        products.remove(&product);
    }

    /// Drops every product mark.
    pub(crate) fn forget_all(&self) {
        let mut products = self.products.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        products.clear();
    }

    pub(crate) fn coupon_sold_out(&self, coupon: CouponId) -> bool {
        self.coupons.lock().contains(&coupon)
    }

    pub(crate) fn mark_coupon(&self, coupon: CouponId) {
        self.coupons.lock().insert(coupon);
    }

    /// Drops every coupon mark (the store was reset underneath).
    pub(crate) fn forget_coupons(&self) {
        self.coupons.lock().clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(id: i64) -> ProductId {
        ProductId::new(id).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_mark_refuses_until_forgotten_or_expired() {
        let s = SoldOut::new(Duration::from_secs(2));
        let g = s.generation();
        s.mark(p(1), 5, g);
        assert!(s.refuses(p(1), 1));
        assert!(!s.refuses(p(1), 6), "over the limit goes to its turn");
        assert!(!s.refuses(p(2), 1));
        s.forget(p(1));
        assert!(!s.refuses(p(1), 1));
        s.mark(p(1), 5, s.generation());
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(!s.refuses(p(1), 1), "expired");
    }

    #[tokio::test]
    async fn a_turn_that_began_before_a_restock_cannot_mark() {
        let s = SoldOut::new(Duration::from_secs(2));
        let before = s.generation();
        s.forget(p(1));
        s.mark(p(1), 5, before);
        assert!(!s.refuses(p(1), 1));
        s.mark(p(3), 5, s.generation());
        s.forget_all();
        assert!(!s.refuses(p(3), 1));
    }
}
