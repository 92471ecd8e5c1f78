//! The admin's endpoints.

use super::id;
use crate::auth::AdminUser;
use crate::envelope::Reply;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::paging::{PageParams, Paged};
use crate::schema::errors::error_set;
use crate::schema::views::{
    Coupon, CouponKind, CouponStock, DiscountType, Envelope, IssuanceFailure, IssuanceMode,
    Product, Reconcile, Replay, Reset,
};
use crate::Shared;
use axum::extract::State;
use serde::{Deserialize, Deserializer};
use stockade_application::views::parse_rfc3339;
use stockade_domain::product::stock_level;
use stockade_domain::{
    CouponId, Discount, DomainError, ErrorCode, NewCoupon, NewProduct, ProductChanges, ProductId,
};
use utoipa::ToSchema;

type Answer = Result<Reply, ApiError>;

error_set!(CreateErrors: [InvalidInput, Unauthorized, Forbidden]);
error_set!(StockErrors: [
    InvalidInput, Unauthorized, Forbidden, ProductNotFound, LockTimeout,
]);
error_set!(UpdateErrors: [
    InvalidInput, Unauthorized, Forbidden, ProductNotFound, LockTimeout,
]);
error_set!(CouponErrors: [InvalidInput, Unauthorized, Forbidden, CouponNotFound]);
error_set!(ReplayErrors: [
    InvalidInput, Unauthorized, Forbidden, CouponNotFound, LockTimeout,
]);
error_set!(ReconcileErrors: [
    InvalidInput, InvalidCoupon, Unauthorized, Forbidden, CouponNotFound,
    LockTimeout,
]);
error_set!(
    /// `FORBIDDEN` also when the demo profile is off.
    ResetErrors: [Unauthorized, Forbidden]
);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProductRequest {
    /// Trimmed; 1 to 200 characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"\S",
        example = "Keyboard"
    )]
    pub name: String,
    /// Won.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_i64, example = 10_000)]
    pub price: i64,
    #[schema(minimum = 0, maximum = 1_000_000_000, example = 100)]
    pub stock: i64,
    #[schema(minimum = 1, maximum = 1_000_000, example = 5)]
    pub max_per_order: i64,
    /// The most units one customer's live orders may hold; absent or `null` for no limit.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000_000, example = 3)]
    pub max_per_customer: Option<i64>,
}

/// A present field as `Some`, `null` included (`Some(None)`): with `#[serde(default)]`, an
/// absent field stays `None`, so the three cases differ.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// The fields to change; an absent field is kept. At least one must be given.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"price": 12_000, "maxPerCustomer": 3}))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProductPatch {
    /// Trimmed; 1 to 200 characters.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: Option<Option<String>>,
    /// Won.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = i64, minimum = 1, maximum = 1_000_000_000_000_000_i64)]
    pub price: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = i64, minimum = 1, maximum = 1_000_000)]
    pub max_per_order: Option<Option<i64>>,
    /// `null` removes the limit.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1_000_000_000)]
    pub max_per_customer: Option<Option<i64>>,
}

impl ProductPatch {
    fn try_into_domain(self) -> Result<ProductChanges, DomainError> {
        /// `null` is only a value for `maxPerCustomer`.
        fn given<T>(field: &'static str, v: Option<Option<T>>) -> Result<Option<T>, DomainError> {
            match v {
                Some(None) => Err(DomainError::invalid(
                    field,
                    "must not be null (leave it out to keep it)",
                )),
                Some(Some(v)) => Ok(Some(v)),
                None => Ok(None),
            }
        }
        let name = given("name", self.name)?;
        ProductChanges::new(
            name.as_deref(),
            given("price", self.price)?,
            given("maxPerOrder", self.max_per_order)?,
            self.max_per_customer,
        )
    }
}

/// Creates a product.
#[utoipa::path(post, path = "/api/v1/admin/products", tag = "admin", security(("bearer" = [])),
    request_body = ProductRequest,
    responses((status = 201, description = "created", body = Envelope<Product>,
        headers(("Location" = String, description = "the product's path, `/api/v1/products/{id}`"))),
        CreateErrors))]
