//! The `Store` contract: units of work commit atomically or not at all, guarded operations are
//! conditional inside the backend, ledger references are unique, fencing tokens never go back.
//!
//! Every check works on rows it creates itself (fresh products, coupons, users and lock keys), so
//! the suite can share one database with other tests. A unit whose operation was refused is
//! dropped rather than reused: a database may abort the transaction after a failed statement.

pub use super::fixtures::unique_id;
use super::fixtures::{fresh_user, new_order, qty, unit, won, NOW};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use stockade_application::ports::lock::{Fence, FencingToken, LockKey};
use stockade_application::ports::store::{LedgerChange, NewOrder, Store, StoreError};
use stockade_domain::{
    Coupon, Discount, ErrorCode, LedgerKind, Money, NewCoupon, NewProduct, Order, OrderId,
    OrderStatus, PaymentStatus, Product, ProductId, Timestamp, UserCouponId, UserCouponStatus,
    UserId,
};

fn rejected_code(r: Result<impl std::fmt::Debug, StoreError>) -> ErrorCode {
    match r {
        Err(StoreError::Rejected(e)) => e.code(),
        other => panic!("expected a domain refusal, got {other:?}"),
    }
}

async fn product_with_stock(store: &Arc<dyn Store>, stock: i64) -> Product {
    let mut uow = unit(store).await;
    let p = uow
        .products()
        .insert(NewProduct::new("contract product", 1_000, stock, 10).unwrap())
        .await
        .unwrap();
    uow.commit().await.unwrap();
    p
}

async fn stock_of(store: &Arc<dyn Store>, id: ProductId) -> u32 {
    let mut uow = unit(store).await;
    uow.products()
        .get(id)
        .await
        .unwrap()
        .expect("product")
        .stock
}

fn charge(user: UserId, amount: i64, reference: Option<&str>) -> LedgerChange {
    change(user, LedgerKind::Charge, amount, reference)
}

fn change(user: UserId, kind: LedgerKind, amount: i64, reference: Option<&str>) -> LedgerChange {
    LedgerChange {
        user_id: user,
        kind,
        amount: won(amount),
        reference: reference.map(str::to_owned),
    }
}

async fn coupon_with_quantity(store: &Arc<dyn Store>, quantity: i64) -> Coupon {
    let mut uow = unit(store).await;
    let new = NewCoupon::new(
        "contract coupon",
        "CART",
        Discount::new("FIXED", 100, None).unwrap(),
        0,
        quantity,
        "LOCKED",
        None,
        None,
    )
    .unwrap();
    let c = uow.coupons().insert(new).await.unwrap();
    uow.commit().await.unwrap();
    c
}

fn fence(key: &str, token: u64) -> Fence {
    Fence {
        key: LockKey::new(key).unwrap(),
        token: FencingToken(token),
    }
}

/// Writes of a unit dropped without commit are never visible; within the unit they read back.
pub async fn dropped_unit_leaves_nothing(store: Arc<dyn Store>) {
    let user = fresh_user();
    let reference = format!("contract:charge:{}", unique_id());
    let mut uow = unit(&store).await;
    let product = uow
        .products()
        .insert(NewProduct::new("ghost", 500, 7, 5).unwrap())
        .await
        .unwrap();
    uow.wallets()
        .append(charge(user, 1_000, Some(&reference)), NOW)
        .await
        .unwrap();
    let order = uow
        .orders()
        .insert(new_order(user, &product, 1))
        .await
        .unwrap();
    // The unit reads back what it wrote.
    assert_eq!(
        uow.products().get(product.id).await.unwrap().as_ref(),
        Some(&product)
    );
    assert_eq!(uow.wallets().balance(user).await.unwrap(), won(1_000));
    assert!(uow.orders().get(order.id).await.unwrap().is_some());
    drop(uow);

    let mut uow = unit(&store).await;
    assert_eq!(uow.products().get(product.id).await.unwrap(), None);
    assert_eq!(uow.wallets().balance(user).await.unwrap(), Money::ZERO);
    assert!(uow.wallets().entries(user).await.unwrap().is_empty());
    assert_eq!(
        uow.wallets()
            .find_entry(&reference, LedgerKind::Charge)
            .await
            .unwrap(),
        None
    );
    assert_eq!(uow.orders().get(order.id).await.unwrap(), None);
    assert!(
        !uow.wallets()
            .audit()
            .await
            .unwrap()
            .iter()
            .any(|a| a.user_id == user),
        "a rolled-back wallet shows in the audit"
    );
}

/// Writes of a committed unit are all visible to the next unit.
pub async fn commit_makes_writes_visible(store: Arc<dyn Store>) {
    let user = fresh_user();
    let reference = format!("contract:charge:{}", unique_id());
    let mut uow = unit(&store).await;
    let product = uow
        .products()
        .insert(NewProduct::new("kept", 500, 7, 5).unwrap())
        .await
        .unwrap();
    let entry = uow
        .wallets()
        .append(charge(user, 1_000, Some(&reference)), NOW)
        .await
        .unwrap();
    let order = uow
        .orders()
        .insert(new_order(user, &product, 2))
        .await
        .unwrap();
    uow.commit().await.unwrap();

    let mut uow = unit(&store).await;
    assert_eq!(uow.products().get(product.id).await.unwrap(), Some(product));
    assert_eq!(uow.wallets().balance(user).await.unwrap(), won(1_000));
    assert_eq!(
        uow.wallets().entries(user).await.unwrap(),
        vec![entry.clone()]
    );
    assert_eq!(
        uow.wallets()
            .find_entry(&reference, LedgerKind::Charge)
            .await
            .unwrap(),
        Some(entry)
    );
    let stored: Order = uow.orders().get(order.id).await.unwrap().expect("order");
    assert_eq!(stored, order);
    assert_eq!(stored.status, OrderStatus::PendingPayment);
}

