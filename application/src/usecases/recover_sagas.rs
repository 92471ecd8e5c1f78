//! RecoverSagas: finish the payment sagas a crash or a store failure left open after their
//! debit.

use crate::engine::context::duration_ms;
use crate::engine::saga::finish_saga;
use crate::engine::Context;
use crate::error::AppError;
use crate::ports::lock::keys;
use stockade_domain::{OrderId, OrderStatus, PaymentStatus, UserId};

/// Finishes payment sagas interrupted after their debit (a crash, or a store failure in
/// step 3) that have been open for at least `min_age`: each is resumed from step 2 under
/// its order's locks. Returns how many were settled (paid or compensated).
///
/// # Errors
/// `BACKEND_UNAVAILABLE` when the open sagas cannot be listed.
pub(crate) async fn execute(
    ctx: &Context,
    min_age: std::time::Duration,
    limit: usize,
) -> Result<usize, AppError> {
    let before = ctx.ports.clock.now().minus_millis(duration_ms(min_age));
    let open = {
        let mut uow = ctx.ports.store.begin().await?;
        uow.payments().open_sagas(before, limit).await?
    };
    let mut settled = 0;
    for (order_id, user) in open {
        match resume_saga(ctx, order_id, user).await {
            Ok(true) => settled += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(order = %order_id, error = %e, "saga not recovered this round")
            }
        }
    }
    Ok(settled)
}

/// Resumes the open saga of one order from step 2, under its locks; false when none is open.
async fn resume_saga(ctx: &Context, order_id: OrderId, user: UserId) -> Result<bool, AppError> {
    let mut guard = ctx
        .enter(&[keys::payment(order_id), keys::balance(user)])
        .await?;
    let uow = guard.begin().await?;
    let Some((order, payments)) = uow.order_with_payments(order_id).await? else {
        return Ok(false);
    };
    let pending = payments
        .into_iter()
        .find(|p| p.status == PaymentStatus::Pending);
    let Some(payment) = pending else {
        return Ok(false);
    };
    if order.status != OrderStatus::PendingPayment {
        return Err(AppError::Internal(format!(
            "order {order_id} is {} but its payment {} is PENDING",
            order.status.as_str(),
            payment.id
        )));
    }
    guard.rollback();
    tracing::info!(order = %order_id, payment = %payment.id, "resuming an interrupted payment saga");
    match finish_saga(ctx, guard, order, payment, None, None).await {
        Ok(_) | Err(AppError::PaymentFailed) => Ok(true),
        Err(e) => Err(e),
    }
}
