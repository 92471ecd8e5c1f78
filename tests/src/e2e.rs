//! The HTTP end-to-end checks that hold on every backend, written once: each starts the real
//! service with `flags` (the backend choice) on an ephemeral port and talks real HTTP to it.
//! Run by the `http` test binary: `tests/http/memory.rs` (memory) and `tests/http/backends.rs`
//! (Postgres; Postgres + Redis).

use crate::http::{answer, spawn_app, token, Answer, TestServer, SECRET};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

mod accounts;
mod limits;
mod lists;
mod replay;
pub use accounts::*;
pub use limits::*;
pub use lists::*;
pub use replay::*;

pub(crate) const ADMIN: i64 = 1_000;

fn expect(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status.as_u16(), status, "{}", a.raw);
    assert_eq!(a.code(), Some(code), "{}", a.raw);
    assert_eq!(a.body["success"], json!(false));
    assert!(a.body["timestamp"].is_string());
}

async fn pending_order(app: &TestServer, u: i64) -> (i64, i64) {
    app.post(
        "/api/v1/users/me/balance/charge",
        u,
        Some("fund"),
        json!({"amount": 1_000_000}),
    )
    .await;
    let o = app
        .post(
            "/api/v1/orders",
            u,
            Some("order"),
            json!({"items": [{"productId": 1, "quantity": 1}]}),
        )
        .await;
    assert_eq!(o.status, StatusCode::CREATED, "{}", o.raw);
    (
        o.data()["orderId"].as_i64().unwrap(),
        o.data()["total"].as_i64().unwrap(),
    )
}

pub async fn five_hundred_users_race_for_the_100_flash_coupons(flags: &[&str]) {
    let app = Arc::new(spawn_app(flags).await);
    let mut tasks = Vec::new();
    for u in 1..=500 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.call(Method::POST, "/api/v1/coupons/1/issue", Some(u), None, None)
                .await
        }));
    }
    let (mut reserved, mut sold_out) = (0, 0);
    for t in tasks {
        let a = t.await.unwrap();
        match (a.status.as_u16(), a.code()) {
            (200, None) => {
                assert_eq!(a.data()["status"], "RESERVED");
                reserved += 1;
            }
            (409, Some("COUPON_SOLD_OUT")) => sold_out += 1,
            other => panic!("unexpected {other:?}: {}", a.raw),
        }
    }
    assert_eq!((reserved, sold_out), (100, 400));
    app.drained().await;
    let stock = app.get("/api/v1/admin/coupons/1/stock", Some(ADMIN)).await;
    assert_eq!(
        stock.data(),
        &json!({"couponId": 1, "quantity": 100, "remaining": 0, "reserved": 100, "persisted": 100, "failed": 0})
    );
}

