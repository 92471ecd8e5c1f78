//! The `Store` contract's keyset pages: each list's page holds at most `limit` items past its
//! key, in the list's order, and walking page after page from each page's last key reads
//! every item exactly once.

use super::fixtures::unique_id;
use std::sync::Arc;
use stockade_application::ports::store::{LedgerChange, NewOrder, OrderFilter, Store};
use stockade_domain::{
    Discount, LedgerKind, Money, NewCoupon, NewProduct, OrderLine, OrderStatus, Pricing, Timestamp,
    UserId,
};

const NOW: Timestamp = Timestamp::from_millis(1_767_225_600_000);

fn fresh_user() -> UserId {
    UserId::new(unique_id()).unwrap()
}

/// Walks `page` from `start` until it answers fewer than `limit`, checking each page's size
/// and order; answers every key read.
async fn walk<F, Fut>(start: Option<i64>, limit: usize, descending: bool, mut page: F) -> Vec<i64>
where
    F: FnMut(Option<i64>, usize) -> Fut,
    Fut: std::future::Future<Output = Vec<i64>>,
{
    let mut keys = Vec::new();
    let mut cursor = start;
    loop {
        let got = page(cursor, limit).await;
        assert!(got.len() <= limit, "a page of {limit} held {}", got.len());
        let in_order = got
            .windows(2)
            .all(|w| if descending { w[0] > w[1] } else { w[0] < w[1] });
        assert!(in_order, "a page out of order: {got:?}");
        if let (Some(c), Some(first)) = (cursor, got.first()) {
            assert!(
                if descending { *first < c } else { *first > c },
                "a page started at its own cursor or before it: {c} then {got:?}"
            );
        }
        keys.extend(&got);
        if got.len() < limit {
            return keys;
        }
        cursor = got.last().copied();
    }
}