/// `deduct_stock` refuses to go below zero with `INSUFFICIENT_STOCK` and leaves stock as it was.
pub async fn deduct_stock_never_below_zero(store: Arc<dyn Store>) {
    let product = product_with_stock(&store, 3).await;

    let mut uow = unit(&store).await;
    uow.products()
        .deduct_stock(product.id, qty(2))
        .await
        .unwrap();
    uow.commit().await.unwrap();
    assert_eq!(stock_of(&store, product.id).await, 1);

    let mut uow = unit(&store).await;
    let r = uow.products().deduct_stock(product.id, qty(2)).await;
    assert_eq!(rejected_code(r), ErrorCode::InsufficientStock);
    drop(uow);
    assert_eq!(
        stock_of(&store, product.id).await,
        1,
        "a refused deduction took stock"
    );

    let mut uow = unit(&store).await;
    uow.products()
        .deduct_stock(product.id, qty(1))
        .await
        .unwrap();
    uow.commit().await.unwrap();
    assert_eq!(stock_of(&store, product.id).await, 0);

    let mut uow = unit(&store).await;
    let r = uow.products().deduct_stock(product.id, qty(1)).await;
    assert_eq!(rejected_code(r), ErrorCode::InsufficientStock);
    drop(uow);
    assert_eq!(stock_of(&store, product.id).await, 0);

    // Restoring puts units back.
    let mut uow = unit(&store).await;
    uow.products()
        .restore_stock(product.id, qty(2))
        .await
        .unwrap();
    uow.commit().await.unwrap();
    assert_eq!(stock_of(&store, product.id).await, 2);
}

