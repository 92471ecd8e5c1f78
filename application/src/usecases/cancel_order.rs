//! CancelOrder: an unpaid order releases its stock and coupons; a paid one is also refunded.

use crate::engine::release::{load_owned_with_payments, release_order};
use crate::engine::saga::finish_saga;
use crate::engine::Context;
use crate::error::AppError;
use crate::ports::lock::keys;
use crate::views::OrderView;
use stockade_domain::{OrderId, OrderStatus, PaymentStatus, UserId};

/// Cancels the order `id` of `user`, running the unit again while it collides with another.
///
/// # Errors
/// `ORDER_NOT_FOUND`; `INVALID_ORDER_STATE` when already cancelled, failed or expired;
/// `LOCK_TIMEOUT`; `BACKEND_UNAVAILABLE`.
#[tracing::instrument(skip_all, fields(user = %user, order = %id))]
pub(crate) async fn execute(
    ctx: &Context,
    user: UserId,
    id: OrderId,
) -> Result<OrderView, AppError> {
    ctx.retry_contention(|| cancel_once(ctx, user, id)).await
}

async fn cancel_once(ctx: &Context, user: UserId, id: OrderId) -> Result<OrderView, AppError> {
    // At most twice: once to finish a payment saga left open, once to cancel.
    for _ in 0..2 {
        let mut guard = ctx.enter(&[keys::payment(id), keys::balance(user)]).await?;
        let uow = guard.begin().await?;
        let (order, payments) = load_owned_with_payments(&mut *uow, user, id).await?;
        let open = payments
            .into_iter()
            .find(|p| p.status == PaymentStatus::Pending);
        if let (Some(payment), OrderStatus::PendingPayment) = (open, order.status) {
            // A saga interrupted after its debit: settle it first (the platform may know the
            // order as paid), then cancel what it left.
            guard.rollback();
            match finish_saga(ctx, guard, order, payment, None, None).await {
                Ok(_) | Err(AppError::PaymentFailed) => continue,
                Err(e) => return Err(e),
            }
        }
        let now = ctx.now();
        let released = release_order(&mut *uow, &order, OrderStatus::Cancelled, now).await?;
        guard.finish().await?;
        if order.status.holds_reservations() {
            ctx.restocked(order.lines.iter().map(|l| l.product_id).collect())
                .await;
        }
        if order.status == OrderStatus::Paid {
            // The sale no longer counts (it was counted on the day it was paid).
            ctx.count_sales(&order, now, false).await;
        }
        return Ok(OrderView::from(&released));
    }
    Err(AppError::LockTimeout)
}
