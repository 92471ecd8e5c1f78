//! The shopper's endpoints: products, wallet, cart, coupons, orders, payments.

use super::id;
use crate::auth::AuthUser;
use crate::business;
use crate::envelope::Reply;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, IdemKey};
use crate::paging::{PageParams, Paged};
use crate::schema::errors::error_set;
use crate::schema::params::{IdempotencyKeyOptional, PositiveId};
use crate::schema::views::{
    Balance, Cart, ChargeReceipt, Envelope, Issue, Order, Payment, Popular, Product, Transaction,
    UserCoupon,
};
use crate::Shared;
use axum::extract::State;
use serde::Deserialize;
use serde_json::json;
use std::borrow::Cow;
use stockade_application::usecases::charge_balance::ChargeBalance;
use stockade_application::usecases::create_order::{CreateOrder, OrderSource};
use stockade_application::usecases::process_payment::ProcessPayment;
use stockade_application::usecases::update_cart::CartChange;
use stockade_application::AppError;
use stockade_domain::{
    ChargeAmount, CouponId, DomainError, LineRequest, Money, OrderId, ProductId, Quantity,
    UserCouponId,
};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Ref, Type,
};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};

type Answer = Result<Reply, ApiError>;

error_set!(ListErrors: [InvalidInput]);
error_set!(
    /// What a signed-in list can answer.
    MineListErrors: [InvalidInput, Unauthorized]
);
error_set!(ProductErrors: [InvalidInput, ProductNotFound]);
error_set!(PopularErrors: [InvalidInput]);
error_set!(
    /// What a signed-in read can answer.
    MineErrors: [Unauthorized]
);
error_set!(ChargeErrors: [
    InvalidInput, IdempotencyKeyMissing, ChargeLimitExceeded, Unauthorized,
    RequestInProgress, LockTimeout, IdempotencyKeyReused,
]);
error_set!(CartErrors: [
    InvalidInput, InsufficientStock, ExceededLimitedQuantity, Unauthorized,
    ProductNotFound, LockTimeout,
]);
error_set!(CartRemoveErrors: [InvalidInput, Unauthorized, LockTimeout]);
error_set!(IssueErrors: [
    InvalidInput, InvalidCoupon, Unauthorized, CouponNotFound, CouponSoldOut,
    CouponAlreadyIssued, RequestInProgress, LockTimeout, IdempotencyKeyReused,
]);
error_set!(OrderErrors: [
    InvalidInput, IdempotencyKeyMissing, InsufficientStock, ExceededLimitedQuantity, CartEmpty,
    InvalidCoupon, Unauthorized, ProductNotFound, RequestInProgress, LockTimeout,
    PurchaseLimitReached, IdempotencyKeyReused,
]);
error_set!(OrderReadErrors: [InvalidInput, Unauthorized, OrderNotFound]);
error_set!(PayErrors: [
    InvalidInput, IdempotencyKeyMissing, InvalidOrderState, AmountMismatch, InsufficientBalance,
    Unauthorized, OrderNotFound, RequestInProgress, LockTimeout,
    IdempotencyKeyReused, PaymentFailed,
]);
error_set!(CancelErrors: [
    InvalidInput, InvalidOrderState, Unauthorized, OrderNotFound, LockTimeout,
]);

/// Every product, by id.
#[utoipa::path(get, path = "/api/v1/products", tag = "products", params(PageParams),
    responses((status = 200, description = "the products, by id; `Link: rel=\"next\"` when \
        more remain", body = Envelope<Vec<Product>>, headers(("Link" = String, description = "`<path?query&cursor=...>; rel=\"next\"` when more remain (RFC 8288)"))), ListErrors))]
pub async fn list_products(State(s): State<Shared>, paged: Paged) -> Answer {
    let paged = paged.only(&[])?;
    Ok(paged.reply(&s.app.products_page(paged.request()).await?))
}