/// 200 concurrent units each deduct one unit of a stock of 150: exactly 150 succeed.
pub async fn concurrent_deductions_stop_at_zero(store: Arc<dyn Store>) {
    let product = product_with_stock(&store, 150).await;
    let sold = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (store, sold, refused) = (store.clone(), sold.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let mut uow = unit(&store).await;
            match uow.products().deduct_stock(product.id, qty(1)).await {
                Ok(()) => {
                    uow.commit().await.unwrap();
                    sold.fetch_add(1, Ordering::SeqCst);
                }
                Err(StoreError::Rejected(e)) if e.code() == ErrorCode::InsufficientStock => {
                    refused.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => panic!("unexpected error: {e:?}"),
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(sold.load(Ordering::SeqCst), 150);
    assert_eq!(refused.load(Ordering::SeqCst), 50);
    assert_eq!(stock_of(&store, product.id).await, 0);
}

/// A wallet never goes below zero, and a second entry with the same `(reference, kind)` is a
/// `Conflict`; neither refusal records anything.
pub async fn wallet_append_guards(store: Arc<dyn Store>) {
    let user = fresh_user();
    let charge_ref = format!("contract:charge:{}", unique_id());

    let mut uow = unit(&store).await;
    let first = uow
        .wallets()
        .append(charge(user, 1_000, Some(&charge_ref)), NOW)
        .await
        .unwrap();
    assert_eq!(first.balance_after, won(1_000));
    assert_eq!(first.kind, LedgerKind::Charge);
    uow.commit().await.unwrap();

    // Overdraft.
    let mut uow = unit(&store).await;
    let r = uow
        .wallets()
        .append(change(user, LedgerKind::Use, 1_500, None), NOW)
        .await;
    assert_eq!(rejected_code(r), ErrorCode::InsufficientBalance);
    drop(uow);

    // The same reference and kind again.
    let mut uow = unit(&store).await;
    let r = uow
        .wallets()
        .append(charge(user, 10, Some(&charge_ref)), NOW)
        .await;
    assert!(
        matches!(r, Err(StoreError::Conflict(_))),
        "duplicate reference accepted: {r:?}"
    );
    drop(uow);

    let mut uow = unit(&store).await;
    assert_eq!(uow.wallets().balance(user).await.unwrap(), won(1_000));
    assert_eq!(uow.wallets().entries(user).await.unwrap(), vec![first]);
    drop(uow);

    // The same reference with another kind is a different entry; an exact spend is allowed.
    let mut uow = unit(&store).await;
    uow.wallets()
        .append(
            change(user, LedgerKind::Refund, 200, Some(&charge_ref)),
            NOW,
        )
        .await
        .unwrap();
    let spent = uow
        .wallets()
        .append(change(user, LedgerKind::Use, 1_200, None), NOW)
        .await
        .unwrap();
    assert_eq!(spent.balance_after, Money::ZERO);
    uow.commit().await.unwrap();

    let mut uow = unit(&store).await;
    assert_eq!(uow.wallets().balance(user).await.unwrap(), Money::ZERO);
    let r = uow
        .wallets()
        .append(change(user, LedgerKind::Use, 1, None), NOW)
        .await;
    assert_eq!(rejected_code(r), ErrorCode::InsufficientBalance);
}

/// For every wallet the balance equals the sum of its ledger, and the audit's per-kind totals
/// are what was recorded.
pub async fn audit_balance_equals_ledger_sum(store: Arc<dyn Store>) {
    let users: Vec<UserId> = (0..3).map(|_| fresh_user()).collect();
    // (charges, uses, refunds) per user.
    let mut expected = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let i = i64::try_from(i).unwrap();
        let mut uow = unit(&store).await;
        let w = uow.wallets();
        w.append(charge(*user, 5_000 + i, None), NOW).await.unwrap();
        w.append(charge(*user, 300, None), NOW).await.unwrap();
        w.append(change(*user, LedgerKind::Use, 2_000 + i, None), NOW)
            .await
            .unwrap();
        w.append(change(*user, LedgerKind::Refund, 700, None), NOW)
            .await
            .unwrap();
        uow.commit().await.unwrap();
        expected.push((5_300 + i, 2_000 + i, 700));
    }
    // A rolled-back entry must not show in the audit either.
    let mut uow = unit(&store).await;
    uow.wallets()
        .append(charge(users[0], 999, None), NOW)
        .await
        .unwrap();
    drop(uow);

    let mut uow = unit(&store).await;
    let audit = uow.wallets().audit().await.unwrap();
    for a in &audit {
        assert_eq!(a.balance, a.ledger_sum, "balance != sum(ledger): {a:?}");
        assert_eq!(a.ledger_sum, a.charges - a.uses + a.refunds, "{a:?}");
    }
    for (user, (charges, uses, refunds)) in users.iter().zip(expected) {
        let a = audit
            .iter()
            .find(|a| a.user_id == *user)
            .expect("the wallet is audited");
        assert_eq!((a.charges, a.uses, a.refunds), (charges, uses, refunds));
        let balance = uow.wallets().balance(*user).await.unwrap();
        assert_eq!(balance.won(), charges - uses + refunds);
        assert_eq!(a.balance, balance.won());
        let entries = uow.wallets().entries(*user).await.unwrap();
        assert_eq!(entries.len(), 4);
        assert_eq!(stockade_domain::wallet::ledger_sum(&entries), balance.won());
        assert_eq!(entries.last().unwrap().balance_after, balance);
    }
}

/// `issue` refuses a second coupon to one user and any past the quantity; a refused issue
/// records nothing, and an issue clears a failure recorded for the pair.
pub async fn coupon_issue_guards(store: Arc<dyn Store>) {
    let coupon = coupon_with_quantity(&store, 2).await;
    let (u1, u2, u3) = (fresh_user(), fresh_user(), fresh_user());

    let mut uow = unit(&store).await;
    let uc = uow.coupons().issue(&coupon, u1, NOW).await.unwrap();
    assert_eq!(
        (uc.coupon_id, uc.user_id, uc.status),
        (coupon.id, u1, UserCouponStatus::Issued)
    );
    uow.commit().await.unwrap();

    let mut uow = unit(&store).await;
    let r = uow.coupons().issue(&coupon, u1, NOW).await;
    assert_eq!(rejected_code(r), ErrorCode::CouponAlreadyIssued);
    drop(uow);

    let mut uow = unit(&store).await;
    uow.coupons()
        .record_failure(coupon.id, u2, "contract: persist failed", NOW)
        .await
        .unwrap();
    uow.commit().await.unwrap();
    let mut uow = unit(&store).await;
    assert_eq!(uow.coupons().failures(coupon.id).await.unwrap(), vec![u2]);
    uow.coupons().issue(&coupon, u2, NOW).await.unwrap();
    uow.commit().await.unwrap();

    let mut uow = unit(&store).await;
    let r = uow.coupons().issue(&coupon, u3, NOW).await;
    assert_eq!(rejected_code(r), ErrorCode::CouponSoldOut);
    drop(uow);

    let mut uow = unit(&store).await;
    let c = uow.coupons();
    assert_eq!(c.issued_count(coupon.id).await.unwrap(), 2);
    let holders: BTreeSet<UserId> = c.holders(coupon.id).await.unwrap().into_iter().collect();
    assert_eq!(holders, BTreeSet::from([u1, u2]));
    assert!(c.failures(coupon.id).await.unwrap().is_empty());
    assert!(c.user_coupons(u3).await.unwrap().is_empty());
    let mine = c.user_coupons(u1).await.unwrap();
    assert_eq!(mine, vec![uc.clone()]);
    assert_eq!(c.get_user_coupon(uc.id).await.unwrap(), Some(uc));
}

/// `issue_batch` issues to the users who hold none yet (a user listed twice counts once), all
/// or nothing: a batch whose new holders would pass the quantity issues none of them. It clears
/// the failures of those it issues to, and each coupon carries its own reservation time.
pub async fn coupon_issue_batch(store: Arc<dyn Store>) {
    let coupon = coupon_with_quantity(&store, 3).await;
    let (u1, u2, u3, u4) = (fresh_user(), fresh_user(), fresh_user(), fresh_user());
    let later = NOW.plus_millis(7_000);

    let mut uow = unit(&store).await;
    uow.coupons().issue(&coupon, u1, NOW).await.unwrap();
    uow.coupons()
        .record_failure(coupon.id, u2, "contract: persist failed", NOW)
        .await
        .unwrap();
    uow.commit().await.unwrap();

    let mut uow = unit(&store).await;
    assert_eq!(uow.coupons().issue_batch(&coupon, &[]).await.unwrap(), 0);
    let n = uow
        .coupons()
        .issue_batch(&coupon, &[(u2, later), (u1, NOW), (u2, NOW)])
        .await
        .unwrap();
    assert_eq!(
        n, 1,
        "u1 held it already and u2 is listed twice (the first listing counts)"
    );
    uow.commit().await.unwrap();

    let mut uow = unit(&store).await;
    let r = uow
        .coupons()
        .issue_batch(&coupon, &[(u3, NOW), (u4, NOW)])
        .await;
    assert_eq!(rejected_code(r.map(|_| ())), ErrorCode::CouponSoldOut);
    drop(uow);

    let mut uow = unit(&store).await;
    let c = uow.coupons();
    assert_eq!(c.issued_count(coupon.id).await.unwrap(), 2);
    assert!(c.user_coupons(u3).await.unwrap().is_empty());
    assert!(c.failures(coupon.id).await.unwrap().is_empty());
    let mine = c.user_coupons(u2).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0].status, mine[0].issued_at, mine[0].expires_at),
        (UserCouponStatus::Issued, later, coupon.expiry_for(later))
    );
    assert_eq!(c.issue_batch(&coupon, &[(u3, NOW)]).await.unwrap(), 1);
    uow.commit().await.unwrap();

    let mut uow = unit(&store).await;
    let c = uow.coupons();
    assert_eq!(
        c.issue_batch(&coupon, &[(u1, NOW), (u3, NOW)])
            .await
            .unwrap(),
        0,
        "holders only: nothing new, so not sold out"
    );
    assert_eq!(c.issued_count(coupon.id).await.unwrap(), 3);
    let holders: BTreeSet<UserId> = c.holders(coupon.id).await.unwrap().into_iter().collect();
    assert_eq!(holders, BTreeSet::from([u1, u2, u3]));
}