pub async fn a_whole_shopping_flow_and_a_refund(flags: &[&str]) {
    // The popular-products answer is cached; a short TTL lets the sale show up quickly.
    let app = spawn_app(&[flags, &["--popularity-ttl-secs", "1"]].concat()).await;
    let u = 42;
    let charged = app
        .post(
            "/api/v1/users/me/balance/charge",
            u,
            Some("c1"),
            json!({"amount": 100_000}),
        )
        .await;
    assert_eq!(charged.status, StatusCode::OK, "{}", charged.raw);
    assert_eq!(charged.data()["balance"], 100_000);
    let cart = app
        .post(
            "/api/v1/cart/items",
            u,
            None,
            json!({"productId": 1, "quantity": 2}),
        )
        .await;
    assert_eq!(
        cart.data(),
        &json!({"items": [{"productId": 1, "quantity": 2}]})
    );
    app.post(
        "/api/v1/cart/items",
        u,
        None,
        json!({"productId": 2, "quantity": 1}),
    )
    .await;
    let cart_coupon = app
        .call(Method::POST, "/api/v1/coupons/2/issue", Some(u), None, None)
        .await;
    assert_eq!(cart_coupon.data()["status"], "ISSUED");
    let item_coupon = app
        .call(Method::POST, "/api/v1/coupons/3/issue", Some(u), None, None)
        .await;
    let ids = [
        cart_coupon.data()["userCouponId"].as_i64().unwrap(),
        item_coupon.data()["userCouponId"].as_i64().unwrap(),
    ];
    let order = app
        .post(
            "/api/v1/orders",
            u,
            Some("o1"),
            json!({"fromCart": true, "userCouponIds": ids}),
        )
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.raw);
    let o = order.data();
    // 2 x 10,000 + 5,000 = 25,000; ITEM3000 on the hoodie line (it takes off the most there:
    // 3,000 either way, so the lower product id), then 10% of 22,000 = 2,200.
    assert_eq!(o["subtotal"], 25_000);
    assert_eq!(o["discount"], 5_200);
    assert_eq!(o["total"], 19_800);
    assert_eq!(o["status"], "PENDING_PAYMENT");
    let id = o["orderId"].as_i64().unwrap();
    assert_eq!(
        app.get("/api/v1/cart", Some(u)).await.data(),
        &json!({"items": []})
    );
    let paid = app
        .post(
            &format!("/api/v1/orders/{id}/payment"),
            u,
            Some("p1"),
            json!({"amount": 19_800}),
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.raw);
    assert_eq!(paid.data()["status"], "APPROVED");
    assert_eq!(paid.data()["balance"], 80_200);
    let ledger = app
        .get("/api/v1/users/me/balance/transactions", Some(u))
        .await;
    let kinds: Vec<_> = ledger
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(kinds, vec![json!("USE"), json!("CHARGE")]);
    assert_eq!(
        app.get("/api/v1/products/1", None).await.data()["stock"],
        998
    );
    let mine = app.get("/api/v1/users/me/coupons", Some(u)).await;
    assert!(
        mine.data()
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "USED"),
        "{}",
        mine.raw
    );
    let mut popular = app
        .get("/api/v1/products/popular?days=3&limit=5", None)
        .await;
    for _ in 0..40 {
        if popular.data()[0]["productId"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        popular = app
            .get("/api/v1/products/popular?days=3&limit=5", None)
            .await;
    }
    assert_eq!(popular.data()[0]["productId"], 1, "{}", popular.raw);
    assert_eq!(popular.data()[0]["soldQuantity"], 2);
    assert_eq!(popular.data()[0]["rank"], 1);
    // Cancelling a paid order refunds it and gives everything back.
    let cancelled = app
        .call(
            Method::POST,
            &format!("/api/v1/orders/{id}/cancel"),
            Some(u),
            None,
            None,
        )
        .await;
    assert_eq!(cancelled.data()["status"], "CANCELLED", "{}", cancelled.raw);
    assert_eq!(
        app.get("/api/v1/users/me/balance", Some(u)).await.data()["balance"],
        100_000
    );
    assert_eq!(
        app.get("/api/v1/products/1", None).await.data()["stock"],
        1_000
    );
    assert_eq!(
        app.get("/api/v1/products/2", None).await.data()["stock"],
        1_000
    );
    let mine = app.get("/api/v1/users/me/coupons", Some(u)).await;
    assert!(mine
        .data()
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["status"] == "ISSUED"));
    let audit = app.service.app.audit().await.unwrap();
    assert!(audit.violations.is_empty(), "{:?}", audit.violations);
}

