//! What the use cases answer: plain data with a stable JSON form (camelCase, integers for
//! money, RFC 3339 times). The HTTP adapter renders these as the `data` of its envelope, and
//! idempotency records keep exactly this JSON, so a replay is byte-for-byte the first answer.

use crate::ports::store::IssuanceFailure;
use serde::{Deserialize, Serialize};
use stockade_domain::{Cart, Coupon, LedgerEntry, Order, Payment, Product, Timestamp, UserCoupon};
use time::format_description::well_known::Rfc3339;

/// Formats a timestamp as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ts: Timestamp) -> String {
    let nanos = i128::from(ts.millis()) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// Parses an RFC 3339 time into a timestamp.
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    let t = time::OffsetDateTime::parse(s, &Rfc3339).ok()?;
    let ms = t.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms).ok().map(Timestamp::from_millis)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BalanceView {
    pub user_id: i64,
    pub balance: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeReceipt {
    pub user_id: i64,
    pub balance: i64,
    pub transaction_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionView {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub amount: i64,
    pub balance_after: i64,
    pub created_at: String,
}

impl From<&LedgerEntry> for TransactionView {
    fn from(e: &LedgerEntry) -> Self {
        TransactionView {
            id: e.id.get(),
            kind: e.kind.as_str().to_owned(),
            amount: e.amount.won(),
            balance_after: e.balance_after.won(),
            created_at: rfc3339(e.created_at),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductView {
    pub id: i64,
    pub name: String,
    pub price: i64,
    pub stock: u32,
    pub max_per_order: u32,
    /// `null` for no limit.
    pub max_per_customer: Option<u32>,
}

impl From<&Product> for ProductView {
    fn from(p: &Product) -> Self {
        ProductView {
            id: p.id.get(),
            name: p.name.clone(),
            price: p.price.won(),
            stock: p.stock,
            max_per_order: p.max_per_order,
            max_per_customer: p.max_per_customer,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CartItemView {
    pub product_id: i64,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CartView {
    pub items: Vec<CartItemView>,
}

impl From<&Cart> for CartView {
    fn from(cart: &Cart) -> Self {
        CartView {
            items: cart
                .items
                .iter()
                .map(|(p, q)| CartItemView {
                    product_id: p.get(),
                    quantity: q.get(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssueView {
    pub coupon_id: i64,
    pub user_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_coupon_id: Option<i64>,
    /// `ISSUED` (LOCKED mode) or `RESERVED` (FLASH mode).
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserCouponView {
    pub user_coupon_id: i64,
    pub coupon_id: i64,
    pub name: String,
    pub kind: String,
    pub status: String,
    pub expires_at: String,
}

impl UserCouponView {
    pub fn new(uc: &UserCoupon, coupon: &Coupon, now: Timestamp) -> Self {
        UserCouponView {
            user_coupon_id: uc.id.get(),
            coupon_id: uc.coupon_id.get(),
            name: coupon.name.clone(),
            kind: coupon.kind.as_str().to_owned(),
            status: uc.status_at(now).as_str().to_owned(),
            expires_at: rfc3339(uc.expires_at),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CouponView {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub discount_type: String,
    pub discount_value: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_discount: Option<i64>,
    pub min_order_amount: i64,
    pub quantity: u32,
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
}

impl From<&Coupon> for CouponView {
    fn from(c: &Coupon) -> Self {
        CouponView {
            id: c.id.get(),
            name: c.name.clone(),
            kind: c.kind.as_str().to_owned(),
            discount_type: c.discount.type_str().to_owned(),
            discount_value: c.discount.value(),
            max_discount: c.discount.cap().map(|m| m.won()),
            min_order_amount: c.min_order_amount.won(),
            quantity: c.quantity,
            mode: c.mode.as_str().to_owned(),
            valid_from: c.valid_from.map(rfc3339),
            valid_until: c.valid_until.map(rfc3339),
        }
    }
}

/// A coupon a shopper can still get, with how many are left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogueCouponView {
    pub coupon_id: i64,
    pub name: String,
    pub kind: String,
    pub discount_type: String,
    pub discount_value: i64,
    pub max_discount: Option<i64>,
    pub min_order_amount: i64,
    pub valid_from: Option<String>,
    pub valid_until: Option<String>,
    pub remaining: u32,
}

impl CatalogueCouponView {
    pub fn new(c: &Coupon, remaining: u32) -> Self {
        CatalogueCouponView {
            coupon_id: c.id.get(),
            name: c.name.clone(),
            kind: c.kind.as_str().to_owned(),
            discount_type: c.discount.type_str().to_owned(),
            discount_value: c.discount.value(),
            max_discount: c.discount.cap().map(|m| m.won()),
            min_order_amount: c.min_order_amount.won(),
            valid_from: c.valid_from.map(rfc3339),
            valid_until: c.valid_until.map(rfc3339),
            remaining,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CouponStockView {
    pub coupon_id: i64,
    pub quantity: u32,
    pub remaining: u32,
    pub reserved: u32,
    pub persisted: u32,
    pub failed: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    pub checked: u32,
    pub repaired: u32,
    pub rolled_back: u32,
}

/// A FLASH issuance that ended in the dead-letter queue, as admins see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureView {
    pub user_id: i64,
    /// A stable code name (`COUPON_SOLD_OUT`, `BACKEND_UNAVAILABLE`…), never a backend's text.
    pub reason: String,
    pub attempts: u32,
    /// When it last failed.
    pub failed_at: String,
}

impl From<&IssuanceFailure> for FailureView {
    fn from(f: &IssuanceFailure) -> Self {
        FailureView {
            user_id: f.user_id.get(),
            reason: f.reason.clone(),
            attempts: f.attempts,
            failed_at: rfc3339(f.failed_at),
        }
    }
}

/// What one replay of a coupon's failures did: how many it tried, how many users now hold the
/// coupon, how many failed again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    pub replayed: u32,
    pub issued: u32,
    pub still_failing: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLineView {
    pub product_id: i64,
    pub name: String,
    pub unit_price: i64,
    pub quantity: u32,
    pub line_total: i64,
    pub discount: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_coupon_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub order_id: i64,
    pub status: String,
    pub items: Vec<OrderLineView>,
    pub user_coupon_ids: Vec<i64>,
    pub subtotal: i64,
    pub discount: i64,
    pub total: i64,
    pub expires_at: String,
}

impl From<&Order> for OrderView {
    fn from(o: &Order) -> Self {
        OrderView {
            order_id: o.id.get(),
            status: o.status.as_str().to_owned(),
            items: o
                .lines
                .iter()
                .map(|l| OrderLineView {
                    product_id: l.product_id.get(),
                    name: l.name.clone(),
                    unit_price: l.unit_price.won(),
                    quantity: l.quantity.get(),
                    line_total: l.line_total.won(),
                    discount: l.discount.won(),
                    user_coupon_id: l.user_coupon_id.map(|id| id.get()),
                })
                .collect(),
            user_coupon_ids: o.cart_coupons.iter().map(|(id, _)| id.get()).collect(),
            subtotal: o.subtotal.won(),
            discount: o.discount.won(),
            total: o.total.won(),
            expires_at: rfc3339(o.expires_at),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentReceipt {
    pub payment_id: i64,
    pub order_id: i64,
    pub amount: i64,
    pub status: String,
    pub balance: i64,
}

impl PaymentReceipt {
    pub fn new(p: &Payment, balance: i64) -> Self {
        PaymentReceipt {
            payment_id: p.id.get(),
            order_id: p.order_id.get(),
            amount: p.amount.won(),
            status: p.status.as_str().to_owned(),
            balance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let ts = Timestamp::from_millis(1_763_000_000_123);
        let s = rfc3339(ts);
        assert!(s.ends_with('Z'), "{s}");
        assert_eq!(parse_rfc3339(&s), Some(ts));
    }
}

/// A registered account, as sign-up answers it (never with the password or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    pub user_id: i64,
    pub email: String,
    pub name: String,
}

/// Who the caller is: every user has an id and a role; registered ones also an email and a
/// name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeView {
    pub user_id: i64,
    /// `user` or `admin`, as the caller's token says.
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}