/// Batches of 10 users from 40 concurrent units on a coupon of quantity 100, each batch sharing
/// three users with the next: never more than 100 issued, each to one user once, every
/// committed batch in full, and a refusal only when fewer than 10 were left. Batches holding
/// the same users never deadlock one another (no unit fails with contention).
pub async fn concurrent_issue_batches_stop_at_quantity(store: Arc<dyn Store>) {
    let coupon = Arc::new(coupon_with_quantity(&store, 100).await);
    let users: Vec<UserId> = (0..300).map(|_| fresh_user()).collect();
    let mut tasks = Vec::new();
    for b in 0..40_usize {
        // Batch b takes users 7b .. 7b + 10: each overlaps the next in three users.
        let claims: Vec<(UserId, Timestamp)> =
            users[7 * b..7 * b + 10].iter().map(|u| (*u, NOW)).collect();
        let (store, coupon) = (store.clone(), coupon.clone());
        tasks.push(tokio::spawn(async move {
            let mut uow = unit(&store).await;
            match uow.coupons().issue_batch(&coupon, &claims).await {
                Ok(_) => {
                    uow.commit().await.unwrap();
                    Some(claims)
                }
                Err(StoreError::Rejected(e)) if e.code() == ErrorCode::CouponSoldOut => None,
                Err(e) => panic!("unexpected error: {e:?}"),
            }
        }));
    }
    let mut committed = Vec::new();
    for t in tasks {
        committed.extend(t.await.unwrap());
    }
    let mut uow = unit(&store).await;
    let c = uow.coupons();
    let issued = c.issued_count(coupon.id).await.unwrap();
    let holders = c.holders(coupon.id).await.unwrap();
    let distinct: BTreeSet<UserId> = holders.iter().copied().collect();
    assert!((91..=100).contains(&issued), "{issued}");
    assert_eq!(holders.len(), issued as usize);
    assert_eq!(distinct.len(), holders.len());
    for claims in committed {
        for (u, _) in claims {
            assert!(distinct.contains(&u), "a committed batch lost {u}");
        }
    }
}

