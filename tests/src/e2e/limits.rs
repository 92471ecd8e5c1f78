//! Per-customer purchase limits and product changes end to end, on every backend.

use super::{expect, ADMIN};
use crate::http::{spawn_app, Answer, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

async fn create_product(app: &TestServer, body: Value) -> Answer {
    app.call(
        Method::POST,
        "/api/v1/admin/products",
        Some(ADMIN),
        None,
        Some(body),
    )
    .await
}

async fn patch(app: &TestServer, product: i64, user: Option<i64>, body: Value) -> Answer {
    app.call(
        Method::PATCH,
        &format!("/api/v1/admin/products/{product}"),
        user,
        None,
        Some(body),
    )
    .await
}

async fn product(app: &TestServer, id: i64) -> Value {
    let a = app.get(&format!("/api/v1/products/{id}"), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.raw);
    a.data().clone()
}

async fn order(app: &TestServer, user: i64, key: &str, items: Value) -> Answer {
    app.post("/api/v1/orders", user, Some(key), json!({ "items": items }))
        .await
}

async fn cancel(app: &TestServer, user: i64, order: i64) {
    let a = app
        .call(
            Method::POST,
            &format!("/api/v1/orders/{order}/cancel"),
            Some(user),
            None,
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.raw);
    assert_eq!(a.data()["status"], "CANCELLED");
}

/// A new product with `stock` units and the given per-customer limit; its id.
async fn limited(app: &TestServer, stock: i64, max_per_customer: Value) -> i64 {
    let a = create_product(
        app,
        json!({"name": "limited", "price": 1_000, "stock": stock, "maxPerOrder": 5,
               "maxPerCustomer": max_per_customer}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.raw);
    assert_eq!(a.data()["maxPerCustomer"], max_per_customer);
    a.data()["id"].as_i64().unwrap()
}

/// 100 orders of one unit from one customer at once, each with its own key, for a product
/// limited to 3 per customer: exactly 3 are placed. Half of them also buy an unlimited product
/// (another combining lane, the same product lock). Stock moves by exactly what was placed;
/// a cancelled order gives its unit back, and orders from the cart count too.
pub async fn limits_one_customer_100_orders_at_once(flags: &[&str]) {
    let app = Arc::new(spawn_app(flags).await);
    let p = limited(&app, 1_000, json!(3)).await;
    let q = limited(&app, 1_000, Value::Null).await;
    let user = 77;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let items = if i % 2 == 0 {
                json!([{"productId": p, "quantity": 1}])
            } else {
                json!([{"productId": p, "quantity": 1}, {"productId": q, "quantity": 1}])
            };
            (i, order(&app, user, &format!("race-{i}"), items).await)
        }));
    }
    let (mut placed, mut refused, mut with_q) = (Vec::new(), 0, 0);
    for t in tasks {
        let (i, a) = t.await.unwrap();
        match (a.status.as_u16(), a.code()) {
            (201, None) => {
                placed.push(a.data()["orderId"].as_i64().unwrap());
                with_q += i % 2;
            }
            (409, Some("PURCHASE_LIMIT_REACHED")) => refused += 1,
            other => panic!("unexpected {other:?}: {}", a.raw),
        }
    }
    assert_eq!((placed.len(), refused), (3, 97));
    assert_eq!(product(&app, p).await["stock"], 997);
    assert_eq!(product(&app, q).await["stock"], 1_000 - with_q);
    // Another customer has an allowance of their own.
    let other = order(
        &app,
        user + 1,
        "other",
        json!([{"productId": p, "quantity": 3}]),
    )
    .await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.raw);
    let over = order(
        &app,
        user + 1,
        "over",
        json!([{"productId": p, "quantity": 1}]),
    )
    .await;
    expect(&over, 409, "PURCHASE_LIMIT_REACHED");

    // A cancelled order gives its unit back: one more, and no more than that.
    cancel(&app, user, placed[0]).await;
    let again = order(
        &app,
        user,
        "again",
        json!([{"productId": p, "quantity": 1}]),
    )
    .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.raw);
    let full = order(&app, user, "full", json!([{"productId": p, "quantity": 1}])).await;
    expect(&full, 409, "PURCHASE_LIMIT_REACHED");

    // From the cart: refused while the allowance is used, placed once a unit is given back.
    let cart = app
        .post(
            "/api/v1/cart/items",
            user,
            None,
            json!({"productId": p, "quantity": 1}),
        )
        .await;
    assert_eq!(cart.status, StatusCode::OK, "{}", cart.raw);
    let from_cart = app
        .post(
            "/api/v1/orders",
            user,
            Some("cart-1"),
            json!({"fromCart": true}),
        )
        .await;
    expect(&from_cart, 409, "PURCHASE_LIMIT_REACHED");
    cancel(&app, user, placed[1]).await;
    let from_cart = app
        .post(
            "/api/v1/orders",
            user,
            Some("cart-2"),
            json!({"fromCart": true}),
        )
        .await;
    assert_eq!(from_cart.status, StatusCode::CREATED, "{}", from_cart.raw);
    // 3 + 3 (the other customer) + 1 again + 1 from the cart, minus the 2 cancelled.
    assert_eq!(product(&app, p).await["stock"], 1_000 - 6);
}