pub async fn one_payment_sent_twenty_times_at_once_with_one_key(flags: &[&str]) {
    let app = Arc::new(spawn_app(flags).await);
    let (id, total) = pending_order(&app, 5).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.post(
                &format!("/api/v1/orders/{id}/payment"),
                5,
                Some("same"),
                json!({"amount": total}),
            )
            .await
        }));
    }
    let mut bodies = HashSet::new();
    let (mut fresh, mut busy) = (0, 0);
    for t in tasks {
        let a = t.await.unwrap();
        match a.status.as_u16() {
            200 => {
                if !a.replayed {
                    fresh += 1;
                }
                bodies.insert(a.data_text());
            }
            409 => {
                assert_eq!(a.code(), Some("REQUEST_IN_PROGRESS"));
                assert!(a.retry_after.is_some());
                busy += 1;
            }
            _ => panic!("{}", a.raw),
        }
    }
    assert_eq!(
        fresh, 1,
        "one request ran the payment ({busy} were told to retry)"
    );
    assert_eq!(
        bodies.len(),
        1,
        "every 200 carries the same data, byte for byte"
    );
    let again = app
        .post(
            &format!("/api/v1/orders/{id}/payment"),
            5,
            Some("\"same\""),
            json!({"amount": total}),
        )
        .await;
    assert!(again.replayed);
    assert!(bodies.contains(&again.data_text()));
    let ledger = app
        .get("/api/v1/users/me/balance/transactions", Some(5))
        .await;
    let uses = ledger
        .data()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "USE")
        .count();
    assert_eq!(uses, 1);
}

pub async fn one_payment_sent_twenty_times_at_once_with_twenty_keys(flags: &[&str]) {
    let app = Arc::new(spawn_app(flags).await);
    let (id, total) = pending_order(&app, 6).await;
    let mut tasks = Vec::new();
    for k in 0..20 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.post(
                &format!("/api/v1/orders/{id}/payment"),
                6,
                Some(&format!("k{k}")),
                json!({"amount": total}),
            )
            .await
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let a = t.await.unwrap();
        match (a.status.as_u16(), a.code()) {
            (200, None) => ok += 1,
            (400, Some("INVALID_ORDER_STATE")) => refused += 1,
            _ => panic!("{}", a.raw),
        }
    }
    assert_eq!((ok, refused), (1, 19));
    let balance = app.get("/api/v1/users/me/balance", Some(6)).await;
    assert_eq!(balance.data()["balance"], 1_000_000 - total);
}