/// 60 concurrent units issuing a coupon of quantity 20 to distinct users: exactly 20 succeed.
pub async fn concurrent_issue_stops_at_quantity(store: Arc<dyn Store>) {
    let coupon = Arc::new(coupon_with_quantity(&store, 20).await);
    let issued = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..60 {
        let (store, coupon, issued) = (store.clone(), coupon.clone(), issued.clone());
        tasks.push(tokio::spawn(async move {
            let mut uow = unit(&store).await;
            match uow.coupons().issue(&coupon, fresh_user(), NOW).await {
                Ok(_) => {
                    uow.commit().await.unwrap();
                    issued.fetch_add(1, Ordering::SeqCst);
                }
                Err(StoreError::Rejected(e)) if e.code() == ErrorCode::CouponSoldOut => {}
                Err(e) => panic!("unexpected error: {e:?}"),
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(issued.load(Ordering::SeqCst), 20);
    let mut uow = unit(&store).await;
    assert_eq!(uow.coupons().issued_count(coupon.id).await.unwrap(), 20);
}

/// `set_state` and the `update_status` methods change a row only when it is in `from`.
pub async fn conditional_transitions(store: Arc<dyn Store>) {
    let user = fresh_user();
    let coupon = coupon_with_quantity(&store, 1).await;
    let product = product_with_stock(&store, 10).await;
    let later = NOW.plus_millis(5_000);

    let mut uow = unit(&store).await;
    let uc = uow.coupons().issue(&coupon, user, NOW).await.unwrap();
    let order = uow
        .orders()
        .insert(new_order(user, &product, 1))
        .await
        .unwrap();
    let payment = uow
        .payments()
        .insert(&order, order.total, Some("pay:1:key"), NOW)
        .await
        .unwrap();
    assert_eq!(payment.status, PaymentStatus::Pending);
    assert_eq!(payment.reference.as_deref(), Some("pay:1:key"));
    uow.commit().await.unwrap();

    // User coupons.
    let mut uow = unit(&store).await;
    let c = uow.coupons();
    let wrong = c
        .set_state(
            uc.id,
            UserCouponStatus::Used,
            UserCouponStatus::Issued,
            None,
        )
        .await
        .unwrap();
    assert!(!wrong, "moved a coupon that was not in `from`");
    assert!(c
        .set_state(
            uc.id,
            UserCouponStatus::Issued,
            UserCouponStatus::Used,
            Some(order.id)
        )
        .await
        .unwrap());
    assert!(!c
        .set_state(
            uc.id,
            UserCouponStatus::Issued,
            UserCouponStatus::Used,
            Some(order.id)
        )
        .await
        .unwrap());
    let missing = UserCouponId::new(i64::MAX).unwrap();
    assert!(!c
        .set_state(
            missing,
            UserCouponStatus::Issued,
            UserCouponStatus::Used,
            None
        )
        .await
        .unwrap());
    uow.commit().await.unwrap();
    let mut uow = unit(&store).await;
    let used = uow.coupons().get_user_coupon(uc.id).await.unwrap().unwrap();
    assert_eq!(
        (used.status, used.order_id),
        (UserCouponStatus::Used, Some(order.id))
    );
    assert!(uow
        .coupons()
        .set_state(
            uc.id,
            UserCouponStatus::Used,
            UserCouponStatus::Issued,
            None
        )
        .await
        .unwrap());
    uow.commit().await.unwrap();
    let mut uow = unit(&store).await;
    let back = uow.coupons().get_user_coupon(uc.id).await.unwrap().unwrap();
    assert_eq!(
        (back.status, back.order_id),
        (UserCouponStatus::Issued, None)
    );
    drop(uow);

    // Orders.
    let mut uow = unit(&store).await;
    let o = uow.orders();
    assert!(!o
        .update_status(
            order.id,
            OrderStatus::Cancelled,
            OrderStatus::Expired,
            later
        )
        .await
        .unwrap());
    assert!(o
        .update_status(
            order.id,
            OrderStatus::PendingPayment,
            OrderStatus::Paid,
            later
        )
        .await
        .unwrap());
    assert!(!o
        .update_status(
            order.id,
            OrderStatus::PendingPayment,
            OrderStatus::Cancelled,
            later
        )
        .await
        .unwrap());
    uow.commit().await.unwrap();
    let mut uow = unit(&store).await;
    let paid = uow.orders().get(order.id).await.unwrap().unwrap();
    assert_eq!(paid.status, OrderStatus::Paid);
    drop(uow);

    // Payments.
    let mut uow = unit(&store).await;
    let p = uow.payments();
    assert!(p
        .update_status(
            payment.id,
            PaymentStatus::Pending,
            PaymentStatus::Approved,
            later
        )
        .await
        .unwrap());
    assert!(!p
        .update_status(
            payment.id,
            PaymentStatus::Pending,
            PaymentStatus::Failed,
            later
        )
        .await
        .unwrap());
    uow.commit().await.unwrap();
    let mut uow = unit(&store).await;
    let payments = uow.payments().for_order(order.id).await.unwrap();
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status, PaymentStatus::Approved);
    assert_eq!(payments[0].reference.as_deref(), Some("pay:1:key"));
}

/// An order placed under an idempotency reference is found by it, and a second order with the
/// same reference is refused (so a repeated keyed request cannot place two).
pub async fn order_reference_is_unique(store: Arc<dyn Store>) {
    let product = product_with_stock(&store, 10).await;
    let user = UserId::new(unique_id()).unwrap();
    let reference = format!("order:{user}:key-{}", unique_id());
    let mut uow = unit(&store).await;
    let first = uow
        .orders()
        .insert(NewOrder {
            reference: Some(reference.clone()),
            ..new_order(user, &product, 1)
        })
        .await
        .unwrap();
    uow.commit().await.unwrap();
    let mut uow = unit(&store).await;
    let again = uow
        .orders()
        .insert(NewOrder {
            reference: Some(reference.clone()),
            ..new_order(user, &product, 2)
        })
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict("order reference"))),
        "{again:?}"
    );
    drop(uow);
    let mut uow = unit(&store).await;
    let found = uow.orders().find_by_reference(&reference).await.unwrap();
    assert_eq!(found.map(|o| o.id), Some(first.id));
    assert!(uow
        .orders()
        .find_by_reference("order:none")
        .await
        .unwrap()
        .is_none());
    // Orders without a reference never collide.
    uow.orders()
        .insert(new_order(user, &product, 1))
        .await
        .unwrap();
    uow.orders()
        .insert(new_order(user, &product, 1))
        .await
        .unwrap();
}

/// Issuing to several users in turn answers each as serial issues would: the coupon, or
/// ALREADY_ISSUED (held before, or listed earlier), or SOLD_OUT once the quantity is reached;
/// refusals write nothing and the count moves by exactly the number issued.
pub async fn coupon_issue_each(store: Arc<dyn Store>) {
    let coupon = coupon_with_quantity(&store, 3).await;
    let (u1, u2, u3, u4, u5) = (
        fresh_user(),
        fresh_user(),
        fresh_user(),
        fresh_user(),
        fresh_user(),
    );
    let mut uow = unit(&store).await;
    uow.coupons().issue(&coupon, u1, NOW).await.unwrap();
    uow.commit().await.unwrap();

    let mut uow = unit(&store).await;
    assert!(uow
        .coupons()
        .issue_each(&coupon, &[], NOW)
        .await
        .unwrap()
        .is_empty());
    let answers = uow
        .coupons()
        .issue_each(&coupon, &[u2, u1, u2, u3, u4, u1], NOW)
        .await
        .unwrap();
    let codes: Vec<Option<ErrorCode>> = answers
        .iter()
        .map(|a| a.as_ref().err().map(|e| e.code()))
        .collect();
    assert_eq!(
        codes,
        vec![
            None,
            Some(ErrorCode::CouponAlreadyIssued),
            Some(ErrorCode::CouponAlreadyIssued),
            None,
            Some(ErrorCode::CouponSoldOut),
            Some(ErrorCode::CouponAlreadyIssued),
        ]
    );
    let issued: Vec<(UserId, UserCouponStatus)> = answers
        .iter()
        .filter_map(|a| a.as_ref().ok())
        .map(|uc| (uc.user_id, uc.status))
        .collect();
    assert_eq!(
        issued,
        vec![
            (u2, UserCouponStatus::Issued),
            (u3, UserCouponStatus::Issued)
        ]
    );
    uow.commit().await.unwrap();

    let mut uow = unit(&store).await;
    let c = uow.coupons();
    assert_eq!(c.issued_count(coupon.id).await.unwrap(), 3);
    assert!(c.user_coupons(u4).await.unwrap().is_empty());
    let held = &c.user_coupons(u2).await.unwrap()[0];
    let answered = answers[0].as_ref().unwrap();
    assert_eq!((held.id, held.coupon_id), (answered.id, coupon.id));
    let again = c.issue_each(&coupon, &[u5, u3], NOW).await.unwrap();
    assert!(matches!(again[0], Err(ref e) if e.code() == ErrorCode::CouponSoldOut));
    assert!(matches!(again[1], Err(ref e) if e.code() == ErrorCode::CouponAlreadyIssued));
    assert_eq!(c.issued_count(coupon.id).await.unwrap(), 3);
}

/// Orders inserted together come back in the order given, each with its own id, lines and
/// reference, and read back as written; a reference already taken refuses the whole call.
pub async fn orders_insert_many(store: Arc<dyn Store>) {
    let product = product_with_stock(&store, 100).await;
    let (a, b) = (fresh_user(), fresh_user());
    let r1 = format!("order:{a}:many-{}", unique_id());
    let r2 = format!("order:{b}:many-{}", unique_id());
    let mut uow = unit(&store).await;
    assert!(uow
        .orders()
        .insert_many(Vec::new())
        .await
        .unwrap()
        .is_empty());
    let orders = uow
        .orders()
        .insert_many(vec![
            NewOrder {
                reference: Some(r1.clone()),
                ..new_order(a, &product, 1)
            },
            new_order(b, &product, 3),
            NewOrder {
                reference: Some(r2.clone()),
                ..new_order(b, &product, 2)
            },
        ])
        .await
        .unwrap();
    uow.commit().await.unwrap();
    assert_eq!(orders.len(), 3);
    let ids: BTreeSet<OrderId> = orders.iter().map(|o| o.id).collect();
    assert_eq!(ids.len(), 3, "each order has its own id");
    assert_eq!(
        orders
            .iter()
            .map(|o| (o.user_id, o.lines[0].quantity.get()))
            .collect::<Vec<_>>(),
        vec![(a, 1), (b, 3), (b, 2)]
    );
    let mut uow = unit(&store).await;
    for o in &orders {
        let read = uow.orders().get(o.id).await.unwrap().expect("order");
        assert_eq!(&read, o);
    }
    for (r, o) in [(&r1, &orders[0]), (&r2, &orders[2])] {
        let found = uow.orders().find_by_reference(r).await.unwrap();
        assert_eq!(found.map(|f| f.id), Some(o.id));
    }
    drop(uow);
    let mut uow = unit(&store).await;
    let again = uow
        .orders()
        .insert_many(vec![
            new_order(a, &product, 1),
            NewOrder {
                reference: Some(r1.clone()),
                ..new_order(a, &product, 1)
            },
        ])
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict("order reference"))),
        "{again:?}"
    );
}

