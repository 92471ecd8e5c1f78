//! Coupon issuance failures over HTTP: listed for admins, replayed exactly once per user.

use super::{expect, ADMIN};
use crate::http::{spawn_app, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use stockade_domain::{CouponId, UserId};

/// Records what the issuance consumer records when it dead-letters a user's reservation (its
/// place in the gate given back): a failure in the store, through the service's own store.
async fn dead_lettered(app: &TestServer, coupon: i64, users: &[i64], reason: &str) {
    let ports = app.service.app.ports();
    let mut uow = ports.store.begin().await.unwrap();
    for u in users {
        uow.coupons()
            .record_failure(
                CouponId::new(coupon).unwrap(),
                UserId::new(*u).unwrap(),
                reason,
                ports.clock.now(),
            )
            .await
            .unwrap();
    }
    uow.commit().await.unwrap();
}

async fn my_coupons_of(app: &TestServer, user: i64, coupon: i64) -> usize {
    let mine = app.get("/api/v1/users/me/coupons", Some(user)).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.raw);
    mine.data()
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["couponId"] == json!(coupon))
        .count()
}

pub async fn coupon_failures_are_listed_and_replayed_once(flags: &[&str]) {
    let app = Arc::new(spawn_app(flags).await);
    let created = app
        .post(
            "/api/v1/admin/coupons",
            ADMIN,
            None,
            json!({"name": "DROP5", "kind": "CART", "discountType": "FIXED", "discountValue": 500,
                   "minOrderAmount": 0, "quantity": 5, "mode": "FLASH"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let c = created.data()["id"].as_i64().unwrap();
    let failures = format!("/api/v1/admin/coupons/{c}/failures");
    let replay = format!("/api/v1/admin/coupons/{c}/failures/replay");

    // Who may ask.
    for (method, path) in [(Method::GET, &failures), (Method::POST, &replay)] {
        let a = app.call(method.clone(), path, None, None, None).await;
        expect(&a, 401, "UNAUTHORIZED");
        let a = app.call(method.clone(), path, Some(41), None, None).await;
        expect(&a, 403, "FORBIDDEN");
        let missing = path.replace(&format!("/coupons/{c}/"), "/coupons/999999/");
        let a = app.call(method, &missing, Some(ADMIN), None, None).await;
        expect(&a, 404, "COUPON_NOT_FOUND");
    }
    let none = app.get(&failures, Some(ADMIN)).await;
    assert_eq!(none.data(), &json!([]), "{}", none.raw);

    // Two users hold places; three reservations ended in the dead-letter queue.
    for u in [61, 62] {
        let a = app
            .call(
                Method::POST,
                &format!("/api/v1/coupons/{c}/issue"),
                Some(u),
                None,
                None,
            )
            .await;
        assert_eq!(a.data()["status"], "RESERVED", "{}", a.raw);
    }
    app.drained().await;
    dead_lettered(&app, c, &[73, 71, 72], "BACKEND_UNAVAILABLE").await;
    let listed = app.get(&failures, Some(ADMIN)).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.raw);
    let rows = listed.data().as_array().unwrap().clone();
    let users: Vec<i64> = rows.iter().map(|r| r["userId"].as_i64().unwrap()).collect();
    assert_eq!(users, vec![71, 72, 73]);
    // A page at a time: two, then the last one without a next link.
    let first = app.get(&format!("{failures}?limit=2"), Some(ADMIN)).await;
    let firsts: Vec<i64> = first
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["userId"].as_i64().unwrap())
        .collect();
    assert_eq!(firsts, vec![71, 72]);
    let next = first.next_page().expect("a third failure remains");
    let last = app.get(&next, Some(ADMIN)).await;
    let lasts: Vec<i64> = last
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["userId"].as_i64().unwrap())
        .collect();
    assert_eq!((lasts, last.link.as_deref()), (vec![73], None));
    for r in &rows {
        assert_eq!(r["reason"], "BACKEND_UNAVAILABLE");
        assert_eq!(r["attempts"], 1);
        let at = r["failedAt"].as_str().unwrap();
        assert!(
            stockade_application::views::parse_rfc3339(at).is_some(),
            "{at}"
        );
    }

    // Two replays at once: each user issued once, and counted once.
    let (a, b) = tokio::join!(
        app.call(Method::POST, &replay, Some(ADMIN), None, None),
        app.call(Method::POST, &replay, Some(ADMIN), None, None),
    );
    let mut sum = [0_i64; 3];
    for r in [&a, &b] {
        assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
        for (i, field) in ["replayed", "issued", "stillFailing"].iter().enumerate() {
            sum[i] += r.data()[*field].as_i64().unwrap();
        }
    }
    assert_eq!(sum, [3, 3, 0], "{} / {}", a.raw, b.raw);
    for u in [61, 62, 71, 72, 73] {
        assert_eq!(my_coupons_of(&app, u, c).await, 1, "user {u}");
    }
    assert_eq!(app.get(&failures, Some(ADMIN)).await.data(), &json!([]));
    let stock = app
        .get(&format!("/api/v1/admin/coupons/{c}/stock"), Some(ADMIN))
        .await;
    assert_eq!(
        stock.data(),
        &json!({"couponId": c, "quantity": 5, "remaining": 0, "reserved": 5, "persisted": 5, "failed": 0})
    );

    // Nothing left: a failure replayed now fails again, one more attempt, a safe reason.
    dead_lettered(&app, c, &[74], "BACKEND_UNAVAILABLE").await;
    let again = app
        .call(Method::POST, &replay, Some(ADMIN), None, None)
        .await;
    assert_eq!(
        again.data(),
        &json!({"replayed": 1, "issued": 0, "stillFailing": 1}),
        "{}",
        again.raw
    );
    let listed: Value = app.get(&failures, Some(ADMIN)).await.data().clone();
    assert_eq!(listed[0]["userId"], 74);
    assert_eq!(listed[0]["reason"], "COUPON_SOLD_OUT");
    assert_eq!(listed[0]["attempts"], 2);
    assert_eq!(my_coupons_of(&app, 74, c).await, 0);
}
