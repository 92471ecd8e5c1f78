//! The lists added in v1.1: my orders, the coupon catalogue, and the admin's orders and
//! coupons. Each is read a page at a time (`limit`, `cursor`, `Link`; see [`crate::paging`]).

use super::id;
use crate::auth::{AdminUser, AuthUser};
use crate::envelope::Reply;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::paging::{PageParams, Paged};
use crate::schema::errors::error_set;
use crate::schema::views::{CatalogueCoupon, Coupon, Envelope, Order, OrderStatus as StatusDoc};
use crate::Shared;
use axum::extract::State;
use serde::Deserialize;
use stockade_application::ports::store::OrderFilter;
use stockade_domain::{DomainError, OrderStatus, UserId};
use utoipa::IntoParams;

type Answer = Result<Reply, ApiError>;

error_set!(
    /// What a public list can answer.
    PublicListErrors: [InvalidInput]
);
error_set!(
    /// What a signed-in list can answer.
    MineListErrors: [InvalidInput, Unauthorized]
);
error_set!(
    /// What an admin list can answer.
    AdminListErrors: [InvalidInput, Unauthorized, Forbidden]
);

/// The filter of my orders.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MyOrdersQuery {
    /// Only orders in this state.
    #[param(inline, value_type = Option<StatusDoc>)]
    pub status: Option<String>,
}

/// The filters of the admin's order list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct AdminOrdersQuery {
    /// Only orders in this state.
    #[param(inline, value_type = Option<StatusDoc>)]
    pub status: Option<String>,
    /// Only this user's orders.
    #[param(minimum = 1, example = 1)]
    pub user_id: Option<i64>,
}

fn status(raw: Option<&str>) -> Result<Option<OrderStatus>, ApiError> {
    raw.map(|s| {
        OrderStatus::parse(s).ok_or_else(|| {
            ApiError::from(DomainError::invalid(
                "status",
                "must be PENDING_PAYMENT, PAID, PAYMENT_FAILED, CANCELLED or EXPIRED",
            ))
        })
    })
    .transpose()
}

/// My orders, newest first.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", security(("bearer" = [])),
    params(MyOrdersQuery, PageParams),
    responses((status = 200, description = "my orders, newest first; `Link: rel=\"next\"` \
        when more remain", body = Envelope<Vec<Order>>, headers(("Link" = String, description = "`<path?query&cursor=...>; rel=\"next\"` when more remain (RFC 8288)"))), MineListErrors))]
pub async fn my_orders(
    State(s): State<Shared>,
    who: AuthUser,
    ApiQuery(q): ApiQuery<MyOrdersQuery>,
    paged: Paged,
) -> Answer {
    let paged = paged.only(&["status"])?;
    let filter = OrderFilter {
        user: Some(who.user),
        status: status(q.status.as_deref())?,
    };
    Ok(paged.reply(&s.app.orders_page(filter, paged.request()).await?))
}

/// The coupons that can be issued now, with how many are left.
#[utoipa::path(get, path = "/api/v1/coupons", tag = "coupons", params(PageParams),
    responses((status = 200, description = "the coupons on offer, by id; `Link: rel=\"next\"` \
        when more remain", body = Envelope<Vec<CatalogueCoupon>>, headers(("Link" = String, description = "`<path?query&cursor=...>; rel=\"next\"` when more remain (RFC 8288)"))), PublicListErrors))]
pub async fn coupons_on_offer(State(s): State<Shared>, paged: Paged) -> Answer {
    let paged = paged.only(&[])?;
    Ok(paged.reply(&s.app.issuable_coupons(paged.request()).await?))
}

/// Every order, newest first.
#[utoipa::path(get, path = "/api/v1/admin/orders", tag = "admin", security(("bearer" = [])),
    params(AdminOrdersQuery, PageParams),
    responses((status = 200, description = "the orders, newest first; `Link: rel=\"next\"` \
        when more remain", body = Envelope<Vec<Order>>, headers(("Link" = String, description = "`<path?query&cursor=...>; rel=\"next\"` when more remain (RFC 8288)"))), AdminListErrors))]
pub async fn all_orders(
    State(s): State<Shared>,
    _admin: AdminUser,
    ApiQuery(q): ApiQuery<AdminOrdersQuery>,
    paged: Paged,
) -> Answer {
    let paged = paged.only(&["status", "userId"])?;
    let filter = OrderFilter {
        user: q.user_id.map(|u| id(u, UserId::new)).transpose()?,
        status: status(q.status.as_deref())?,
    };
    Ok(paged.reply(&s.app.orders_page(filter, paged.request()).await?))
}

/// Every coupon policy, by id.
#[utoipa::path(get, path = "/api/v1/admin/coupons", tag = "admin", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, description = "the coupons, by id; `Link: rel=\"next\"` when \
        more remain", body = Envelope<Vec<Coupon>>, headers(("Link" = String, description = "`<path?query&cursor=...>; rel=\"next\"` when more remain (RFC 8288)"))), AdminListErrors))]
pub async fn all_coupons(State(s): State<Shared>, _admin: AdminUser, paged: Paged) -> Answer {
    let paged = paged.only(&[])?;
    Ok(paged.reply(&s.app.coupons_page(paged.request()).await?))
}