/// A payment recorded with its saga at DEBITED: read back with its order (every field as
/// recorded), listed as an open saga, and gone with its unit if that is dropped.
pub async fn debited_payments_read_with_their_order(store: Arc<dyn Store>) {
    let user = fresh_user();
    let product = product_with_stock(&store, 10).await;
    let mut uow = unit(&store).await;
    let order = uow
        .orders()
        .insert(new_order(user, &product, 1))
        .await
        .unwrap();
    let bare = uow
        .orders()
        .insert(new_order(user, &product, 2))
        .await
        .unwrap();
    let reference = format!("pay:{user}:key");
    let payment = uow
        .payments()
        .insert_debited(&order, order.total, Some(&reference), NOW)
        .await
        .unwrap();
    assert_eq!(payment.status, PaymentStatus::Pending);
    uow.commit().await.unwrap();

    let mut uow = unit(&store).await;
    let (read, payments) = uow.order_with_payments(order.id).await.unwrap().unwrap();
    assert_eq!(read.id, order.id);
    assert_eq!(read.total, order.total);
    assert_eq!(payments, vec![payment.clone()]);
    let (read, payments) = uow.order_with_payments(bare.id).await.unwrap().unwrap();
    assert_eq!((read.id, payments.len()), (bare.id, 0));
    let missing = OrderId::new(i64::MAX).unwrap();
    assert!(uow.order_with_payments(missing).await.unwrap().is_none());
    let open = uow
        .payments()
        .open_sagas(NOW.plus_millis(1), 10_000)
        .await
        .unwrap();
    assert!(open.contains(&(order.id, user)), "{open:?}");
    drop(uow);

    // Dropped with its unit: neither the payment nor its saga stays.
    let mut uow = unit(&store).await;
    uow.payments()
        .insert_debited(&bare, bare.total, None, NOW)
        .await
        .unwrap();
    drop(uow);
    let mut uow = unit(&store).await;
    let (_, payments) = uow.order_with_payments(bare.id).await.unwrap().unwrap();
    assert!(payments.is_empty(), "{payments:?}");
    let open = uow
        .payments()
        .open_sagas(NOW.plus_millis(1), 10_000)
        .await
        .unwrap();
    assert!(!open.contains(&(bare.id, user)), "{open:?}");
}

