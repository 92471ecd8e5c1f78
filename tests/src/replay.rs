//! Replaying recorded FLASH issuance failures through the application layer, written once and
//! run on every backend (`tests/engine/memory/scenarios.rs`, `tests/engine/postgres/scenarios.rs`,
//! `tests/engine/redis/replay.rs`): two replays at once issue each user once and are counted
//! once, gate and store agree afterwards; a coupon with nothing left keeps its failures with
//! one more attempt each.

use crate::harness::{user, TestApp};
use std::collections::HashSet;
use stockade_application::views::{FailureView, ReplayReport};
use stockade_domain::{CouponId, Discount, IssuanceMode, UserId};

/// A FLASH coupon (CART, 1,000 won off) of `quantity`.
pub async fn flash_coupon(t: &TestApp, quantity: i64) -> CouponId {
    t.coupon(
        "CART",
        Discount::new("FIXED", 1_000, None).unwrap(),
        0,
        quantity,
        IssuanceMode::Flash,
    )
    .await
}

/// What the issuance consumer leaves after dead-lettering `users`' reservations: their places
/// given back in the gate (they never hold one here) and a failure recorded for each.
pub async fn record_failures(t: &TestApp, coupon: CouponId, users: &[UserId], reason: &str) {
    let mut uow = t.app.ports().store.begin().await.unwrap();
    let at = t.app.ports().clock.now();
    for u in users {
        uow.coupons()
            .record_failure(coupon, *u, reason, at)
            .await
            .unwrap();
    }
    uow.commit().await.unwrap();
}

/// Users in `from..=to` reserve `coupon` (each succeeds) and the queue persists them.
async fn reserve_all(t: &TestApp, coupon: CouponId, from: i64, to: i64) {
    for u in from..=to {
        let view = t.app.issue_coupon(coupon, user(u)).await.unwrap();
        assert_eq!(view.status, "RESERVED");
    }
    t.drain().await;
}

async fn failures(t: &TestApp, coupon: CouponId) -> Vec<FailureView> {
    t.app.issuance_failures(coupon, None, 1_000).await.unwrap()
}

/// How many of `coupon` each user holds in the store.
async fn held(t: &TestApp, coupon: CouponId, u: UserId) -> usize {
    let mut uow = t.app.ports().store.begin().await.unwrap();
    let mine = uow.coupons().user_coupons(u).await.unwrap();
    mine.iter().filter(|uc| uc.coupon_id == coupon).count()
}

/// 200 recorded failures with places left, 20 holders already; two replays at once: every
/// failed user ends with exactly one coupon, the two answers count each user once (issued
/// adds up to 200), the list is empty, and the gate's holders are the store's.
pub async fn two_replays_at_once_issue_each_user_once(t: &TestApp) {
    let coupon = flash_coupon(t, 250).await;
    reserve_all(t, coupon, 1_001, 1_020).await;
    let failed: Vec<UserId> = (1..=200).map(user).collect();
    record_failures(t, coupon, &failed, "BACKEND_UNAVAILABLE").await;
    let listed = failures(t, coupon).await;
    assert_eq!(listed.len(), 200);
    assert!(listed.windows(2).all(|w| w[0].user_id < w[1].user_id));
    assert!(listed
        .iter()
        .all(|f| f.reason == "BACKEND_UNAVAILABLE" && f.attempts == 1));

    let (a, b) = tokio::join!(
        tokio::spawn({
            let app = t.app.clone();
            async move { app.replay_failures(coupon).await }
        }),
        tokio::spawn({
            let app = t.app.clone();
            async move { app.replay_failures(coupon).await }
        }),
    );
    let (a, b): (ReplayReport, ReplayReport) = (a.unwrap().unwrap(), b.unwrap().unwrap());
    assert_eq!(a.issued + b.issued, 200, "{a:?} {b:?}");
    assert_eq!(
        a.replayed + b.replayed,
        200,
        "a user replayed twice: {a:?} {b:?}"
    );
    assert_eq!(a.still_failing + b.still_failing, 0, "{a:?} {b:?}");
    assert!(
        a.replayed == 0 || b.replayed == 0,
        "replays take turns: {a:?} {b:?}"
    );

    for u in failed
        .iter()
        .chain((1_001..=1_020).map(user).collect::<Vec<_>>().iter())
    {
        assert_eq!(held(t, coupon, *u).await, 1, "user {u}");
    }
    assert!(failures(t, coupon).await.is_empty());
    let stock = t.app.coupon_stock(coupon).await.unwrap();
    assert_eq!(
        (
            stock.persisted,
            stock.reserved,
            stock.failed,
            stock.remaining
        ),
        (220, 220, 0, 30)
    );
    t.assert_invariants(&[coupon]).await;

    // Nothing is left to replay: a third one tries nobody.
    let again = t.app.replay_failures(coupon).await.unwrap();
    assert_eq!(
        (again.replayed, again.issued, again.still_failing),
        (0, 0, 0)
    );
}

