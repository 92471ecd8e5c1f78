//! Lists a page at a time (`limit`, `cursor`, `Link: rel="next"`), and the lists added in v1.1:
//! my orders, the coupon catalogue, the admin's orders and coupons. On every backend.

use super::{expect, ADMIN};
use crate::http::{spawn_app, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Follows `Link: rel="next"` from `first` to the end: every page's items, and the pages' sizes.
async fn walk(app: &TestServer, first: &str, user: Option<i64>) -> (Vec<Value>, Vec<usize>) {
    let mut items = Vec::new();
    let mut sizes = Vec::new();
    let mut path = first.to_owned();
    for _ in 0..100 {
        let page = app.get(&path, user).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.raw);
        let got = page.data().as_array().expect("a list is an array").clone();
        sizes.push(got.len());
        items.extend(got);
        match page.next_page() {
            Some(next) => path = next,
            None => return (items, sizes),
        }
    }
    panic!("{first}: more than 100 pages");
}

fn ids(items: &[Value], key: &str) -> Vec<i64> {
    items.iter().map(|v| v[key].as_i64().expect(key)).collect()
}

async fn order(app: &TestServer, user: i64, key: &str) -> i64 {
    let o = app
        .post(
            "/api/v1/orders",
            user,
            Some(key),
            json!({"items": [{"productId": 2, "quantity": 1}]}),
        )
        .await;
    assert_eq!(o.status, StatusCode::CREATED, "{}", o.raw);
    o.data()["orderId"].as_i64().unwrap()
}

async fn coupon(app: &TestServer, body: Value) -> i64 {
    let c = app
        .call(
            Method::POST,
            "/api/v1/admin/coupons",
            Some(ADMIN),
            None,
            Some(body),
        )
        .await;
    assert_eq!(c.status, StatusCode::CREATED, "{}", c.raw);
    c.data()["id"].as_i64().unwrap()
}