pub async fn bad_input_is_a_4xx_envelope_never_a_5xx(flags: &[&str]) {
    let app = spawn_app(flags).await;
    let t = token(3);
    let charge = format!("{}/api/v1/users/me/balance/charge", app.base);
    let expired = {
        use jsonwebtoken::{encode, EncodingKey, Header};
        let claims = json!({"sub": "3", "role": "user", "exp": 1_000_000});
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let foreign =
        stockade_http::issue_token(&stockade_http::JwtSecret::new("not-ours"), 3, true, 60)
            .unwrap();
    let bodies: Vec<(&str, &str)> = vec![
        ("{", "application/json"),
        ("not json", "application/json"),
        ("{\"amount\": \"1000\"}", "application/json"),
        ("{\"amount\": 1.5}", "application/json"),
        ("{\"amount\": -1}", "application/json"),
        ("{\"amount\": 0}", "application/json"),
        ("{\"amount\": 99999999999999999999999}", "application/json"),
        ("{\"amount\": 9223372036854775807}", "application/json"),
        ("{}", "application/json"),
        ("[]", "application/json"),
        ("null", "application/json"),
        ("{\"amount\": 5}", "text/plain"),
    ];
    for (body, ct) in bodies {
        let a = answer(
            app.client
                .post(&charge)
                .bearer_auth(&t)
                .header("Idempotency-Key", format!("k-{body}"))
                .header("content-type", ct)
                .body(body.to_owned())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(a.status.is_client_error(), "{body}: {}", a.raw);
        assert_eq!(a.body["success"], json!(false), "{body}");
        if body.contains("\"1000\"") {
            assert!(
                a.code() == Some("INVALID_INPUT") && a.raw.contains("amount"),
                "names the field: {}",
                a.raw
            );
        }
    }
    for auth in [
        None,
        Some("Bearer"),
        Some("Bearer garbage"),
        Some("Basic abc"),
        Some(&*format!("Bearer {expired}")),
        Some(&*format!("Bearer {foreign}")),
    ] {
        let mut req = app
            .client
            .get(format!("{}/api/v1/users/me/balance", app.base));
        if let Some(h) = auth {
            req = req.header("authorization", h);
        }
        let a = answer(req.send().await.unwrap()).await;
        expect(&a, 401, "UNAUTHORIZED");
    }
    let keys = ["", &"k".repeat(256)];
    for k in keys {
        let a = answer(
            app.client
                .post(&charge)
                .bearer_auth(&t)
                .header("Idempotency-Key", k)
                .json(&json!({"amount": 1}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        expect(&a, 400, "INVALID_INPUT");
    }
    for path in [
        "/api/v1/products/abc",
        "/api/v1/products/-1",
        "/api/v1/products/0",
        "/api/v1/products/99999999999999999999",
        "/api/v1/products/popular?days=0",
        "/api/v1/products/popular?limit=x",
        "/api/v1/products/popular?days=100000",
    ] {
        let a = app.get(path, None).await;
        expect(&a, 400, "INVALID_INPUT");
    }
    for (method, path) in [
        (Method::GET, "/"),
        (Method::POST, "/api/v1/products"),
        (Method::DELETE, "/api/v1/cart"),
        (Method::PUT, "/health"),
    ] {
        let a = app.call(method, path, Some(3), None, None).await;
        assert!(matches!(a.status.as_u16(), 404 | 405), "{path}: {}", a.raw);
        assert_eq!(a.body["success"], json!(false));
    }
    let a = answer(
        app.client
            .post(&charge)
            .bearer_auth(&t)
            .header("Idempotency-Key", "big")
            .header("content-type", "application/json")
            .body(vec![b' '; 2 * 1024 * 1024])
            .send()
            .await
            .unwrap(),
    )
    .await;
    expect(&a, 413, "PAYLOAD_TOO_LARGE");
    // Numbers out of range in admin bodies.
    let a = app
        .call(
            Method::POST,
            "/api/v1/admin/products",
            Some(ADMIN),
            None,
            Some(json!({"name": "x", "price": 1, "stock": -1, "maxPerOrder": 1})),
        )
        .await;
    expect(&a, 400, "INVALID_INPUT");
    assert!(a.raw.contains("stock"));
    let a = app.call(Method::POST, "/api/v1/admin/coupons", Some(ADMIN), None, Some(json!({"name": "x", "kind": "CART", "discountType": "PERCENT", "discountValue": 101, "quantity": 1, "mode": "LOCKED"}))).await;
    expect(&a, 400, "INVALID_INPUT");
    // The service is still fine.
    assert_eq!(app.get("/health", None).await.status, StatusCode::OK);
}

/// Every body refuses a field its operation does not know, naming it, before anything happens
/// (a typo must not change what is bought); every 201 says where its resource is, and that
/// path answers it.
pub async fn unknown_fields_are_refused_and_created_things_have_a_location(flags: &[&str]) {
    let app = spawn_app(flags).await;
    let u = 41;
    app.post(
        "/api/v1/users/me/balance/charge",
        u,
        Some("fund"),
        json!({"amount": 1_000_000}),
    )
    .await;
    let product = app
        .post(
            "/api/v1/admin/products",
            ADMIN,
            None,
            json!({"name": "Strict", "price": 1_000, "stock": 10, "maxPerOrder": 5}),
        )
        .await;
    assert_eq!(product.status, StatusCode::CREATED, "{}", product.raw);
    let pid = product.data()["id"].as_i64().unwrap();
    let refused: Vec<(Method, String, Option<&str>, Value, &str)> = vec![
        (
            Method::POST,
            "/api/v1/users/me/balance/charge".into(),
            Some("c1"),
            json!({"amount": 1, "amout": 2}),
            "amout",
        ),
        (
            Method::POST,
            "/api/v1/cart/items".into(),
            None,
            json!({"productId": pid, "quantity": 1, "qty": 3}),
            "qty",
        ),
        // The typo of the contract: a line's coupon list spelled like the order's.
        (
            Method::POST,
            "/api/v1/orders".into(),
            Some("o1"),
            json!({"items": [{"productId": pid, "quantity": 1, "userCouponIds": [3]}]}),
            "userCouponIds",
        ),
        (
            Method::POST,
            "/api/v1/orders".into(),
            Some("o2"),
            json!({"fromCart": true, "userCouponId": 3}),
            "userCouponId",
        ),
        (
            Method::POST,
            "/api/v1/orders/1/payment".into(),
            Some("p1"),
            json!({"amount": 1, "currency": "KRW"}),
            "currency",
        ),
        (
            Method::POST,
            "/api/v1/admin/products".into(),
            None,
            json!({"name": "X", "price": 1, "stock": 1, "maxPerOrder": 1, "colour": "red"}),
            "colour",
        ),
        (
            Method::PUT,
            format!("/api/v1/admin/products/{pid}/stock"),
            None,
            json!({"stock": 1, "reason": "count"}),
            "reason",
        ),
        (
            Method::POST,
            "/api/v1/admin/coupons".into(),
            None,
            json!({"name": "C", "kind": "CART", "discountType": "FIXED", "discountValue": 1,
                   "minOrderAmount": 0, "quantity": 1, "mode": "LOCKED", "maxUses": 1}),
            "maxUses",
        ),
    ];
    for (method, path, key, body, field) in refused {
        let user = if path.contains("/admin/") { ADMIN } else { u };
        let a = app.call(method, &path, Some(user), key, Some(body)).await;
        expect(&a, 400, "INVALID_INPUT");
        let message = a.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{path}: {message}");
    }
    // Nothing of the refused requests happened.
    let balance = app.get("/api/v1/users/me/balance", Some(u)).await;
    assert_eq!(
        balance.data()["balance"],
        json!(1_000_000),
        "{}",
        balance.raw
    );
    let cart = app.get("/api/v1/cart", Some(u)).await;
    assert_eq!(cart.data()["items"], json!([]), "{}", cart.raw);
    let stock = app.get(&format!("/api/v1/products/{pid}"), None).await;
    assert_eq!(stock.data()["stock"], json!(10));

    // 201s and their Location.
    assert_eq!(
        product.location.as_deref(),
        Some(format!("/api/v1/products/{pid}").as_str())
    );
    let coupon = app
        .post(
            "/api/v1/admin/coupons",
            ADMIN,
            None,
            json!({"name": "LOC", "kind": "CART", "discountType": "FIXED", "discountValue": 1,
                   "minOrderAmount": 0, "quantity": 5, "mode": "LOCKED"}),
        )
        .await;
    assert_eq!(coupon.status, StatusCode::CREATED, "{}", coupon.raw);
    let order = app
        .post(
            "/api/v1/orders",
            u,
            Some("o3"),
            json!({"items": [{"productId": pid, "quantity": 1}]}),
        )
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.raw);
    let again = app
        .post(
            "/api/v1/orders",
            u,
            Some("o3"),
            json!({"items": [{"productId": pid, "quantity": 1}]}),
        )
        .await;
    assert!(again.replayed);
    assert_eq!(
        again.location, order.location,
        "a replay points at the same order"
    );
    for (created, user, id) in [
        (&product, None, "id"),
        (&coupon, Some(ADMIN), "id"),
        (&order, Some(u), "orderId"),
    ] {
        let location = created.location.clone().expect("a 201 has a Location");
        let fetched = app.get(&location, user).await;
        assert_eq!(
            fetched.status,
            StatusCode::OK,
            "{location}: {}",
            fetched.raw
        );
        assert_eq!(fetched.data()[id], created.data()[id], "{location}");
        assert_eq!(fetched.data()["name"], created.data()["name"], "{location}");
    }
    let missing = app.get("/api/v1/admin/coupons/999999", Some(ADMIN)).await;
    expect(&missing, 404, "COUPON_NOT_FOUND");
}

pub async fn the_openapi_document_lists_every_route_of_the_api(flags: &[&str]) {
    let app = spawn_app(flags).await;
    let doc: Value = app.get("/openapi.json", None).await.body;
    // The operations the API has: the endpoint table of docs/api.md.
    let rows = include_str!("../../docs/api.md")
        .lines()
        .map(|l| l.split('|').map(str::trim));
    let cells = rows.filter_map(|mut c| Some((c.nth(1)?, c.next()?)));
    let table: Vec<(String, &str)> = cells
        .filter(|(m, p)| {
            ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(m) && p.starts_with('/')
        })
        .map(|(m, p)| (m.to_lowercase(), p.split('?').next().unwrap_or(p)))
        .collect();
    assert_eq!(table.len(), 38, "docs/api.md's table as read: {table:?}");
    assert_eq!(doc["openapi"], "3.1.0");
    for (method, path) in &table {
        assert!(
            doc["paths"][*path][method.as_str()].is_object(),
            "{method} {path} is missing"
        );
    }
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented,
        table.len(),
        "the document lists routes the API does not have"
    );
    // And every documented route is served (not a 404/405 from the router).
    for (method, path) in &table {
        let concrete = path
            .replace("{id}", "1")
            .replace("{productId}", "1")
            .replace("{couponId}", "1")
            .replace("{orderId}", "1")
            .replace("{asset}", "docs-init.js");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let a = app
            .call(m, &concrete, Some(ADMIN), Some("k"), Some(json!({})))
            .await;
        assert!(
            !(a.code() == Some("NOT_FOUND") || a.code() == Some("METHOD_NOT_ALLOWED")),
            "{method} {path}: {}",
            a.raw
        );
    }
}

/// Each metric family in `text` has a `# TYPE` and a `# HELP` line.
fn every_family_has_help_and_type(text: &str) {
    let mut families = std::collections::BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                text.contains(&format!("# TYPE {base} histogram"))
                    .then_some(base)
            })
            .unwrap_or(name);
        families.insert(family.to_owned());
    }
    assert!(families.len() > 5, "{families:?}");
    for family in families {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "no TYPE for {family}"
        );
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "no HELP for {family}"
        );
    }
}