/// Products and coupons by id; a user's ledger and orders newest first, filtered by state; a
/// user's coupons by id; the coupon catalogue leaves out what is not valid now or all issued.
pub async fn pages_are_keyed(store: Arc<dyn Store>) {
    let user = fresh_user();
    let mut uow = store.begin().await.unwrap();
    let mut products = Vec::new();
    for i in 0..5 {
        let p = NewProduct::new(&format!("paged {i}"), 100, 50, 10).unwrap();
        products.push(uow.products().insert(p).await.unwrap());
    }
    for i in 0..7 {
        uow.wallets()
            .append(
                LedgerChange {
                    user_id: user,
                    kind: LedgerKind::Charge,
                    amount: Money::from_trusted(10 + i),
                    reference: None,
                },
                NOW,
            )
            .await
            .unwrap();
    }
    let mut orders = Vec::new();
    for _ in 0..5 {
        let p = &products[0];
        let line = OrderLine {
            product_id: p.id,
            name: p.name.clone(),
            unit_price: p.price,
            quantity: stockade_domain::Quantity::new(1, "quantity").unwrap(),
            line_total: p.price,
            discount: Money::ZERO,
            user_coupon_id: None,
        };
        let new = NewOrder {
            user_id: user,
            pricing: Pricing {
                lines: vec![line],
                cart_coupons: Vec::new(),
                subtotal: p.price,
                discount: Money::ZERO,
                total: p.price,
            },
            created_at: NOW,
            expires_at: NOW.plus_millis(60_000),
            reference: None,
        };
        orders.push(uow.orders().insert(new).await.unwrap());
    }
    let coupon = |name: &str, quantity: i64, from: Option<Timestamp>| {
        let discount = Discount::new("FIXED", 100, None).unwrap();
        NewCoupon::new(name, "CART", discount, 0, quantity, "LOCKED", from, None).unwrap()
    };
    let open = uow.coupons().insert(coupon("open", 5, None)).await.unwrap();
    let used_up = uow
        .coupons()
        .insert(coupon("used up", 1, None))
        .await
        .unwrap();
    let later = uow
        .coupons()
        .insert(coupon("later", 5, Some(NOW.plus_millis(3_600_000))))
        .await
        .unwrap();
    let held_a = uow.coupons().issue(&open, user, NOW).await.unwrap();
    let held_b = uow.coupons().issue(&used_up, user, NOW).await.unwrap();
    assert!(uow
        .orders()
        .update_status(
            orders[1].id,
            OrderStatus::PendingPayment,
            OrderStatus::Cancelled,
            NOW
        )
        .await
        .unwrap());
    uow.commit().await.unwrap();

    // Products (other suites may add theirs in between: mine must all be read, in order).
    let first = products[0].id.get();
    let read = walk((first > 1).then(|| first - 1), 2, false, |after, limit| {
        let store = store.clone();
        async move {
            let mut uow = store.begin().await.unwrap();
            let after = after.map(|a| stockade_domain::ProductId::new(a).unwrap());
            let page = uow.products().page(after, limit).await.unwrap();
            page.iter().map(|p| p.id.get()).collect()
        }
    })
    .await;
    for p in &products {
        assert_eq!(read.iter().filter(|k| **k == p.id.get()).count(), 1);
    }

    // The ledger, newest first.
    let ledger = walk(None, 3, true, |before, limit| {
        let store = store.clone();
        async move {
            let mut uow = store.begin().await.unwrap();
            let before = before.map(|b| stockade_domain::TransactionId::new(b).unwrap());
            let page = uow
                .wallets()
                .entries_page(user, before, limit)
                .await
                .unwrap();
            page.iter().map(|e| e.id.get()).collect()
        }
    })
    .await;
    let mut uow = store.begin().await.unwrap();
    let mut all: Vec<i64> = uow
        .wallets()
        .entries(user)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id.get())
        .collect();
    drop(uow);
    all.reverse();
    assert_eq!(ledger, all);
    assert_eq!(ledger.len(), 7);

    // A user's orders, newest first, by state too.
    let filtered = |status: Option<OrderStatus>| {
        let store = store.clone();
        move |before: Option<i64>, limit: usize| {
            let store = store.clone();
            async move {
                let mut uow = store.begin().await.unwrap();
                let before = before.map(|b| stockade_domain::OrderId::new(b).unwrap());
                let filter = OrderFilter {
                    user: Some(user),
                    status,
                };
                let page = uow.orders().page(filter, before, limit).await.unwrap();
                assert!(page.iter().all(|o| o.user_id == user));
                page.iter().map(|o| o.id.get()).collect()
            }
        }
    };
    let mine = walk(None, 2, true, filtered(None)).await;
    let newest_first: Vec<i64> = orders.iter().rev().map(|o| o.id.get()).collect();
    assert_eq!(mine, newest_first);
    let cancelled = walk(None, 2, true, filtered(Some(OrderStatus::Cancelled))).await;
    assert_eq!(cancelled, vec![orders[1].id.get()]);
    let pending = walk(None, 2, true, filtered(Some(OrderStatus::PendingPayment))).await;
    assert_eq!(pending.len(), 4);
    // Anyone's orders in a state: mine are among them, in order.
    let mut uow = store.begin().await.unwrap();
    let any = OrderFilter {
        user: None,
        status: Some(OrderStatus::Cancelled),
    };
    let page = uow
        .orders()
        .page(any, Some(orders[4].id), 500)
        .await
        .unwrap();
    assert!(page.iter().all(|o| o.status == OrderStatus::Cancelled));
    assert!(page.iter().any(|o| o.id == orders[1].id));
    let everyone = uow
        .orders()
        .page(OrderFilter::default(), Some(orders[3].id), 1)
        .await
        .unwrap();
    assert_eq!(everyone.len(), 1);
    assert!(everyone[0].id < orders[3].id);

    // A user's coupons, by id.
    let held = uow
        .coupons()
        .user_coupons_page(user, None, 1)
        .await
        .unwrap();
    assert_eq!(
        held.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![held_a.id]
    );
    let rest = uow
        .coupons()
        .user_coupons_page(user, Some(held_a.id), 5)
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![held_b.id]
    );

    // Coupons: all of them, and those issuable now with their issued counts.
    let after = stockade_domain::CouponId::new(open.id.get() - 1).ok();
    let every = uow.coupons().page(None, after, 500).await.unwrap();
    let every: Vec<_> = every.iter().map(|(c, n)| (c.id, *n)).collect();
    for expected in [(open.id, 1), (used_up.id, 1), (later.id, 0)] {
        assert!(
            every.contains(&expected),
            "{expected:?} missing from {every:?}"
        );
    }
    let issuable = uow.coupons().page(Some(NOW), after, 500).await.unwrap();
    let issuable: Vec<_> = issuable.iter().map(|(c, n)| (c.id, *n)).collect();
    assert!(issuable.contains(&(open.id, 1)), "{issuable:?}");
    assert!(
        !issuable
            .iter()
            .any(|(id, _)| *id == used_up.id || *id == later.id),
        "{issuable:?}"
    );
    let first_only = uow.coupons().page(None, after, 1).await.unwrap();
    assert_eq!(first_only.len(), 1);
    assert_eq!(first_only[0].0.id, open.id);
}
