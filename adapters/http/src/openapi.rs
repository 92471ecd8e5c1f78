//! The route table — the single source of both the router and the OpenAPI 3 document.

use crate::handlers::{admin, ops, shop};
use crate::Shared;
use axum::routing::{delete, get, post, put, MethodRouter};
use serde_json::{json, Map, Value};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    User,
    Admin,
}

/// Whether a route takes an `Idempotency-Key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idem {
    No,
    Optional,
    Required,
}

/// One route: what the router serves and what the document says of it.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
    pub idempotency: Idem,
    /// Component name of the JSON body, if any.
    pub body: Option<&'static str>,
    /// Component name of `data` in the success envelope; `None` for non-JSON answers.
    pub data: Option<&'static str>,
    pub status: u16,
    pub handler: fn() -> MethodRouter<Shared>,
}

#[allow(clippy::too_many_arguments)]
const fn r(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    access: Access,
    idempotency: Idem,
    body: Option<&'static str>,
    data: Option<&'static str>,
    status: u16,
    handler: fn() -> MethodRouter<Shared>,
) -> Route {
    Route {
        method,
        path,
        summary,
        access,
        idempotency,
        body,
        data,
        status,
        handler,
    }
}

use Access::{Admin, Public, User};
use Idem::{No, Optional, Required};

/// Every route of the API, in API.md's order.
pub const ROUTES: &[Route] = &[
    r(
        "get",
        "/health",
        "Liveness",
        Public,
        No,
        None,
        Some("Status"),
        200,
        || get(ops::health),
    ),
    r(
        "get",
        "/ready",
        "Readiness: backends reachable",
        Public,
        No,
        None,
        Some("Status"),
        200,
        || get(ops::ready),
    ),
    r(
        "get",
        "/metrics",
        "Prometheus exposition",
        Public,
        No,
        None,
        None,
        200,
        || get(ops::metrics),
    ),
    r(
        "get",
        "/openapi.json",
        "This document",
        Public,
        No,
        None,
        None,
        200,
        || get(ops::openapi_json),
    ),
    r(
        "get",
        "/api/v1/products",
        "List products",
        Public,
        No,
        None,
        Some("ProductList"),
        200,
        || get(shop::list_products),
    ),
    r(
        "get",
        "/api/v1/products/{id}",
        "One product",
        Public,
        No,
        None,
        Some("Product"),
        200,
        || get(shop::get_product),
    ),
    r(
        "get",
        "/api/v1/products/popular",
        "Top products by units sold in paid orders",
        Public,
        No,
        None,
        Some("PopularList"),
        200,
        || get(shop::popular_products),
    ),
    r(
        "get",
        "/api/v1/users/me/balance",
        "My balance",
        User,
        No,
        None,
        Some("Balance"),
        200,
        || get(shop::balance),
    ),
    r(
        "post",
        "/api/v1/users/me/balance/charge",
        "Charge my wallet",
        User,
        Required,
        Some("ChargeRequest"),
        Some("ChargeReceipt"),
        200,
        || post(shop::charge),
    ),
    r(
        "get",
        "/api/v1/users/me/balance/transactions",
        "My ledger, newest first",
        User,
        No,
        None,
        Some("TransactionList"),
        200,
        || get(shop::transactions),
    ),
    r(
        "get",
        "/api/v1/cart",
        "My cart",
        User,
        No,
        None,
        Some("Cart"),
        200,
        || get(shop::cart),
    ),
    r(
        "post",
        "/api/v1/cart/items",
        "Add units of a product to my cart",
        User,
        No,
        Some("CartItemRequest"),
        Some("Cart"),
        200,
        || post(shop::add_to_cart),
    ),
    r(
        "delete",
        "/api/v1/cart/items/{productId}",
        "Remove a product from my cart",
        User,
        No,
        None,
        Some("Cart"),
        200,
        || delete(shop::remove_from_cart),
    ),
    r(
        "post",
        "/api/v1/coupons/{couponId}/issue",
        "Get a coupon",
        User,
        Optional,
        None,
        Some("Issue"),
        200,
        || post(shop::issue_coupon),
    ),
    r(
        "get",
        "/api/v1/users/me/coupons",
        "My coupons",
        User,
        No,
        None,
        Some("UserCouponList"),
        200,
        || get(shop::my_coupons),
    ),
    r(
        "post",
        "/api/v1/orders",
        "Create an order (reserves stock and coupons)",
        User,
        Required,
        Some("OrderRequest"),
        Some("Order"),
        201,
        || post(shop::create_order),
    ),
    r(
        "get",
        "/api/v1/orders/{orderId}",
        "One of my orders",
        User,
        No,
        None,
        Some("Order"),
        200,
        || get(shop::get_order),
    ),
    r(
        "post",
        "/api/v1/orders/{orderId}/payment",
        "Pay an order from my wallet",
        User,
        Required,
        Some("PayRequest"),
        Some("Payment"),
        200,
        || post(shop::pay),
    ),
    r(
        "post",
        "/api/v1/orders/{orderId}/cancel",
        "Cancel an order",
        User,
        No,
        None,
        Some("Order"),
        200,
        || post(shop::cancel_order),
    ),
    r(
        "post",
        "/api/v1/admin/products",
        "Create a product",
        Admin,
        No,
        Some("ProductRequest"),
        Some("Product"),
        201,
        || post(admin::create_product),
    ),
    r(
        "put",
        "/api/v1/admin/products/{id}/stock",
        "Set a product's stock",
        Admin,
        No,
        Some("StockRequest"),
        Some("Product"),
        200,
        || put(admin::set_stock),
    ),
    r(
        "post",
        "/api/v1/admin/coupons",
        "Create a coupon",
        Admin,
        No,
        Some("CouponRequest"),
        Some("Coupon"),
        201,
        || post(admin::create_coupon),
    ),
    r(
        "get",
        "/api/v1/admin/coupons/{id}/stock",
        "A coupon's counters",
        Admin,
        No,
        None,
        Some("CouponStock"),
        200,
        || get(admin::coupon_stock),
    ),
    r(
        "post",
        "/api/v1/admin/coupons/{id}/reconcile",
        "Reconcile a FLASH coupon's gate and store",
        Admin,
        No,
        None,
        Some("Reconcile"),
        200,
        || post(admin::reconcile),
    ),
    r(
        "post",
        "/api/v1/admin/reset",
        "Reset the demo data (demo profile only)",
        Admin,
        No,
        None,
        Some("Reset"),
        200,
        || post(admin::reset),
    ),
];