/// A coupon with nothing left: each replay records the failures again with one more attempt
/// and the gate's refusal as the reason; no one is issued and gate and store still agree.
pub async fn replays_of_a_sold_out_coupon_keep_failing(t: &TestApp) {
    let coupon = flash_coupon(t, 5).await;
    reserve_all(t, coupon, 1, 5).await;
    let failed: Vec<UserId> = (6..=8).map(user).collect();
    record_failures(t, coupon, &failed, "COUPON_SOLD_OUT").await;

    for attempts in 2..=3 {
        let report = t.app.replay_failures(coupon).await.unwrap();
        assert_eq!(
            (report.replayed, report.issued, report.still_failing),
            (3, 0, 3)
        );
        let listed = failures(t, coupon).await;
        let users: Vec<i64> = listed.iter().map(|f| f.user_id).collect();
        assert_eq!(users, vec![6, 7, 8]);
        for f in &listed {
            assert_eq!(
                (f.reason.as_str(), f.attempts),
                ("COUPON_SOLD_OUT", attempts)
            );
        }
    }
    for u in &failed {
        assert_eq!(held(t, coupon, *u).await, 0);
    }
    t.assert_invariants(&[coupon]).await;
    let stock = t.app.coupon_stock(coupon).await.unwrap();
    assert_eq!((stock.persisted, stock.remaining, stock.failed), (5, 0, 3));
}

/// The list pages by user id (keyset). A user recorded as failed who holds the coupon already
/// (a late dead letter of a reservation another delivery persisted) is counted issued once,
/// keeps their one coupon and leaves the list.
pub async fn the_list_pages_by_user_and_a_holder_counts_issued(t: &TestApp) {
    let coupon = flash_coupon(t, 10).await;
    reserve_all(t, coupon, 7, 7).await;
    let failed: Vec<UserId> = [9, 3, 7, 1].into_iter().map(user).collect();
    record_failures(t, coupon, &failed, "BACKEND_UNAVAILABLE").await;
    let page = t.app.issuance_failures(coupon, None, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|f| f.user_id).collect::<Vec<_>>(),
        vec![1, 3]
    );
    let page = t
        .app
        .issuance_failures(coupon, Some(user(3)), 2)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|f| f.user_id).collect::<Vec<_>>(),
        vec![7, 9]
    );
    assert!(t
        .app
        .issuance_failures(coupon, Some(user(9)), 2)
        .await
        .unwrap()
        .is_empty());

    let report = t.app.replay_failures(coupon).await.unwrap();
    assert_eq!(
        (report.replayed, report.issued, report.still_failing),
        (4, 4, 0)
    );
    for u in &failed {
        assert_eq!(held(t, coupon, *u).await, 1, "user {u}");
    }
    let holders: HashSet<UserId> = {
        let mut uow = t.app.ports().store.begin().await.unwrap();
        uow.coupons()
            .holders(coupon)
            .await
            .unwrap()
            .into_iter()
            .collect()
    };
    assert_eq!(holders, failed.iter().copied().collect());
    assert!(failures(t, coupon).await.is_empty());
    t.assert_invariants(&[coupon]).await;
    let again = t.app.replay_failures(coupon).await.unwrap();
    assert_eq!(again.replayed, 0, "nothing counted twice");
}

/// Unknown coupons are `COUPON_NOT_FOUND` for both.
pub async fn unknown_coupons_are_not_found(t: &TestApp) {
    let missing = CouponId::new(999_999).unwrap();
    let code = |e: stockade_application::AppError| e.code();
    assert_eq!(
        t.app
            .issuance_failures(missing, None, 10)
            .await
            .map_err(code)
            .unwrap_err(),
        stockade_domain::ErrorCode::CouponNotFound
    );
    assert_eq!(
        t.app
            .replay_failures(missing)
            .await
            .map_err(code)
            .unwrap_err(),
        stockade_domain::ErrorCode::CouponNotFound
    );
}
