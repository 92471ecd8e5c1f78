//! The shopper's endpoints: products, wallet, cart, coupons, orders, payments.

use super::id;
use crate::auth::AuthUser;
use crate::envelope::Reply;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, IdemKey};
use crate::Shared;
use axum::extract::State;
use serde::Deserialize;
use stockade_application::usecases::balance::ChargeBalance;
use stockade_application::usecases::cart::CartChange;
use stockade_application::usecases::orders::{CreateOrder, OrderSource};
use stockade_application::usecases::payment::ProcessPayment;
use stockade_domain::{
    ChargeAmount, CouponId, DomainError, LineRequest, Money, OrderId, ProductId, Quantity,
    UserCouponId,
};

type Answer = Result<Reply, ApiError>;

pub async fn list_products(State(s): State<Shared>) -> Answer {
    Ok(Reply::ok(&s.app.products().await?))
}

pub async fn get_product(State(s): State<Shared>, ApiPath(raw): ApiPath<i64>) -> Answer {
    let product = id(raw, ProductId::new)?;
    Ok(Reply::ok(&s.app.product(product).await?))
}

#[derive(Debug, Deserialize)]
pub struct PopularQuery {
    pub days: Option<u32>,
    pub limit: Option<u32>,
}

pub async fn popular_products(
    State(s): State<Shared>,
    ApiQuery(q): ApiQuery<PopularQuery>,
) -> Answer {
    let items = s
        .app
        .popular_products(q.days.unwrap_or(3), q.limit.unwrap_or(5))
        .await?;
    Ok(Reply::ok(&items))
}

pub async fn balance(State(s): State<Shared>, who: AuthUser) -> Answer {
    Ok(Reply::ok(&s.app.balance(who.user).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeRequest {
    pub amount: i64,
}

pub async fn charge(
    State(s): State<Shared>,
    who: AuthUser,
    key: IdemKey,
    ApiJson(body): ApiJson<ChargeRequest>,
) -> Answer {
    let key = key.required()?;
    let cmd = ChargeBalance {
        user_id: who.user,
        amount: ChargeAmount::new(body.amount)?,
    };
    let r = s.app.charge(cmd, Some(&key)).await?;
    Ok(Reply::ok(&r.value).replayed(r.replayed))
}

pub async fn transactions(State(s): State<Shared>, who: AuthUser) -> Answer {
    Ok(Reply::ok(&s.app.transactions(who.user).await?))
}

pub async fn cart(State(s): State<Shared>, who: AuthUser) -> Answer {
    Ok(Reply::ok(&s.app.cart(who.user).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CartItemRequest {
    pub product_id: i64,
    pub quantity: i64,
}

pub async fn add_to_cart(
    State(s): State<Shared>,
    who: AuthUser,
    ApiJson(body): ApiJson<CartItemRequest>,
) -> Answer {
    let change = CartChange::Add(
        id(body.product_id, ProductId::new)?,
        Quantity::new(body.quantity, "quantity")?,
    );
    Ok(Reply::ok(&s.app.update_cart(who.user, change).await?))
}

pub async fn remove_from_cart(
    State(s): State<Shared>,
    who: AuthUser,
    ApiPath(raw): ApiPath<i64>,
) -> Answer {
    let change = CartChange::Remove(id(raw, ProductId::new)?);
    Ok(Reply::ok(&s.app.update_cart(who.user, change).await?))
}

pub async fn issue_coupon(
    State(s): State<Shared>,
    who: AuthUser,
    key: IdemKey,
    ApiPath(raw): ApiPath<i64>,
) -> Answer {
    let coupon = id(raw, CouponId::new)?;
    let r = s
        .app
        .issue_coupon_keyed(coupon, who.user, key.0.as_ref())
        .await?;
    Ok(Reply::ok(&r.value).replayed(r.replayed))
}

pub async fn my_coupons(State(s): State<Shared>, who: AuthUser) -> Answer {
    Ok(Reply::ok(&s.app.my_coupons(who.user).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderItemRequest {
    pub product_id: i64,
    pub quantity: i64,
    pub user_coupon_id: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRequest {
    pub items: Option<Vec<OrderItemRequest>>,
    #[serde(default)]
    pub from_cart: bool,
    #[serde(default)]
    pub user_coupon_ids: Vec<i64>,
}

impl OrderRequest {
    fn try_into_domain(self, user: stockade_domain::UserId) -> Result<CreateOrder, DomainError> {
        let source = match (self.from_cart, self.items) {
            (true, None) => OrderSource::FromCart,
            (true, Some(_)) => {
                return Err(DomainError::invalid(
                    "items",
                    "give either items or fromCart, not both",
                ))
            }
            (false, None) => {
                return Err(DomainError::invalid(
                    "items",
                    "give items or fromCart: true",
                ))
            }
            (false, Some(items)) => OrderSource::Lines(
                items
                    .into_iter()
                    .map(|i| {
                        Ok(LineRequest {
                            product_id: ProductId::new(i.product_id)?,
                            quantity: Quantity::new(i.quantity, "quantity")?,
                            user_coupon_id: i.user_coupon_id.map(UserCouponId::new).transpose()?,
                        })
                    })
                    .collect::<Result<_, DomainError>>()?,
            ),
        };
        if self.user_coupon_ids.len() > 10 {
            return Err(DomainError::invalid("userCouponIds", "at most 10"));
        }
        Ok(CreateOrder {
            user_id: user,
            source,
            user_coupon_ids: self
                .user_coupon_ids
                .into_iter()
                .map(UserCouponId::new)
                .collect::<Result<_, _>>()?,
        })
    }
}

pub async fn create_order(
    State(s): State<Shared>,
    who: AuthUser,
    key: IdemKey,
    ApiJson(body): ApiJson<OrderRequest>,
) -> Answer {
    let key = key.required()?;
    let cmd = body.try_into_domain(who.user)?;
    let r = s.app.create_order(cmd, Some(&key)).await?;
    Ok(Reply::created(&r.value).replayed(r.replayed))
}

pub async fn get_order(
    State(s): State<Shared>,
    who: AuthUser,
    ApiPath(raw): ApiPath<i64>,
) -> Answer {
    let order = id(raw, OrderId::new)?;
    Ok(Reply::ok(&s.app.order(who.user, order).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayRequest {
    pub amount: i64,
}

pub async fn pay(
    State(s): State<Shared>,
    who: AuthUser,
    key: IdemKey,
    ApiPath(raw): ApiPath<i64>,
    ApiJson(body): ApiJson<PayRequest>,
) -> Answer {
    let key = key.required()?;
    let cmd = ProcessPayment {
        user_id: who.user,
        order_id: id(raw, OrderId::new)?,
        amount: Money::new(body.amount, "amount")?,
    };
    let r = s.app.pay(cmd, Some(&key)).await?;
    Ok(Reply::ok(&r.value).replayed(r.replayed))
}

pub async fn cancel_order(
    State(s): State<Shared>,
    who: AuthUser,
    ApiPath(raw): ApiPath<i64>,
) -> Answer {
    let order = id(raw, OrderId::new)?;
    Ok(Reply::ok(&s.app.cancel_order(who.user, order).await?))
}