/// `check_fences` refuses a token lower than one committed before, accepts equal and higher
/// ones, and records nothing when it refuses or when its unit is dropped.
pub async fn fences_never_go_back(store: Arc<dyn Store>) {
    let a = format!("contract:fence:a:{}", unique_id());
    let b = format!("contract:fence:b:{}", unique_id());

    let mut uow = unit(&store).await;
    uow.check_fences(&[fence(&a, 5)]).await.unwrap();
    uow.commit().await.unwrap();

    let mut uow = unit(&store).await;
    let r = uow.check_fences(&[fence(&a, 3)]).await;
    assert!(
        matches!(&r, Err(StoreError::StaleFence { key }) if *key == a),
        "lower token accepted: {r:?}"
    );
    drop(uow);

    for token in [5, 7] {
        let mut uow = unit(&store).await;
        uow.check_fences(&[fence(&a, token)]).await.unwrap();
        uow.commit().await.unwrap();
    }
    let mut uow = unit(&store).await;
    let r = uow.check_fences(&[fence(&a, 6)]).await;
    assert!(matches!(r, Err(StoreError::StaleFence { .. })), "{r:?}");
    drop(uow);

    // A refused check with a fresh key besides the stale one records neither.
    let mut uow = unit(&store).await;
    let r = uow.check_fences(&[fence(&b, 50), fence(&a, 3)]).await;
    assert!(matches!(r, Err(StoreError::StaleFence { .. })), "{r:?}");
    drop(uow);
    // A check in a unit dropped without commit records nothing either.
    let mut uow = unit(&store).await;
    uow.check_fences(&[fence(&a, 100)]).await.unwrap();
    drop(uow);

    let mut uow = unit(&store).await;
    uow.check_fences(&[fence(&b, 10), fence(&a, 8)])
        .await
        .unwrap();
    uow.commit().await.unwrap();
    let mut uow = unit(&store).await;
    let r = uow.check_fences(&[fence(&b, 9)]).await;
    assert!(matches!(r, Err(StoreError::StaleFence { .. })), "{r:?}");
}

/// Instantiates the store contract for one adapter. `$make` is an expression (evaluated per
/// test) yielding a future of `Arc<dyn Store>`.
#[macro_export]
macro_rules! store_contract {
    ($make:expr) => {
        #[test]
        fn store_order_reference_is_unique() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::store::order_reference_is_unique($make.await).await;
            });
        }
        #[test]
        fn store_dropped_unit_leaves_nothing() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::store::dropped_unit_leaves_nothing($make.await).await;
            });
        }
        #[test]
        fn store_commit_makes_writes_visible() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::store::commit_makes_writes_visible($make.await).await;
            });
        }
        #[test]
        fn store_deduct_stock_never_below_zero() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::store::deduct_stock_never_below_zero($make.await).await;
            });
        }
        #[test]
        fn store_concurrent_deductions_stop_at_zero() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::store::concurrent_deductions_stop_at_zero($make.await).await;
            });
        }
        #[test]
        fn store_wallet_append_guards() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::store::wallet_append_guards($make.await).await;
            });
        }
        #[test]
        fn store_audit_balance_equals_ledger_sum() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::store::audit_balance_equals_ledger_sum($make.await).await;
            });
        }
        #[test]
        fn store_coupon_issue_guards() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::store::coupon_issue_guards($make.await).await;
            });
        }
        #[test]
        fn store_coupon_issue_batch() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::store::coupon_issue_batch($make.await).await;
            });
        }
        #[test]
        fn store_concurrent_issue_batches_stop_at_quantity() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::store::concurrent_issue_batches_stop_at_quantity($make.await)
                    .await;
            });
        }
        #[test]
        fn store_concurrent_issue_stops_at_quantity() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::store::concurrent_issue_stops_at_quantity($make.await).await;
            });
        }
        #[test]
        fn store_conditional_transitions() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::store::conditional_transitions($make.await).await;
            });
        }
        #[test]
        fn store_debited_payments_read_with_their_order() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::store::debited_payments_read_with_their_order($make.await).await;
            });
        }
        #[test]
        fn store_coupon_issue_each() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::store::coupon_issue_each($make.await).await;
            });
        }
        #[test]
        fn store_orders_insert_many() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::store::orders_insert_many($make.await).await;
            });
        }
        #[test]
        fn store_pages_are_keyed() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::store_pages::pages_are_keyed($make.await).await;
            });
        }
        #[test]
        fn store_units_held_counts_live_orders_only() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::limits::units_held_counts_live_orders_only($make.await).await;
            });
        }
        #[test]
        fn store_product_update_sets_given_fields() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::limits::product_update_sets_given_fields($make.await).await;
            });
        }
        #[test]
        fn store_failure_records_count_attempts_and_page() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::store::failure_records_count_attempts_and_page($make.await)
                    .await;
            });
        }
        #[test]
        fn store_concurrent_failures_all_count() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::store::concurrent_failures_all_count($make.await).await;
            });
        }
        #[test]
        fn store_fences_never_go_back() {
            $crate::contracts::run(CONTRACT_TIME, async {
                $crate::contracts::store::fences_never_go_back($make.await).await;
            });
        }
    };
}