async fn scrape(app: &TestServer) -> String {
    app.client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of one series of a Prometheus text page (0 when absent).
fn series(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The metrics recorder is one per process, and this check runs once per backend in the same
/// test binary: its runs take turns so each sees only its own three requests.
static METRICS_CHECK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn metrics_count_requests_and_gate_outcomes(flags: &[&str]) {
    let _turn = METRICS_CHECK.lock().await;
    let app = spawn_app(flags).await;
    // Every request is counted once, under its route, method and status (the series are
    // shared by every test of this process, so this one uses a combination no other sends).
    let refused = r#"http_requests_total{method="PATCH",route="/health",status="405"}"#;
    let before = series(&scrape(&app).await, refused);
    for _ in 0..3 {
        let r = app
            .client
            .patch(format!("{}/health", app.base))
            .header("x-request-id", "e2e-request-7")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 405);
        assert_eq!(r.headers()["x-request-id"], "e2e-request-7");
    }
    assert_eq!(series(&scrape(&app).await, refused) - before, 3.0);
    app.get("/api/v1/products", None).await;
    app.call(
        Method::POST,
        "/api/v1/coupons/1/issue",
        Some(77),
        None,
        None,
    )
    .await;
    // The business counters move with what was sold; replays do not count again.
    let text = scrape(&app).await;
    let created = series(&text, "stockade_orders_created_total");
    let paid = series(&text, "stockade_orders_paid_total");
    let revenue = series(&text, "stockade_revenue_won_total");
    let cancelled = series(&text, "stockade_orders_cancelled_total");
    let issued = series(&text, r#"stockade_coupons_issued_total{mode="LOCKED"}"#);
    let buyer = 78;
    let (order, total) = pending_order(&app, buyer).await;
    let again = app
        .post(
            "/api/v1/orders",
            buyer,
            Some("order"),
            json!({"items": [{"productId": 1, "quantity": 1}]}),
        )
        .await;
    assert!(again.replayed);
    let pay = app
        .post(
            &format!("/api/v1/orders/{order}/payment"),
            buyer,
            Some("pay"),
            json!({"amount": total}),
        )
        .await;
    assert_eq!(pay.status, StatusCode::OK, "{}", pay.raw);
    let (second, _) = {
        let o = app
            .post(
                "/api/v1/orders",
                buyer,
                Some("order-2"),
                json!({"items": [{"productId": 1, "quantity": 1}]}),
            )
            .await;
        assert_eq!(o.status, StatusCode::CREATED, "{}", o.raw);
        (o.data()["orderId"].as_i64().unwrap(), ())
    };
    let cancel = app
        .call(
            Method::POST,
            &format!("/api/v1/orders/{second}/cancel"),
            Some(buyer),
            None,
            None,
        )
        .await;
    assert_eq!(cancel.status, StatusCode::OK, "{}", cancel.raw);
    let locked = app
        .call(
            Method::POST,
            "/api/v1/coupons/2/issue",
            Some(buyer),
            None,
            None,
        )
        .await;
    assert_eq!(locked.status, StatusCode::OK, "{}", locked.raw);
    // Other tests of this process sell too (the recorder is one per process): at least what
    // this one did.
    let text = scrape(&app).await;
    let grew = |name: &str, before: f64| series(&text, name) - before;
    assert!(
        grew("stockade_orders_created_total", created) >= 2.0,
        "{text}"
    );
    assert!(grew("stockade_orders_paid_total", paid) >= 1.0, "{text}");
    #[allow(clippy::cast_precision_loss)]
    let total = total as f64;
    assert!(
        grew("stockade_revenue_won_total", revenue) >= total,
        "{text}"
    );
    assert!(
        grew("stockade_orders_cancelled_total", cancelled) >= 1.0,
        "{text}"
    );
    assert!(
        grew(r#"stockade_coupons_issued_total{mode="LOCKED"}"#, issued) >= 1.0,
        "{text}"
    );
    // The process and, on Postgres, its pools (sampled every second).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let text = scrape(&app).await;
    for name in ["process_resident_memory_bytes", "process_open_fds"] {
        assert!(series(&text, name) > 0.0, "{name} missing: {text}");
    }
    // Whole seconds: a young process may show 0.
    assert!(text
        .lines()
        .any(|l| l.starts_with("process_cpu_seconds_total ")));
    if flags.contains(&"postgres") {
        let open = series(&text, r#"db_pool_max_connections{pool="store"}"#);
        assert!(open >= 1.0, "{text}");
        assert!(text.contains(r#"db_pool_connections{pool="store",state="idle"}"#));
        // Every unit of work above checked a connection out of the store's pool, timed.
        let waits = series(&text, r#"db_pool_wait_seconds_count{pool="store"}"#);
        assert!(waits >= 3.0, "{text}");
        assert!(text.contains(r#"db_pool_wait_seconds_bucket{pool="store",le="0.001"}"#));
    }
    // Every family says what it is and what it counts.
    every_family_has_help_and_type(&text);
    assert!(text.contains("http_requests_total{"), "{text}");
    assert!(text.contains("route=\"/api/v1/products\""));
    assert!(text.contains("http_request_duration_seconds"));
    assert!(text.contains("coupon_gate_outcomes_total{outcome=\"reserved\"}"));
    assert!(
        text.contains("lock_wait_seconds")
            || text.contains("idempotency_begins_total")
            || text.contains("coupon_gate")
    );
}