/// PATCH changes each field alone, `null` clears the limit, and what it changes is what the
/// next order is judged by (price, per-order and per-customer limits), sold-out marks included.
pub async fn limits_patch_changes_a_product(flags: &[&str]) {
    let app = spawn_app(flags).await;
    let bad = create_product(
        &app,
        json!({"name": "x", "price": 1, "stock": 1, "maxPerOrder": 1, "maxPerCustomer": 0}),
    )
    .await;
    expect(&bad, 400, "INVALID_INPUT");
    assert!(bad.raw.contains("maxPerCustomer"), "{}", bad.raw);
    // Created without a limit: `null`.
    let a = create_product(
        &app,
        json!({"name": "plain", "price": 1_000, "stock": 10, "maxPerOrder": 5}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.raw);
    assert_eq!(a.data()["maxPerCustomer"], Value::Null);
    let id = a.data()["id"].as_i64().unwrap();
    let listed = app.get("/api/v1/products", None).await;
    let row = listed
        .data()
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .cloned();
    assert_eq!(
        row,
        Some(
            json!({"id": id, "name": "plain", "price": 1_000, "stock": 10, "maxPerOrder": 5,
                    "maxPerCustomer": null})
        )
    );

    // Each field alone; the others are kept.
    let a = patch(&app, id, Some(ADMIN), json!({"price": 2_500})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.raw);
    assert_eq!(
        a.data(),
        &json!({"id": id, "name": "plain", "price": 2_500, "stock": 10, "maxPerOrder": 5,
                "maxPerCustomer": null})
    );
    let a = patch(&app, id, Some(ADMIN), json!({"name": " renamed "})).await;
    assert_eq!(a.data()["name"], "renamed", "{}", a.raw);
    let a = patch(&app, id, Some(ADMIN), json!({"maxPerOrder": 2})).await;
    assert_eq!(a.data()["maxPerOrder"], 2, "{}", a.raw);
    let a = patch(&app, id, Some(ADMIN), json!({"maxPerCustomer": 3})).await;
    assert_eq!(a.data()["maxPerCustomer"], 3, "{}", a.raw);
    assert_eq!(
        product(&app, id).await,
        json!({"id": id, "name": "renamed", "price": 2_500, "stock": 10, "maxPerOrder": 2,
               "maxPerCustomer": 3})
    );

    // The next orders are judged by the new settings.
    let u = 91;
    let o = order(&app, u, "o1", json!([{"productId": id, "quantity": 2}])).await;
    assert_eq!(o.status, StatusCode::CREATED, "{}", o.raw);
    assert_eq!(o.data()["total"], 5_000, "the new price");
    let o = order(&app, u, "o2", json!([{"productId": id, "quantity": 3}])).await;
    expect(&o, 400, "EXCEEDED_LIMITED_QUANTITY");
    let o = order(&app, u, "o3", json!([{"productId": id, "quantity": 2}])).await;
    expect(&o, 409, "PURCHASE_LIMIT_REACHED");
    // `null` removes the limit.
    let a = patch(&app, id, Some(ADMIN), json!({"maxPerCustomer": null})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.raw);
    assert_eq!(a.data()["maxPerCustomer"], Value::Null);
    let o = order(&app, u, "o4", json!([{"productId": id, "quantity": 2}])).await;
    assert_eq!(o.status, StatusCode::CREATED, "{}", o.raw);

    // Sold out, then a lower per-order limit: the request over it is told so, not "no stock".
    let set = app
        .call(
            Method::PUT,
            &format!("/api/v1/admin/products/{id}/stock"),
            Some(ADMIN),
            None,
            Some(json!({"stock": 0})),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.raw);
    let o = order(&app, u, "o5", json!([{"productId": id, "quantity": 2}])).await;
    expect(&o, 400, "INSUFFICIENT_STOCK");
    let a = patch(&app, id, Some(ADMIN), json!({"maxPerOrder": 1})).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.raw);
    let o = order(&app, u, "o6", json!([{"productId": id, "quantity": 2}])).await;
    expect(&o, 400, "EXCEEDED_LIMITED_QUANTITY");

    // Refusals: nothing to change, an unknown field, a null where a value is needed, bad values.
    let before = product(&app, id).await;
    for (body, names) in [
        (json!({}), "maxPerCustomer"),
        (json!({"stock": 5}), "stock"),
        (json!({"price": 10, "maxPerCustomr": 1}), "maxPerCustomr"),
        (json!({"name": null}), "name"),
        (json!({"price": 0}), "price"),
        (json!({"maxPerOrder": 0}), "maxPerOrder"),
        (json!({"maxPerCustomer": -1}), "maxPerCustomer"),
        (json!({"name": "  "}), "name"),
    ] {
        let a = patch(&app, id, Some(ADMIN), body.clone()).await;
        expect(&a, 400, "INVALID_INPUT");
        assert!(a.raw.contains(names), "{body}: {}", a.raw);
    }
    assert_eq!(
        product(&app, id).await,
        before,
        "a refused change changes nothing"
    );
    let a = patch(&app, 987_654, Some(ADMIN), json!({"price": 10})).await;
    expect(&a, 404, "PRODUCT_NOT_FOUND");
    let a = patch(&app, id, Some(u), json!({"price": 10})).await;
    expect(&a, 403, "FORBIDDEN");
    let a = patch(&app, id, None, json!({"price": 10})).await;
    expect(&a, 401, "UNAUTHORIZED");
    assert_eq!(product(&app, id).await, before);
}
