//! ExpireOrders: unpaid orders whose time ran out give back what they hold.

use crate::engine::release::release_order;
use crate::engine::saga::finish_saga;
use crate::engine::Context;
use crate::error::AppError;
use crate::ports::lock::keys;
use stockade_domain::{OrderId, OrderStatus, PaymentStatus, UserId};

/// Expires unpaid orders whose time ran out (at most `limit` per call), releasing what they
/// hold. Returns how many expired. An order whose payment is under way is skipped (its lock is
/// held) and picked up by a later run if it is still unpaid.
///
/// # Errors
/// `BACKEND_UNAVAILABLE` when the due orders cannot be listed.
pub(crate) async fn execute(ctx: &Context, limit: usize) -> Result<usize, AppError> {
    let now = ctx.now();
    let due = {
        let mut uow = ctx.ports.store.begin().await?;
        uow.orders().due_for_expiry(now, limit).await?
    };
    let mut expired = 0;
    for (id, user) in due {
        match ctx.retry_contention(|| expire_one(ctx, id, user)).await {
            Ok(true) => expired += 1,
            Ok(false) => {}
            Err(e) => tracing::debug!(order = %id, error = %e, "order not expired this round"),
        }
    }
    Ok(expired)
}

async fn expire_one(ctx: &Context, id: OrderId, user: UserId) -> Result<bool, AppError> {
    let mut guard = ctx.enter(&[keys::payment(id), keys::balance(user)]).await?;
    let uow = guard.begin().await?;
    let now = ctx.now();
    let Some(order) = uow.orders().get(id).await? else {
        return Ok(false);
    };
    if !order.is_expired_at(now) {
        return Ok(false);
    }
    let pending = uow
        .payments()
        .for_order(id)
        .await?
        .into_iter()
        .find(|p| p.status == PaymentStatus::Pending);
    if let Some(payment) = pending {
        // A payment saga was interrupted after its debit: finish it (it pays or compensates
        // the order) instead of expiring an order the platform may know as paid.
        guard.rollback();
        return match finish_saga(ctx, guard, order, payment, None, None).await {
            Ok(_) | Err(AppError::PaymentFailed) => Ok(true),
            Err(e) => Err(e),
        };
    }
    release_order(&mut *uow, &order, OrderStatus::Expired, now).await?;
    guard.finish().await?;
    ctx.restocked(order.lines.iter().map(|l| l.product_id).collect())
        .await;
    Ok(true)
}