/// One product.
#[utoipa::path(get, path = "/api/v1/products/{id}", tag = "products",
    params(("id" = i64, Path, minimum = 1, example = 1, description = "product id")),
    responses((status = 200, description = "the product", body = Envelope<Product>),
        ProductErrors))]
pub async fn get_product(State(s): State<Shared>, ApiPath(raw): ApiPath<i64>) -> Answer {
    let product = id(raw, ProductId::new)?;
    Ok(Reply::ok(&s.app.product(product).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PopularQuery {
    /// How many days back to count (default 3).
    #[param(minimum = 1, maximum = 365)]
    pub days: Option<u32>,
    /// How many products to rank (default 5).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// The top products by units sold in paid orders over the last `days`.

#[utoipa::path(get, path = "/api/v1/products/popular", tag = "products", params(PopularQuery),
    responses((status = 200, description = "the ranking, best first",
        body = Envelope<Vec<Popular>>), PopularErrors))]
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

/// My wallet's balance.
#[utoipa::path(get, path = "/api/v1/users/me/balance", tag = "wallet", security(("bearer" = [])),
    responses((status = 200, description = "the balance", body = Envelope<Balance>), MineErrors))]
pub async fn balance(State(s): State<Shared>, who: AuthUser) -> Answer {
    Ok(Reply::ok(&s.app.balance(who.user).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChargeRequest {
    /// Won to add; a wallet holds at most 100,000,000.
    #[schema(minimum = 1, maximum = 1_000_000, example = 10_000)]
    pub amount: i64,
}

/// Charges my wallet (idempotent: the `Idempotency-Key` is required).

#[utoipa::path(post, path = "/api/v1/users/me/balance/charge", tag = "wallet",
    security(("bearer" = [])), params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = r"^[!#-~]([ -~]*[!-~])?$", description = "required; replays the first answer for this key (`Idempotent-Replayed: true`)", example = "charge-example")),
    request_body = ChargeRequest,
    responses((status = 200, description = "charged", body = Envelope<ChargeReceipt>),
        ChargeErrors))]
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

/// My ledger, newest first.
#[utoipa::path(get, path = "/api/v1/users/me/balance/transactions", tag = "wallet",
    security(("bearer" = [])), params(PageParams),
    responses((status = 200, description = "the ledger, newest first; `Link: rel=\"next\"` \
        when more remain", body = Envelope<Vec<Transaction>>, headers(("Link" = String, description = "`<path?query&cursor=...>; rel=\"next\"` when more remain (RFC 8288)"))), MineListErrors))]
pub async fn transactions(State(s): State<Shared>, who: AuthUser, paged: Paged) -> Answer {
    let paged = paged.only(&[])?;
    Ok(paged.reply(&s.app.transactions_page(who.user, paged.request()).await?))
}

/// My cart.
#[utoipa::path(get, path = "/api/v1/cart", tag = "cart", security(("bearer" = [])),
    responses((status = 200, description = "the cart", body = Envelope<Cart>), MineErrors))]
pub async fn cart(State(s): State<Shared>, who: AuthUser) -> Answer {
    Ok(Reply::ok(&s.app.cart(who.user).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CartItemRequest {
    #[schema(minimum = 1, example = 1)]
    pub product_id: i64,
    /// Units to add; the product's `maxPerOrder` and stock bound the line.
    #[schema(minimum = 1, maximum = 1_000_000, example = 1)]
    pub quantity: i64,
}

/// Adds units of a product to my cart.

#[utoipa::path(post, path = "/api/v1/cart/items", tag = "cart", security(("bearer" = [])),
    request_body = CartItemRequest,
    responses((status = 200, description = "the cart", body = Envelope<Cart>), CartErrors))]
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

/// Removes a product from my cart.
#[utoipa::path(delete, path = "/api/v1/cart/items/{productId}", tag = "cart",
    security(("bearer" = [])),
    params(("productId" = i64, Path, minimum = 1, example = 1, description = "product id")),
    responses((status = 200, description = "the cart", body = Envelope<Cart>), CartRemoveErrors))]
