//! Loading an order for its owner, and the one routine that gives back what an order holds
//! (used by cancellation, expiry and the payment saga's compensation).

use crate::error::AppError;
use crate::ports::store::{LedgerChange, SagaStep, UnitOfWork};
use stockade_domain::{
    DomainError, LedgerKind, Order, OrderId, OrderStatus, Timestamp, UserCouponStatus, UserId,
};

/// The order if it exists and belongs to `user`.
pub(crate) async fn load_owned(
    uow: &mut dyn UnitOfWork,
    user: UserId,
    id: OrderId,
) -> Result<Order, AppError> {
    uow.orders()
        .get(id)
        .await?
        .filter(|o| o.user_id == user)
        .ok_or_else(|| DomainError::OrderNotFound(id.get()).into())
}

/// The order and its payments (oldest first) if it exists and belongs to `user`.
pub(crate) async fn load_owned_with_payments(
    uow: &mut dyn UnitOfWork,
    user: UserId,
    id: OrderId,
) -> Result<(Order, Vec<stockade_domain::Payment>), AppError> {
    uow.order_with_payments(id)
        .await?
        .filter(|(o, _)| o.user_id == user)
        .ok_or_else(|| DomainError::OrderNotFound(id.get()).into())
}

/// Moves `order` to `to` and gives back everything it holds, in the reverse order of how it
/// was taken: refund any payment still holding funds, restore stock, restore coupons.
///
/// Every step is a no-op if its forward step never happened (no payment → no refund; a refund
/// already in the ledger is not repeated) and the guarded status change makes the whole
/// routine run at most once per order.
///
/// # Errors
/// `INVALID_ORDER_STATE` when the transition is not allowed (or another writer moved the order
/// first); store errors.
pub(crate) async fn release_order(
    uow: &mut dyn UnitOfWork,
    order: &Order,
    to: OrderStatus,
    now: Timestamp,
) -> Result<Order, AppError> {
    let mut next = order.clone();
    next.transition(to, now)?;
    if !uow
        .orders()
        .update_status(order.id, order.status, to, now)
        .await?
    {
        return Err(DomainError::InvalidOrderState {
            state: order.status.as_str(),
            action: "changed",
        }
        .into());
    }
    refund_payments(uow, order, now).await?;
    if order.status.holds_reservations() {
        // Product order, as when the stock was taken (see `engine::order_plan::write_orders`).
        let mut by_product: Vec<_> = order.lines.iter().collect();
        by_product.sort_by_key(|l| l.product_id);
        for line in by_product {
            uow.products()
                .restore_stock(line.product_id, line.quantity)
                .await?;
        }
        for id in order.user_coupon_ids().into_iter().rev() {
            uow.coupons()
                .set_state(id, UserCouponStatus::Used, UserCouponStatus::Issued, None)
                .await?;
        }
    }
    Ok(next)
}

/// Refunds every payment of `order` whose debit is still in effect. Idempotent: a refund the
/// ledger already holds is not repeated.
pub(crate) async fn refund_payments(
    uow: &mut dyn UnitOfWork,
    order: &Order,
    now: Timestamp,
) -> Result<(), AppError> {
    use stockade_domain::PaymentStatus;
    for payment in uow.payments().for_order(order.id).await? {
        if !payment.status.holds_funds() {
            continue;
        }
        let reference = payment.ledger_reference();
        let debited = uow
            .wallets()
            .find_entry(&reference, LedgerKind::Use)
            .await?;
        let refunded = uow
            .wallets()
            .find_entry(&reference, LedgerKind::Refund)
            .await?;
        if debited.is_some() && refunded.is_none() {
            uow.wallets()
                .append(
                    LedgerChange {
                        user_id: payment.user_id,
                        kind: LedgerKind::Refund,
                        amount: payment.amount,
                        reference: Some(reference),
                    },
                    now,
                )
                .await?;
        }
        let to = match payment.status {
            PaymentStatus::Pending => PaymentStatus::Failed,
            _ => PaymentStatus::Refunded,
        };
        uow.payments()
            .update_status(payment.id, payment.status, to, now)
            .await?;
        if payment.status == PaymentStatus::Pending {
            uow.payments()
                .log_saga_step(&payment, SagaStep::Compensated, now)
                .await?;
        }
    }
    Ok(())
}
