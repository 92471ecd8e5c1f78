//! The admin's endpoints.

use super::id;
use crate::auth::AdminUser;
use crate::envelope::Reply;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::Shared;
use axum::extract::State;
use serde::Deserialize;
use stockade_application::views::parse_rfc3339;
use stockade_domain::product::stock_level;
use stockade_domain::{
    CouponId, Discount, DomainError, ErrorCode, NewCoupon, NewProduct, ProductId,
};

type Answer = Result<Reply, ApiError>;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductRequest {
    pub name: String,
    pub price: i64,
    pub stock: i64,
    pub max_per_order: i64,
}

pub async fn create_product(
    State(s): State<Shared>,
    _admin: AdminUser,
    ApiJson(body): ApiJson<ProductRequest>,
) -> Answer {
    let new = NewProduct::new(&body.name, body.price, body.stock, body.max_per_order)?;
    Ok(Reply::created(&s.app.create_product(new).await?))
}

#[derive(Debug, Deserialize)]
pub struct StockRequest {
    pub stock: i64,
}

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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CouponRequest {
    pub name: String,
    pub kind: String,
    pub discount_type: String,
    pub discount_value: i64,
    pub max_discount: Option<i64>,
    #[serde(default)]
    pub min_order_amount: i64,
    pub quantity: i64,
    pub mode: String,
    pub valid_from: Option<String>,
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

pub async fn create_coupon(
    State(s): State<Shared>,
    _admin: AdminUser,
    ApiJson(body): ApiJson<CouponRequest>,
) -> Answer {
    let new = body.try_into_domain()?;
    Ok(Reply::created(&s.app.create_coupon(new).await?))
}

pub async fn coupon_stock(
    State(s): State<Shared>,
    _admin: AdminUser,
    ApiPath(raw): ApiPath<i64>,
) -> Answer {
    let coupon = id(raw, CouponId::new)?;
    Ok(Reply::ok(&s.app.coupon_stock(coupon).await?))
}

pub async fn reconcile(
    State(s): State<Shared>,
    _admin: AdminUser,
    ApiPath(raw): ApiPath<i64>,
) -> Answer {
    let coupon = id(raw, CouponId::new)?;
    Ok(Reply::ok(&s.app.reconcile(coupon).await?))
}

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