pub async fn remove_from_cart(
    State(s): State<Shared>,
    who: AuthUser,
    ApiPath(raw): ApiPath<i64>,
) -> Answer {
    let change = CartChange::Remove(id(raw, ProductId::new)?);
    Ok(Reply::ok(&s.app.update_cart(who.user, change).await?))
}

/// Gets me a coupon: `ISSUED` at once (LOCKED mode) or `RESERVED` and persisted shortly
/// (FLASH mode). The `Idempotency-Key` is optional here.
#[utoipa::path(post, path = "/api/v1/coupons/{couponId}/issue", tag = "coupons",
    security(("bearer" = [])),
    params(("couponId" = i64, Path, minimum = 1, example = 2, description = "coupon id"),
        IdempotencyKeyOptional),
    responses((status = 200, description = "issued or reserved", body = Envelope<Issue>),
        IssueErrors))]
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
    if !r.replayed {
        match r.value.status.as_str() {
            "RESERVED" => business::coupons_reserved_flash().increment(1),
            _ => business::coupons_issued_locked().increment(1),
        }
    }
    Ok(Reply::ok(&r.value).replayed(r.replayed))
}

/// My coupons.
#[utoipa::path(get, path = "/api/v1/users/me/coupons", tag = "coupons", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, description = "my coupons, by id; `Link: rel=\"next\"` when \
        more remain", body = Envelope<Vec<UserCoupon>>, headers(("Link" = String, description = "`<path?query&cursor=...>; rel=\"next\"` when more remain (RFC 8288)"))), MineListErrors))]
pub async fn my_coupons(State(s): State<Shared>, who: AuthUser, paged: Paged) -> Answer {
    let paged = paged.only(&[])?;
    Ok(paged.reply(&s.app.my_coupons_page(who.user, paged.request()).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderItemRequest {
    #[schema(minimum = 1, example = 1)]
    pub product_id: i64,
    #[schema(minimum = 1, maximum = 1_000_000, example = 1)]
    pub quantity: i64,
    /// A CART_ITEM coupon of mine for this line.
    #[schema(minimum = 1)]
    pub user_coupon_id: Option<i64>,
}

/// Either `items` or `fromCart: true`, not both (the document says so with `oneOf`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderRequest {
    pub items: Option<Vec<OrderItemRequest>>,
    #[serde(default)]
    pub from_cart: bool,
    #[serde(default)]
    pub user_coupon_ids: Vec<i64>,
}

/// Written by hand: "lines, or the cart" is a choice between two shapes, which a derived
/// struct schema cannot state (it would let `{}` and `{items, fromCart: true}` pass).
impl PartialSchema for OrderRequest {
    fn schema() -> RefOr<Schema> {
        let coupons = || {
            ArrayBuilder::new()
                .items(PositiveId::schema())
                .max_items(Some(10))
                .description(Some("CART coupons of mine for the whole order."))
        };
        let lines = ObjectBuilder::new()
            .title(Some("lines"))
            .property(
                "items",
                ArrayBuilder::new()
                    .items(Ref::from_schema_name("OrderItemRequest"))
                    .min_items(Some(1))
                    .max_items(Some(100))
                    .description(Some("The lines, each product at most once.")),
            )
            .required("items")
            .property(
                "fromCart",
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .enum_values(Some([false])),
            )
            .property("userCouponIds", coupons())
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)));
        let cart = ObjectBuilder::new()
            .title(Some("cart"))
            .property(
                "items",
                ObjectBuilder::new()
                    .schema_type(Type::Null)
                    .description(Some("absent or null: the cart's lines are ordered")),
            )
            .property(
                "fromCart",
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .enum_values(Some([true])),
            )
            .required("fromCart")
            .property("userCouponIds", coupons())
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)));
        OneOfBuilder::new()
            .item(lines)
            .item(cart)
            .examples([json!({"items": [{"productId": 1, "quantity": 1}]})])
            .into()
    }
}

