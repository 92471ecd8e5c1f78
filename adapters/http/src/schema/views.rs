//! Schemas of the success answers' `data`: one type per view of `stockade_application::views`,
//! plus the enums that the views carry as strings.

#![allow(dead_code)] // Documentation types: read by utoipa's derive, never built.

use utoipa::ToSchema;

/// `{status}` of `/health`.
#[derive(Debug, ToSchema)]
pub struct Status {
    #[schema(example = "ok")]
    pub status: String,
}

/// `{status, warnings}` of `/ready`: `warnings` names what the process serves with but an
/// operator should know (empty when nothing), e.g. a FLASH gate on a Redis without an
/// append-only file.
#[derive(Debug, ToSchema)]
pub struct Ready {
    #[schema(example = "ready")]
    pub status: String,
    #[schema(example = json!(["gate: the Redis of the FLASH gate and issuance queue keeps no append-only file (appendonly no): reservations answered RESERVED are lost if it restarts"]))]
    pub warnings: Vec<String>,
}

/// The answer of the demo reset.
#[derive(Debug, ToSchema)]
pub struct Reset {
    pub reset: bool,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Product {
    #[schema(minimum = 1, example = 1)]
    pub id: i64,
    pub name: String,
    /// Won.
    #[schema(minimum = 1)]
    pub price: i64,
    #[schema(minimum = 0)]
    pub stock: i64,
    #[schema(minimum = 1)]
    pub max_per_order: i64,
    /// The most units one customer's live orders may hold; `null` for no limit.
    #[schema(minimum = 1)]
    pub max_per_customer: Option<i64>,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Popular {
    #[schema(minimum = 1)]
    pub product_id: i64,
    pub name: String,
    #[schema(minimum = 0)]
    pub sold_quantity: i64,
    #[schema(minimum = 1)]
    pub rank: i64,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Balance {
    #[schema(minimum = 1)]
    pub user_id: i64,
    #[schema(minimum = 0)]
    pub balance: i64,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct ChargeReceipt {
    #[schema(minimum = 1)]
    pub user_id: i64,
    #[schema(minimum = 0)]
    pub balance: i64,
    #[schema(minimum = 1)]
    pub transaction_id: i64,
}

/// What moved a wallet.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "UPPERCASE")]
pub enum TransactionType {
    Charge,
    Use,
    Refund,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Transaction {
    #[schema(minimum = 1)]
    pub id: i64,
    #[schema(rename = "type")]
    pub kind: TransactionType,
    pub amount: i64,
    #[schema(minimum = 0)]
    pub balance_after: i64,
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct CartItem {
    #[schema(minimum = 1)]
    pub product_id: i64,
    #[schema(minimum = 1)]
    pub quantity: i64,
}

#[derive(Debug, ToSchema)]
pub struct Cart {
    #[schema(max_items = 100)]
    pub items: Vec<CartItem>,
}

/// `ISSUED` (LOCKED mode, in the store now) or `RESERVED` (FLASH mode, persisted shortly).
#[derive(Debug, ToSchema)]
#[schema(rename_all = "UPPERCASE")]
pub enum IssueStatus {
    Issued,
    Reserved,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Issue {
    #[schema(minimum = 1)]
    pub coupon_id: i64,
    #[schema(minimum = 1)]
    pub user_id: i64,
    /// Present once the coupon is in the store (LOCKED mode).
    #[schema(minimum = 1)]
    pub user_coupon_id: Option<i64>,
    pub status: IssueStatus,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CouponKind {
    Cart,
    CartItem,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "UPPERCASE")]
pub enum DiscountType {
    Fixed,
    Percent,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "UPPERCASE")]
pub enum IssuanceMode {
    Locked,
    Flash,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "UPPERCASE")]
pub enum UserCouponStatus {
    Issued,
    Used,
    Expired,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct UserCoupon {
    #[schema(minimum = 1)]
    pub user_coupon_id: i64,
    #[schema(minimum = 1)]
    pub coupon_id: i64,
    pub name: String,
    pub kind: CouponKind,
    pub status: UserCouponStatus,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    PaymentFailed,
    Cancelled,
    Expired,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct OrderLine {
    #[schema(minimum = 1)]
    pub product_id: i64,
    pub name: String,
    #[schema(minimum = 0)]
    pub unit_price: i64,
    #[schema(minimum = 1)]
    pub quantity: i64,
    #[schema(minimum = 0)]
    pub line_total: i64,
    #[schema(minimum = 0)]
    pub discount: i64,
    /// The CART_ITEM coupon applied to this line, if any.
    #[schema(minimum = 1)]
    pub user_coupon_id: Option<i64>,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Order {
    #[schema(minimum = 1)]
    pub order_id: i64,
    pub status: OrderStatus,
    #[schema(max_items = 100)]
    pub items: Vec<OrderLine>,
    /// The CART coupons applied to the whole order.
    #[schema(max_items = 10)]
    pub user_coupon_ids: Vec<i64>,
    #[schema(minimum = 0)]
    pub subtotal: i64,
    #[schema(minimum = 0)]
    pub discount: i64,
    #[schema(minimum = 0)]
    pub total: i64,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "UPPERCASE")]
pub enum PaymentStatus {
    Pending,
    Approved,
    Failed,
    Refunded,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Payment {
    #[schema(minimum = 1)]
    pub payment_id: i64,
    #[schema(minimum = 1)]
    pub order_id: i64,
    #[schema(minimum = 0)]
    pub amount: i64,
    pub status: PaymentStatus,
    #[schema(minimum = 0)]
    pub balance: i64,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Coupon {
    #[schema(minimum = 1)]
    pub id: i64,
    pub name: String,
    pub kind: CouponKind,
    pub discount_type: DiscountType,
    #[schema(minimum = 1)]
    pub discount_value: i64,
    #[schema(minimum = 0)]
    pub max_discount: Option<i64>,
    #[schema(minimum = 0)]
    pub min_order_amount: i64,
    #[schema(minimum = 1)]
    pub quantity: i64,
    pub mode: IssuanceMode,
    #[schema(format = DateTime)]
    pub valid_from: Option<String>,
    #[schema(format = DateTime)]
    pub valid_until: Option<String>,
}

/// A coupon a shopper can still get.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct CatalogueCoupon {
    #[schema(minimum = 1)]
    pub coupon_id: i64,
    pub name: String,
    pub kind: CouponKind,
    pub discount_type: DiscountType,
    #[schema(minimum = 1)]
    pub discount_value: i64,
    #[schema(minimum = 0)]
    pub max_discount: Option<i64>,
    #[schema(minimum = 0)]
    pub min_order_amount: i64,
    #[schema(format = DateTime)]
    pub valid_from: Option<String>,
    #[schema(format = DateTime)]
    pub valid_until: Option<String>,
    /// How many are left to issue (at least 1).
    #[schema(minimum = 1)]
    pub remaining: i64,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct CouponStock {
    #[schema(minimum = 1)]
    pub coupon_id: i64,
    #[schema(minimum = 0)]
    pub quantity: i64,
    #[schema(minimum = 0)]
    pub remaining: i64,
    #[schema(minimum = 0)]
    pub reserved: i64,
    #[schema(minimum = 0)]
    pub persisted: i64,
    #[schema(minimum = 0)]
    pub failed: i64,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Reconcile {
    #[schema(minimum = 0)]
    pub checked: i64,
    #[schema(minimum = 0)]
    pub repaired: i64,
    #[schema(minimum = 0)]
    pub rolled_back: i64,
}

/// A FLASH issuance that ended in the dead-letter queue.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct IssuanceFailure {
    #[schema(minimum = 1)]
    pub user_id: i64,
    /// The API code of what went wrong (`COUPON_SOLD_OUT`, `INVALID_COUPON`,
    /// `BACKEND_UNAVAILABLE`, …); never a backend's message.
    #[schema(example = "COUPON_SOLD_OUT")]
    pub reason: String,
    /// How many times this user's issuance failed (1 for the first).
    #[schema(minimum = 1)]
    pub attempts: i64,
    /// When it last failed.
    #[schema(format = DateTime)]
    pub failed_at: String,
}

#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Replay {
    /// Failures tried.
    #[schema(minimum = 0)]
    pub replayed: i64,
    /// Users who hold the coupon now.
    #[schema(minimum = 0)]
    pub issued: i64,
    /// Users whose failure was recorded again (`attempts` + 1).
    #[schema(minimum = 0)]
    pub still_failing: i64,
}

/// The success envelope of docs/api.md around `data`.
#[derive(Debug, ToSchema)]
pub struct Envelope<T> {
    /// Always `true` on a success.
    pub success: bool,
    pub data: T,
    #[schema(format = DateTime)]
    pub timestamp: String,
}

/// A registered account (never its password).
#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Account {
    #[schema(minimum = 1, example = 1_000_001)]
    pub user_id: i64,
    /// Trimmed and lower-cased.
    #[schema(example = "ann@example.com")]
    pub email: String,
    #[schema(example = "Ann")]
    pub name: String,
}

/// The only token type minted.
#[derive(Debug, ToSchema)]
pub enum TokenType {
    Bearer,
}

/// A signed-in session: a bearer token for the rest of the API.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Login {
    /// An HS256 JWT (`sub` = user id, `role` = `user`).
    pub access_token: String,
    pub token_type: TokenType,
    /// Seconds the token stays valid.
    #[schema(minimum = 1, example = 3600)]
    pub expires_in: i64,
    #[schema(minimum = 1)]
    pub user_id: i64,
}

/// What a token's role may be.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

/// Who I am: registered users also have an email and a name.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Me {
    #[schema(minimum = 1)]
    pub user_id: i64,
    pub role: Role,
    #[schema(nullable = false)]
    pub email: Option<String>,
    #[schema(nullable = false)]
    pub name: Option<String>,
}