/// `record_failure` counts the failures of a pair (`attempts`, the last reason and time; a
/// dropped unit counts nothing), `failure_records` answers one coupon's by user id in keyset
/// pages, `issue` and `clear_failure` remove one.
pub async fn failure_records_count_attempts_and_page(store: Arc<dyn Store>) {
    let coupon = coupon_with_quantity(&store, 10).await;
    let other = coupon_with_quantity(&store, 10).await;
    let users: Vec<UserId> = (0..5).map(|_| fresh_user()).collect();
    let (u1, u2, u3, u4, u5) = (users[0], users[1], users[2], users[3], users[4]);
    let later = NOW.plus_millis(5_000);

    let mut uow = unit(&store).await;
    for u in [u3, u1, u5, u2] {
        uow.coupons()
            .record_failure(coupon.id, u, "COUPON_SOLD_OUT", NOW)
            .await
            .unwrap();
    }
    uow.coupons()
        .record_failure(other.id, u4, "COUPON_SOLD_OUT", NOW)
        .await
        .unwrap();
    uow.commit().await.unwrap();
    let mut uow = unit(&store).await;
    uow.coupons()
        .record_failure(coupon.id, u1, "BACKEND_UNAVAILABLE", later)
        .await
        .unwrap();
    uow.commit().await.unwrap();
    let mut uow = unit(&store).await;
    uow.coupons()
        .record_failure(coupon.id, u2, "BACKEND_UNAVAILABLE", later)
        .await
        .unwrap();
    drop(uow);

    let mut uow = unit(&store).await;
    let all = uow
        .coupons()
        .failure_records(coupon.id, None, 100)
        .await
        .unwrap();
    let seen: Vec<(UserId, &str, u32, Timestamp)> = all
        .iter()
        .map(|f| (f.user_id, f.reason.as_str(), f.attempts, f.failed_at))
        .collect();
    assert_eq!(
        seen,
        vec![
            (u1, "BACKEND_UNAVAILABLE", 2, later),
            (u2, "COUPON_SOLD_OUT", 1, NOW),
            (u3, "COUPON_SOLD_OUT", 1, NOW),
            (u5, "COUPON_SOLD_OUT", 1, NOW),
        ],
        "by user id; a dropped unit counts no attempt"
    );
    drop(uow);
    let page = |after: Option<UserId>, limit: usize| {
        let store = store.clone();
        async move {
            let mut uow = unit(&store).await;
            uow.coupons()
                .failure_records(coupon.id, after, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|f| f.user_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(None, 2).await, vec![u1, u2]);
    assert_eq!(page(Some(u2), 2).await, vec![u3, u5]);
    assert_eq!(page(Some(u1), 1).await, vec![u2]);
    assert_eq!(page(Some(u4), 10).await, vec![u5]);
    assert!(page(Some(u5), 10).await.is_empty());
    assert!(page(None, 0).await.is_empty());

    let mut uow = unit(&store).await;
    uow.coupons().issue(&coupon, u3, NOW).await.unwrap();
    assert!(uow.coupons().clear_failure(coupon.id, u5).await.unwrap());
    assert!(!uow.coupons().clear_failure(coupon.id, u4).await.unwrap());
    uow.commit().await.unwrap();
    let mut uow = unit(&store).await;
    assert!(uow.coupons().clear_failure(coupon.id, u1).await.unwrap());
    drop(uow);
    assert_eq!(
        page(None, 10).await,
        vec![u1, u2],
        "issue and clear remove one"
    );
    let mut uow = unit(&store).await;
    let others = uow
        .coupons()
        .failure_records(other.id, None, 10)
        .await
        .unwrap();
    assert_eq!(
        others.iter().map(|f| f.user_id).collect::<Vec<_>>(),
        vec![u4]
    );
}

/// Concurrent failures of one pair each count: 50 units at once make `attempts` 50.
pub async fn concurrent_failures_all_count(store: Arc<dyn Store>) {
    let coupon = coupon_with_quantity(&store, 1).await;
    let u = fresh_user();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut uow = unit(&store).await;
            uow.coupons()
                .record_failure(coupon.id, u, "COUPON_SOLD_OUT", NOW)
                .await
                .unwrap();
            uow.commit().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut uow = unit(&store).await;
    let all = uow
        .coupons()
        .failure_records(coupon.id, None, 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].user_id, all[0].attempts), (u, 50));
}