pub async fn create_product(
    State(s): State<Shared>,
    _admin: AdminUser,
    ApiJson(body): ApiJson<ProductRequest>,
) -> Answer {
    let new = NewProduct::new(&body.name, body.price, body.stock, body.max_per_order)?
        .limit_per_customer(body.max_per_customer)?;
    let product = s.app.create_product(new).await?;
    let location = format!("/api/v1/products/{}", product.id);
    Ok(Reply::created(&product).at(location))
}

/// Changes a product's name, price or limits (not its stock), under the lock orders of it take.
#[utoipa::path(patch, path = "/api/v1/admin/products/{id}", tag = "admin",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, example = 1, description = "product id")),
    request_body = ProductPatch,
    responses((status = 200, description = "the product", body = Envelope<Product>), UpdateErrors))]
pub async fn update_product(
    State(s): State<Shared>,
    _admin: AdminUser,
    ApiPath(raw): ApiPath<i64>,
    ApiJson(body): ApiJson<ProductPatch>,
) -> Answer {
    let product = id(raw, ProductId::new)?;
    let changes = body.try_into_domain()?;
    Ok(Reply::ok(&s.app.update_product(product, changes).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockRequest {
    #[schema(minimum = 0, maximum = 1_000_000_000, example = 100)]
    pub stock: i64,
}

/// Sets a product's stock.
#[utoipa::path(put, path = "/api/v1/admin/products/{id}/stock", tag = "admin",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, example = 1, description = "product id")),
    request_body = StockRequest,
    responses((status = 200, description = "the product", body = Envelope<Product>), StockErrors))]
pub async fn set_stock(
    State(s): State<Shared>,
    _admin: AdminUser,
    ApiPath(raw): ApiPath<i64>,
    ApiJson(body): ApiJson<StockRequest>,
) -> Answer {
    let product = id(raw, ProductId::new)?;
    let stock = stock_level(body.stock)?;
    Ok(Reply::ok(&s.app.set_stock(product, stock).await?))
}

/// Times are RFC 3339; `validUntil` must be after `validFrom`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"name": "SPRING10", "kind": "CART", "discountType": "PERCENT",
    "discountValue": 10, "maxDiscount": 5_000, "minOrderAmount": 0, "quantity": 100,
    "mode": "LOCKED"}))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CouponRequest {
    /// Trimmed; 1 to 100 characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"\S",
        example = "SPRING10"
    )]
    pub name: String,
    #[schema(value_type = CouponKind)]
    pub kind: String,
    #[schema(value_type = DiscountType)]
    pub discount_type: String,
    /// Won for FIXED; 1 to 100 (percent) for PERCENT.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_i64, example = 10)]
    pub discount_value: i64,
    /// The most a PERCENT coupon takes off, in won.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    pub max_discount: Option<i64>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    pub min_order_amount: i64,
    #[schema(minimum = 1, maximum = 10_000_000, example = 100)]
    pub quantity: i64,
    #[schema(value_type = IssuanceMode)]
    pub mode: String,
    #[schema(format = DateTime)]
    pub valid_from: Option<String>,
    #[schema(format = DateTime)]
    pub valid_until: Option<String>,
}

impl CouponRequest {
    fn try_into_domain(self) -> Result<NewCoupon, DomainError> {
        let time = |field: &'static str, v: Option<String>| {
            v.map(|s| {
                parse_rfc3339(&s)
                    .ok_or_else(|| DomainError::invalid(field, "must be an RFC 3339 time"))
            })
            .transpose()
        };
        let discount = Discount::new(&self.discount_type, self.discount_value, self.max_discount)?;
        NewCoupon::new(
            &self.name,
            &self.kind,
            discount,
            self.min_order_amount,
            self.quantity,
            &self.mode,
            time("validFrom", self.valid_from)?,
            time("validUntil", self.valid_until)?,
        )
    }
}

/// Creates a coupon.
#[utoipa::path(post, path = "/api/v1/admin/coupons", tag = "admin", security(("bearer" = [])),
    request_body = CouponRequest,
    responses((status = 201, description = "created", body = Envelope<Coupon>,
        headers(("Location" = String, description = "the coupon's path, `/api/v1/admin/coupons/{id}`"))),
        CreateErrors))]