fn int() -> Value {
    json!({"type": "integer", "format": "int64"})
}
fn id() -> Value {
    json!({"type": "integer", "format": "int64", "minimum": 1})
}
fn string() -> Value {
    json!({"type": "string"})
}
fn time() -> Value {
    json!({"type": "string", "format": "date-time"})
}
fn obj(required: &[&str], props: Value) -> Value {
    json!({"type": "object", "required": required, "properties": props})
}
fn list(of: &str) -> Value {
    json!({"type": "array", "items": {"$ref": format!("#/components/schemas/{of}")}})
}

fn schemas() -> Map<String, Value> {
    let mut m = Map::new();
    let mut add = |name: &str, v: Value| {
        m.insert(name.to_owned(), v);
    };
    add("Status", obj(&["status"], json!({"status": string()})));
    add(
        "Reset",
        obj(&["reset"], json!({"reset": {"type": "boolean"}})),
    );
    add(
        "Product",
        obj(
            &["id", "name", "price", "stock", "maxPerOrder"],
            json!({
        "id": id(), "name": string(), "price": int(), "stock": int(), "maxPerOrder": int()}),
        ),
    );
    add("ProductList", list("Product"));
    add(
        "Popular",
        obj(
            &["productId", "name", "soldQuantity", "rank"],
            json!({
        "productId": id(), "name": string(), "soldQuantity": int(), "rank": int()}),
        ),
    );
    add("PopularList", list("Popular"));
    add(
        "Balance",
        obj(
            &["userId", "balance"],
            json!({"userId": id(), "balance": int()}),
        ),
    );
    add(
        "ChargeRequest",
        obj(
            &["amount"],
            json!({"amount": {"type": "integer", "format": "int64", "minimum": 1, "maximum": 1_000_000}}),
        ),
    );
    add(
        "ChargeReceipt",
        obj(
            &["userId", "balance", "transactionId"],
            json!({
        "userId": id(), "balance": int(), "transactionId": id()}),
        ),
    );
    add(
        "Transaction",
        obj(
            &["id", "type", "amount", "balanceAfter", "createdAt"],
            json!({
        "id": id(), "type": {"type": "string", "enum": ["CHARGE", "USE", "REFUND"]},
        "amount": int(), "balanceAfter": int(), "createdAt": time()}),
        ),
    );
    add("TransactionList", list("Transaction"));
    add(
        "CartItem",
        obj(
            &["productId", "quantity"],
            json!({"productId": id(), "quantity": int()}),
        ),
    );
    add("Cart", obj(&["items"], json!({"items": list("CartItem")})));
    add(
        "CartItemRequest",
        obj(
            &["productId", "quantity"],
            json!({
        "productId": id(), "quantity": {"type": "integer", "format": "int64", "minimum": 1}}),
        ),
    );
    add(
        "Issue",
        obj(
            &["couponId", "userId", "status"],
            json!({
        "couponId": id(), "userId": id(), "userCouponId": id(),
        "status": {"type": "string", "enum": ["ISSUED", "RESERVED"]}}),
        ),
    );
    add(
        "UserCoupon",
        obj(
            &[
                "userCouponId",
                "couponId",
                "name",
                "kind",
                "status",
                "expiresAt",
            ],
            json!({
        "userCouponId": id(), "couponId": id(), "name": string(),
        "kind": {"type": "string", "enum": ["CART", "CART_ITEM"]},
        "status": {"type": "string", "enum": ["ISSUED", "USED", "EXPIRED"]}, "expiresAt": time()}),
        ),
    );
    add("UserCouponList", list("UserCoupon"));
    add(
        "OrderItemRequest",
        obj(
            &["productId", "quantity"],
            json!({
        "productId": id(), "quantity": {"type": "integer", "format": "int64", "minimum": 1},
        "userCouponId": id()}),
        ),
    );
    add(
        "OrderRequest",
        json!({"type": "object", "properties": {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/OrderItemRequest"}},
        "fromCart": {"type": "boolean"},
        "userCouponIds": {"type": "array", "items": id()}}}),
    );
    add(
        "OrderLine",
        obj(
            &[
                "productId",
                "name",
                "unitPrice",
                "quantity",
                "lineTotal",
                "discount",
            ],
            json!({
        "productId": id(), "name": string(), "unitPrice": int(), "quantity": int(),
        "lineTotal": int(), "discount": int(), "userCouponId": id()}),
        ),
    );
    add(
        "Order",
        obj(
            &[
                "orderId",
                "status",
                "items",
                "userCouponIds",
                "subtotal",
                "discount",
                "total",
                "expiresAt",
            ],
            json!({
        "orderId": id(),
        "status": {"type": "string", "enum": ["PENDING_PAYMENT", "PAID", "PAYMENT_FAILED", "CANCELLED", "EXPIRED"]},
        "items": list("OrderLine"), "userCouponIds": {"type": "array", "items": id()},
        "subtotal": int(), "discount": int(), "total": int(), "expiresAt": time()}),
        ),
    );
    add(
        "PayRequest",
        obj(
            &["amount"],
            json!({"amount": {"type": "integer", "format": "int64", "minimum": 0}}),
        ),
    );
    add(
        "Payment",
        obj(
            &["paymentId", "orderId", "amount", "status", "balance"],
            json!({
        "paymentId": id(), "orderId": id(), "amount": int(),
        "status": {"type": "string", "enum": ["PENDING", "APPROVED", "FAILED", "REFUNDED"]},
        "balance": int()}),
        ),
    );
    add(
        "ProductRequest",
        obj(
            &["name", "price", "stock", "maxPerOrder"],
            json!({
        "name": {"type": "string", "minLength": 1, "maxLength": 200}, "price": {"type": "integer", "format": "int64", "minimum": 1},
        "stock": {"type": "integer", "format": "int64", "minimum": 0}, "maxPerOrder": {"type": "integer", "format": "int64", "minimum": 1}}),
        ),
    );
    add(
        "StockRequest",
        obj(
            &["stock"],
            json!({"stock": {"type": "integer", "format": "int64", "minimum": 0}}),
        ),
    );
    add(
        "CouponRequest",
        obj(
            &[
                "name",
                "kind",
                "discountType",
                "discountValue",
                "quantity",
                "mode",
            ],
            json!({
        "name": {"type": "string", "minLength": 1, "maxLength": 100},
        "kind": {"type": "string", "enum": ["CART", "CART_ITEM"]},
        "discountType": {"type": "string", "enum": ["FIXED", "PERCENT"]},
        "discountValue": {"type": "integer", "format": "int64", "minimum": 1},
        "maxDiscount": {"type": "integer", "format": "int64", "minimum": 0},
        "minOrderAmount": {"type": "integer", "format": "int64", "minimum": 0},
        "quantity": {"type": "integer", "format": "int64", "minimum": 1},
        "mode": {"type": "string", "enum": ["LOCKED", "FLASH"]},
        "validFrom": time(), "validUntil": time()}),
        ),
    );
    add(
        "Coupon",
        obj(
            &[
                "id",
                "name",
                "kind",
                "discountType",
                "discountValue",
                "minOrderAmount",
                "quantity",
                "mode",
            ],
            json!({
        "id": id(), "name": string(), "kind": string(), "discountType": string(),
        "discountValue": int(), "maxDiscount": int(), "minOrderAmount": int(),
        "quantity": int(), "mode": string(), "validFrom": time(), "validUntil": time()}),
        ),
    );
    add(
        "CouponStock",
        obj(
            &[
                "couponId",
                "quantity",
                "remaining",
                "reserved",
                "persisted",
                "failed",
            ],
            json!({
        "couponId": id(), "quantity": int(), "remaining": int(), "reserved": int(),
        "persisted": int(), "failed": int()}),
        ),
    );
    add(
        "Reconcile",
        obj(
            &["checked", "repaired", "rolledBack"],
            json!({
        "checked": int(), "repaired": int(), "rolledBack": int()}),
        ),
    );
    add(
        "Error",
        obj(
            &["success", "error", "timestamp"],
            json!({
        "success": {"type": "boolean", "enum": [false]},
        "error": obj(&["code", "message"], json!({
            "code": {"type": "string", "enum": stockade_domain::ErrorCode::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>()},
            "message": string()})),
        "timestamp": time()}),
        ),
    );
    m
}

