//! GetOrder: one of the user's orders.

use crate::engine::release::load_owned;
use crate::engine::Context;
use crate::error::AppError;
use crate::views::OrderView;
use stockade_domain::{OrderId, UserId};

/// The order `id` if it belongs to `user`.
///
/// # Errors
/// `ORDER_NOT_FOUND` also when the order belongs to someone else (its existence is not
/// revealed); `BACKEND_UNAVAILABLE`.
pub(crate) async fn execute(
    ctx: &Context,
    user: UserId,
    id: OrderId,
) -> Result<OrderView, AppError> {
    let mut uow = ctx.ports.store.begin().await?;
    let order = load_owned(&mut *uow, user, id).await?;
    Ok(OrderView::from(&order))
}