impl ToSchema for OrderRequest {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("OrderRequest")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            OrderItemRequest::name().into_owned(),
            OrderItemRequest::schema(),
        ));
    }
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

/// Creates an order: reserves stock and coupons until it is paid or expires.
#[utoipa::path(post, path = "/api/v1/orders", tag = "orders", security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = r"^[!#-~]([ -~]*[!-~])?$", description = "required; replays the first answer for this key (`Idempotent-Replayed: true`)")),
    request_body = OrderRequest,
    responses((status = 201, description = "created, awaiting payment", body = Envelope<Order>,
        headers(("Location" = String, description = "the order's path, `/api/v1/orders/{orderId}`"))),
        OrderErrors))]
pub async fn create_order(
    State(s): State<Shared>,
    who: AuthUser,
    key: IdemKey,
    ApiJson(body): ApiJson<OrderRequest>,
) -> Answer {
    let key = key.required()?;
    let cmd = body.try_into_domain(who.user)?;
    let r = s.app.create_order(cmd, Some(&key)).await?;
    if !r.replayed {
        business::orders_created().increment(1);
    }
    let location = format!("/api/v1/orders/{}", r.value.order_id);
    Ok(Reply::created(&r.value).replayed(r.replayed).at(location))
}

/// One of my orders (another user's answers 404, as if it did not exist).
#[utoipa::path(get, path = "/api/v1/orders/{orderId}", tag = "orders", security(("bearer" = [])),
    params(("orderId" = i64, Path, minimum = 1, example = 1, description = "order id")),
    responses((status = 200, description = "the order", body = Envelope<Order>), OrderReadErrors))]
pub async fn get_order(
    State(s): State<Shared>,
    who: AuthUser,
    ApiPath(raw): ApiPath<i64>,
) -> Answer {
    let order = id(raw, OrderId::new)?;
    Ok(Reply::ok(&s.app.order(who.user, order).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PayRequest {
    /// Must equal the order's total.
    #[schema(minimum = 0, example = 10_000)]
    pub amount: i64,
}

/// Pays an order from my wallet. A platform failure compensates everything (502).

#[utoipa::path(post, path = "/api/v1/orders/{orderId}/payment", tag = "orders",
    security(("bearer" = [])),
    params(("orderId" = i64, Path, minimum = 1, example = 1, description = "order id"),
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = r"^[!#-~]([ -~]*[!-~])?$", description = "required; replays the first answer for this key (`Idempotent-Replayed: true`)", example = "payment-example")),
    request_body = PayRequest,
    responses((status = 200, description = "paid", body = Envelope<Payment>), PayErrors))]
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
    let r = match s.app.pay(cmd, Some(&key)).await {
        Ok(r) => r,
        Err(e) => {
            if matches!(e, AppError::PaymentFailed) {
                business::payments_failed().increment(1);
            }
            return Err(e.into());
        }
    };
    if !r.replayed {
        business::orders_paid().increment(1);
        business::revenue_won().increment(u64::try_from(r.value.amount).unwrap_or(0));
    }
    Ok(Reply::ok(&r.value).replayed(r.replayed))
}

/// Cancels an order: unpaid, its reservations are released; paid, it is refunded too.
#[utoipa::path(post, path = "/api/v1/orders/{orderId}/cancel", tag = "orders",
    security(("bearer" = [])),
    params(("orderId" = i64, Path, minimum = 1, example = 1, description = "order id")),
    responses((status = 200, description = "cancelled", body = Envelope<Order>), CancelErrors))]
pub async fn cancel_order(
    State(s): State<Shared>,
    who: AuthUser,
    ApiPath(raw): ApiPath<i64>,
) -> Answer {
    let order = id(raw, OrderId::new)?;
    let cancelled = s.app.cancel_order(who.user, order).await?;
    business::orders_cancelled().increment(1);
    Ok(Reply::ok(&cancelled))
}