fn envelope(data: &str) -> Value {
    obj(
        &["success", "data", "timestamp"],
        json!({
        "success": {"type": "boolean", "enum": [true]},
        "data": {"$ref": format!("#/components/schemas/{data}")},
        "timestamp": time()}),
    )
}

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            json!({"name": name, "in": "path", "required": true,
            "schema": {"type": "integer", "format": "int64", "minimum": 1}})
        })
        .collect()
}

fn operation(route: &Route) -> Value {
    let mut params = path_params(route.path);
    if route.path == "/api/v1/products/popular" {
        params.push(json!({"name": "days", "in": "query", "required": false,
            "schema": {"type": "integer", "minimum": 1, "maximum": 365, "default": 3}}));
        params.push(json!({"name": "limit", "in": "query", "required": false,
            "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5}}));
    }
    if route.idempotency != Idem::No {
        params.push(json!({"name": "Idempotency-Key", "in": "header",
            "required": route.idempotency == Idem::Required,
            "schema": {"type": "string", "minLength": 1, "maxLength": 255}}));
    }
    let success = match route.data {
        Some(data) => json!({"description": "success",
            "content": {"application/json": {"schema": envelope(data)}}}),
        None => json!({"description": "success"}),
    };
    let mut responses = Map::new();
    responses.insert(route.status.to_string(), success);
    responses.insert(
        "default".to_owned(),
        json!({"description": "an error in the envelope",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
    );
    let mut op = json!({
        "summary": route.summary,
        "operationId": format!("{}{}", route.method, route.path.replace(['/', '{', '}', '.'], "_")),
        "parameters": params,
        "responses": responses,
    });
    if let Some(body) = route.body {
        op["requestBody"] = json!({"required": true, "content": {"application/json": {
            "schema": {"$ref": format!("#/components/schemas/{body}")}}}});
    }
    if route.access != Access::Public {
        op["security"] = json!([{"bearer": []}]);
    }
    op
}

/// The OpenAPI 3 document of [`ROUTES`].
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[route.method] = operation(route);
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Stockade", "version": env!("CARGO_PKG_VERSION"),
            "description": "A commerce backend that stays right under concurrency."},
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    })
}