pub async fn create_coupon(
    State(s): State<Shared>,
    _admin: AdminUser,
    ApiJson(body): ApiJson<CouponRequest>,
) -> Answer {
    let new = body.try_into_domain()?;
    let coupon = s.app.create_coupon(new).await?;
    let location = format!("/api/v1/admin/coupons/{}", coupon.id);
    Ok(Reply::created(&coupon).at(location))
}

/// A coupon with its settings (the `Location` of a created coupon).
#[utoipa::path(get, path = "/api/v1/admin/coupons/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, example = 1, description = "coupon id")),
    responses((status = 200, description = "the coupon", body = Envelope<Coupon>), CouponErrors))]
pub async fn get_coupon(
    State(s): State<Shared>,
    _admin: AdminUser,
    ApiPath(raw): ApiPath<i64>,
) -> Answer {
    let coupon = id(raw, CouponId::new)?;
    Ok(Reply::ok(&s.app.coupon(coupon).await?))
}

/// A coupon's FLASH issuances that ended in the dead-letter queue, by user id.
#[utoipa::path(get, path = "/api/v1/admin/coupons/{id}/failures", tag = "admin",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, example = 1, description = "coupon id"), PageParams),
    responses((status = 200, description = "the failures, by user id ascending; \
        `Link: rel=\"next\"` when more remain", body = Envelope<Vec<IssuanceFailure>>, headers(("Link" = String, description = "`<path?query&cursor=...>; rel=\"next\"` when more remain (RFC 8288)"))),
        CouponErrors))]
pub async fn coupon_failures(
    State(s): State<Shared>,
    _admin: AdminUser,
    ApiPath(raw): ApiPath<i64>,
    paged: Paged,
) -> Answer {
    let paged = paged.only(&[])?;
    let coupon = id(raw, CouponId::new)?;
    let page = s
        .app
        .issuance_failures_page(coupon, paged.request())
        .await?;
    Ok(paged.reply(&page))
}

/// Retries each recorded failure of a coupon once; one replay of a coupon at a time, so a
/// user is issued at most once however many replays are sent.
#[utoipa::path(post, path = "/api/v1/admin/coupons/{id}/failures/replay", tag = "admin",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, example = 1, description = "coupon id")),
    responses((status = 200, description = "what the replay did",
        body = Envelope<Replay>), ReplayErrors))]
pub async fn replay_failures(
    State(s): State<Shared>,
    _admin: AdminUser,
    ApiPath(raw): ApiPath<i64>,
) -> Answer {
    let coupon = id(raw, CouponId::new)?;
    Ok(Reply::ok(&s.app.replay_failures(coupon).await?))
}

/// A coupon's counters: issued, reserved (FLASH), persisted and failed.
#[utoipa::path(get, path = "/api/v1/admin/coupons/{id}/stock", tag = "admin",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, example = 1, description = "coupon id")),
    responses((status = 200, description = "the counters", body = Envelope<CouponStock>),
        CouponErrors))]
pub async fn coupon_stock(
    State(s): State<Shared>,
    _admin: AdminUser,
    ApiPath(raw): ApiPath<i64>,
) -> Answer {
    let coupon = id(raw, CouponId::new)?;
    Ok(Reply::ok(&s.app.coupon_stock(coupon).await?))
}

/// Reconciles a FLASH coupon's gate with the store.
#[utoipa::path(post, path = "/api/v1/admin/coupons/{id}/reconcile", tag = "admin",
    security(("bearer" = [])),
    params(("id" = i64, Path, minimum = 1, example = 1, description = "coupon id")),
    responses((status = 200, description = "what was checked and repaired",
        body = Envelope<Reconcile>), ReconcileErrors))]
pub async fn reconcile(
    State(s): State<Shared>,
    _admin: AdminUser,
    ApiPath(raw): ApiPath<i64>,
) -> Answer {
    let coupon = id(raw, CouponId::new)?;
    Ok(Reply::ok(&s.app.reconcile(coupon).await?))
}

/// Puts the demo data back (demo profile only).
#[utoipa::path(post, path = "/api/v1/admin/reset", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "reset", body = Envelope<Reset>), ResetErrors))]
pub async fn reset(State(s): State<Shared>, _admin: AdminUser) -> Answer {
    let Some(reset) = &s.reset else {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "reset is only available in the demo profile",
        ));
    };
    reset.reset().await?;
    Ok(Reply::ok(&serde_json::json!({ "reset": true })))
}
