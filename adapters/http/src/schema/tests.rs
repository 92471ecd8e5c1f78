//! The application's views, rendered, against the schemas that document them: a field added to
//! a view, renamed or given a value outside its documented enum fails here.

use serde::Serialize;
use serde_json::{json, Value};
use stockade_application::ports::popularity::PopularProduct;
use stockade_application::views::*;
use stockade_domain::coupon::{CouponKind, IssuanceMode, UserCouponStatus};
use stockade_domain::{LedgerKind, OrderStatus, PaymentStatus};

fn document() -> Value {
    serde_json::to_value(crate::routes::document()).expect("json")
}

/// Checks `value` against `schema`: types, required and unknown properties, enums, bounds.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return check(doc, &doc["components"]["schemas"][name], value, at);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let actual = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if !types.is_empty() && !types.contains(&actual) {
        return Err(format!("{at}: {actual} where the schema says {types:?}"));
    }
    if let Some(options) = schema["enum"].as_array() {
        if !options.contains(value) {
            return Err(format!("{at}: {value} is not in {options:?}"));
        }
    }
    if let (Some(min), Some(n)) = (schema["minimum"].as_i64(), value.as_i64()) {
        if n < min {
            return Err(format!("{at}: {n} is below {min}"));
        }
    }
    match value {
        Value::Object(fields) => {
            let props = schema["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().unwrap_or_default();
                if !fields.contains_key(name) {
                    return Err(format!("{at}: required {name} is missing"));
                }
            }
            for (name, v) in fields {
                let sub = props
                    .get(name)
                    .ok_or_else(|| format!("{at}: {name} is not documented"))?;
                check(doc, sub, v, &format!("{at}.{name}"))?;
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check(doc, &schema["items"], item, &format!("{at}[{i}]"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn conforms(name: &str, view: &impl Serialize) {
    let doc = document();
    let value = serde_json::to_value(view).expect("json");
    let schema = json!({ "$ref": format!("#/components/schemas/{name}") });
    if let Err(e) = check(&doc, &schema, &value, name) {
        panic!("{e}");
    }
}

const T: &str = "2026-12-04T10:00:00.000Z";

#[test]
fn every_view_renders_as_its_schema_says() {
    conforms(
        "Account",
        &AccountView {
            user_id: 1_000_001,
            email: "ann@example.com".into(),
            name: "Ann".into(),
        },
    );
    conforms(
        "Me",
        &MeView {
            user_id: 1_000_001,
            role: "user".into(),
            email: Some("ann@example.com".into()),
            name: Some("Ann".into()),
        },
    );
    conforms(
        "Me",
        &MeView {
            user_id: 7,
            role: "admin".into(),
            email: None,
            name: None,
        },
    );
    conforms(
        "Login",
        &crate::handlers::accounts::LoginAnswer {
            access_token: "a.b.c".into(),
            token_type: "Bearer",
            expires_in: 3_600,
            user_id: 1_000_001,
        },
    );
    conforms(
        "Product",
        &ProductView {
            id: 1,
            name: "p".into(),
            price: 10,
            stock: 3,
            max_per_order: 5,
            max_per_customer: None,
        },
    );
    conforms(
        "Product",
        &ProductView {
            id: 1,
            name: "p".into(),
            price: 10,
            stock: 3,
            max_per_order: 5,
            max_per_customer: Some(2),
        },
    );
    conforms(
        "Balance",
        &BalanceView {
            user_id: 7,
            balance: 0,
        },
    );
    conforms(
        "ChargeReceipt",
        &ChargeReceipt {
            user_id: 7,
            balance: 10,
            transaction_id: 1,
        },
    );
    conforms(
        "Cart",
        &CartView {
            items: vec![CartItemView {
                product_id: 1,
                quantity: 2,
            }],
        },
    );
    conforms(
        "CouponStock",
        &CouponStockView {
            coupon_id: 1,
            quantity: 5,
            remaining: 4,
            reserved: 1,
            persisted: 0,
            failed: 0,
        },
    );
    conforms(
        "Reconcile",
        &ReconcileReport {
            checked: 1,
            repaired: 0,
            rolled_back: 0,
        },
    );
    conforms(
        "Popular",
        &PopularProduct {
            product_id: 1,
            name: "p".into(),
            sold_quantity: 3,
            rank: 1,
        },
    );
    for kind in [LedgerKind::Charge, LedgerKind::Use, LedgerKind::Refund] {
        conforms(
            "Transaction",
            &TransactionView {
                id: 1,
                kind: kind.as_str().into(),
                amount: 5,
                balance_after: 5,
                created_at: T.into(),
            },
        );
    }
    for (status, user_coupon_id) in [("ISSUED", Some(3)), ("RESERVED", None)] {
        conforms(
            "Issue",
            &IssueView {
                coupon_id: 1,
                user_id: 7,
                user_coupon_id,
                status: status.into(),
            },
        );
    }
    for kind in [CouponKind::Cart, CouponKind::CartItem] {
        for status in [
            UserCouponStatus::Issued,
            UserCouponStatus::Used,
            UserCouponStatus::Expired,
        ] {
            conforms(
                "UserCoupon",
                &UserCouponView {
                    user_coupon_id: 1,
                    coupon_id: 1,
                    name: "c".into(),
                    kind: kind.as_str().into(),
                    status: status.as_str().into(),
                    expires_at: T.into(),
                },
            );
        }
        for mode in [IssuanceMode::Locked, IssuanceMode::Flash] {
            for (discount_type, max_discount, valid) in [
                ("FIXED", None, None),
                ("PERCENT", Some(100), Some(T.to_owned())),
            ] {
                conforms(
                    "Coupon",
                    &CouponView {
                        id: 1,
                        name: "c".into(),
                        kind: kind.as_str().into(),
                        discount_type: discount_type.into(),
                        discount_value: 10,
                        max_discount,
                        min_order_amount: 0,
                        quantity: 1,
                        mode: mode.as_str().into(),
                        valid_from: valid.clone(),
                        valid_until: valid,
                    },
                );
            }
        }
    }
    for status in [
        OrderStatus::PendingPayment,
        OrderStatus::Paid,
        OrderStatus::PaymentFailed,
        OrderStatus::Cancelled,
        OrderStatus::Expired,
    ] {
        let line = |user_coupon_id| OrderLineView {
            product_id: 1,
            name: "p".into(),
            unit_price: 10,
            quantity: 1,
            line_total: 10,
            discount: 0,
            user_coupon_id,
        };
        conforms(
            "Order",
            &OrderView {
                order_id: 1,
                status: status.as_str().into(),
                items: vec![line(None), line(Some(2))],
                user_coupon_ids: vec![3],
                subtotal: 20,
                discount: 0,
                total: 20,
                expires_at: T.into(),
            },
        );
    }
    for status in [
        PaymentStatus::Pending,
        PaymentStatus::Approved,
        PaymentStatus::Failed,
        PaymentStatus::Refunded,
    ] {
        conforms(
            "Payment",
            &PaymentReceipt {
                payment_id: 1,
                order_id: 1,
                amount: 20,
                status: status.as_str().into(),
                balance: 0,
            },
        );
    }
}

#[test]
fn an_undocumented_field_is_caught() {
    let doc = document();
    let schema = json!({ "$ref": "#/components/schemas/Balance" });
    let value = json!({ "userId": 1, "balance": 0, "extra": 1 });
    assert!(check(&doc, &schema, &value, "Balance").is_err());
}