/// Every list pages by `limit` and `cursor`: the pages together hold each item once, in the
/// list's order; the last page has no `Link`; a `Link` keeps the filters and the limit.
pub async fn lists_come_in_pages_linked_by_next(flags: &[&str]) {
    let app = spawn_app(flags).await;
    let (u, other) = (4_201, 4_202);
    for i in 0..7 {
        let c = app
            .post(
                "/api/v1/users/me/balance/charge",
                u,
                Some(&format!("charge-{i}")),
                json!({"amount": 1_000 + i}),
            )
            .await;
        assert_eq!(c.status, StatusCode::OK, "{}", c.raw);
    }
    let (ledger, sizes) = walk(
        &app,
        "/api/v1/users/me/balance/transactions?limit=3",
        Some(u),
    )
    .await;
    assert_eq!(sizes, vec![3, 3, 1]);
    let tx = ids(&ledger, "id");
    assert!(tx.windows(2).all(|w| w[0] > w[1]), "newest first: {tx:?}");
    assert_eq!(ledger[0]["amount"], 1_006, "the newest charge comes first");

    let (products, sizes) = walk(&app, "/api/v1/products?limit=4", None).await;
    assert_eq!(ids(&products, "id"), (1..=10).collect::<Vec<i64>>());
    assert_eq!(sizes, vec![4, 4, 2]);
    let all = app.get("/api/v1/products", None).await;
    assert_eq!(all.data().as_array().unwrap().len(), 10);
    assert!(all.link.is_none(), "one page holds them all: no Link");

    // My orders, newest first, with and without a state.
    let mut placed = Vec::new();
    for i in 0..5 {
        placed.push(order(&app, u, &format!("order-{i}")).await);
    }
    let theirs = order(&app, other, "theirs").await;
    let cancelled = app
        .call(
            Method::POST,
            &format!("/api/v1/orders/{}/cancel", placed[1]),
            Some(u),
            None,
            None,
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.raw);
    let (mine, sizes) = walk(&app, "/api/v1/orders?limit=2", Some(u)).await;
    let newest_first: Vec<i64> = placed.iter().rev().copied().collect();
    assert_eq!(ids(&mine, "orderId"), newest_first);
    assert_eq!(sizes, vec![2, 2, 1]);
    let pending = app
        .get("/api/v1/orders?status=PENDING_PAYMENT&limit=2", Some(u))
        .await;
    let next = pending.next_page().expect("more pending orders remain");
    assert!(
        next.contains("status=PENDING_PAYMENT") && next.contains("limit=2"),
        "{next}"
    );
    let (pending, _) = walk(
        &app,
        "/api/v1/orders?status=PENDING_PAYMENT&limit=2",
        Some(u),
    )
    .await;
    assert_eq!(pending.len(), 4);
    assert!(pending.iter().all(|o| o["status"] == "PENDING_PAYMENT"));
    let (only, _) = walk(&app, "/api/v1/orders?status=CANCELLED", Some(u)).await;
    assert_eq!(ids(&only, "orderId"), vec![placed[1]]);
    let none = app.get("/api/v1/orders?status=PAID", Some(u)).await;
    assert_eq!((none.data(), none.link.as_deref()), (&json!([]), None));

    // The admin's orders: everyone's, newest first, by user and by state.
    let everyone = app.get("/api/v1/admin/orders?limit=1", Some(ADMIN)).await;
    assert_eq!(
        ids(everyone.data().as_array().unwrap(), "orderId"),
        vec![theirs]
    );
    let (by_user, _) = walk(
        &app,
        &format!("/api/v1/admin/orders?userId={u}&limit=2"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(ids(&by_user, "orderId"), newest_first);
    let (by_both, _) = walk(
        &app,
        &format!("/api/v1/admin/orders?userId={u}&status=CANCELLED&limit=1"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(ids(&by_both, "orderId"), vec![placed[1]]);
    let (cancelled_anyone, _) =
        walk(&app, "/api/v1/admin/orders?status=CANCELLED", Some(ADMIN)).await;
    assert!(ids(&cancelled_anyone, "orderId").contains(&placed[1]));
    assert!(cancelled_anyone.iter().all(|o| o["status"] == "CANCELLED"));

    // My coupons, by id.
    for c in [2, 3] {
        let i = app
            .call(
                Method::POST,
                &format!("/api/v1/coupons/{c}/issue"),
                Some(u),
                None,
                None,
            )
            .await;
        assert_eq!(i.status, StatusCode::OK, "{}", i.raw);
    }
    let (held, sizes) = walk(&app, "/api/v1/users/me/coupons?limit=1", Some(u)).await;
    assert_eq!(sizes, vec![1, 1]);
    let held_ids = ids(&held, "userCouponId");
    assert!(held_ids[0] < held_ids[1]);
}

/// The catalogue lists what can be issued now, with `remaining`; the admin's list holds every
/// coupon.
pub async fn the_coupon_catalogue_shows_what_can_still_be_had(flags: &[&str]) {
    let app = spawn_app(flags).await;
    let one_left = coupon(
        &app,
        json!({"name": "LAST1", "kind": "CART", "discountType": "FIXED", "discountValue": 100,
               "minOrderAmount": 0, "quantity": 1, "mode": "LOCKED"}),
    )
    .await;
    let flash_one = coupon(
        &app,
        json!({"name": "FLASH1", "kind": "CART", "discountType": "FIXED", "discountValue": 100,
               "minOrderAmount": 0, "quantity": 1, "mode": "FLASH"}),
    )
    .await;
    let later = coupon(
        &app,
        json!({"name": "LATER", "kind": "CART", "discountType": "FIXED", "discountValue": 100,
               "minOrderAmount": 0, "quantity": 5, "mode": "LOCKED",
               "validFrom": "2999-01-01T00:00:00Z"}),
    )
    .await;
    let (offer, _) = walk(&app, "/api/v1/coupons?limit=2", None).await;
    let offered = ids(&offer, "couponId");
    assert_eq!(offered, vec![1, 2, 3, one_left, flash_one], "{offer:?}");
    let welcome = &offer[1];
    assert_eq!(welcome["name"], "WELCOME10");
    assert_eq!(welcome["remaining"], 1_000);
    assert_eq!(welcome["maxDiscount"], 20_000);
    assert!(
        welcome.get("quantity").is_none(),
        "the catalogue shows what is left, not settings"
    );

    let issued = app
        .call(
            Method::POST,
            "/api/v1/coupons/2/issue",
            Some(77),
            None,
            None,
        )
        .await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.raw);
    for c in [one_left, flash_one] {
        let i = app
            .call(
                Method::POST,
                &format!("/api/v1/coupons/{c}/issue"),
                Some(77),
                None,
                None,
            )
            .await;
        assert_eq!(i.status, StatusCode::OK, "{}", i.raw);
    }
    let offer = app.get("/api/v1/coupons", None).await;
    let left: Vec<(i64, i64)> = offer
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["couponId"].as_i64().unwrap(),
                c["remaining"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        left,
        vec![(1, 100), (2, 999), (3, 1_000)],
        "sold out ones leave the catalogue"
    );

    let (every, sizes) = walk(&app, "/api/v1/admin/coupons?limit=4", Some(ADMIN)).await;
    assert_eq!(ids(&every, "id"), vec![1, 2, 3, one_left, flash_one, later]);
    assert_eq!(sizes, vec![4, 2]);
    assert_eq!(every[5]["validFrom"], "2999-01-01T00:00:00Z");
}

/// Bad paging and filters are 400s in the envelope; the admin lists are for admins.
pub async fn lists_refuse_bad_limits_cursors_and_filters(flags: &[&str]) {
    let app = spawn_app(flags).await;
    let u = 4_301;
    for _ in 0..3 {
        app.post(
            "/api/v1/users/me/balance/charge",
            u,
            Some(&format!("k{}", rand_key())),
            json!({"amount": 10}),
        )
        .await;
    }
    let first = app
        .get("/api/v1/users/me/balance/transactions?limit=1", Some(u))
        .await;
    let next = first.next_page().expect("a next page");
    let cursor = next.split("cursor=").nth(1).expect("a cursor").to_owned();
    for path in [
        "/api/v1/products?limit=0",
        "/api/v1/products?limit=501",
        "/api/v1/products?limit=ten",
        "/api/v1/products?limit=1&limit=2",
        "/api/v1/products?cursor=",
        "/api/v1/products?cursor=not-ours",
        "/api/v1/coupons?cursor=%FF",
        "/api/v1/users/me/coupons?limit=-1",
        "/api/v1/orders?status=SHIPPED",
        "/api/v1/orders?status=paid",
        "/api/v1/admin/orders?userId=0",
        "/api/v1/admin/orders?userId=abc",
        "/api/v1/admin/coupons?limit=1000",
    ] {
        let a = app
            .get(path, Some(if path.contains("/admin/") { ADMIN } else { u }))
            .await;
        expect(&a, 400, "INVALID_INPUT");
    }
    // A cursor from one page works on the next request, once written exactly as given.
    let again = app
        .get(
            &format!("/api/v1/users/me/balance/transactions?limit=1&cursor={cursor}"),
            Some(u),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.raw);
    assert!(again.data()[0]["id"].as_i64() < first.data()[0]["id"].as_i64());
    let padded = app
        .get(
            &format!("/api/v1/users/me/balance/transactions?cursor={cursor}%3D"),
            Some(u),
        )
        .await;
    expect(&padded, 400, "INVALID_INPUT");
    // A cursor belongs to its list and its filters.
    for path in [
        format!("/api/v1/users/me/coupons?cursor={cursor}"),
        format!("/api/v1/orders?cursor={cursor}"),
        format!("/api/v1/products?cursor={cursor}"),
    ] {
        expect(&app.get(&path, Some(u)).await, 400, "INVALID_INPUT");
    }
    // A misspelt filter is refused, not ignored.
    let typo = app.get("/api/v1/orders?stauts=PAID", Some(u)).await;
    expect(&typo, 400, "INVALID_INPUT");
    assert!(typo.raw.contains("stauts"), "{}", typo.raw);
    let typo = app.get("/api/v1/admin/orders?user_id=7", Some(ADMIN)).await;
    expect(&typo, 400, "INVALID_INPUT");

    expect(
        &app.get("/api/v1/admin/orders", Some(u)).await,
        403,
        "FORBIDDEN",
    );
    expect(
        &app.get("/api/v1/admin/coupons", Some(u)).await,
        403,
        "FORBIDDEN",
    );
    expect(&app.get("/api/v1/orders", None).await, 401, "UNAUTHORIZED");
    expect(
        &app.get("/api/v1/admin/orders", None).await,
        401,
        "UNAUTHORIZED",
    );
    let public = app.get("/api/v1/coupons", None).await;
    assert_eq!(
        public.status,
        StatusCode::OK,
        "the catalogue needs no token: {}",
        public.raw
    );
}

fn rand_key() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
