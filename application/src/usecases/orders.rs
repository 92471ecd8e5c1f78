//! The create-order command (run in `create_order`), GetOrder, CancelOrder, ExpireOrders, and the
//! one routine that releases what an order holds (used by cancellation, expiry and the payment
//! saga's compensation).

use crate::ports::lock::keys;
use crate::ports::store::{LedgerChange, SagaStep, UnitOfWork};
use crate::views::OrderView;
use crate::{AppError, Stockade};
use stockade_domain::{
    DomainError, LedgerKind, LineRequest, Order, OrderId, OrderStatus, Timestamp, UserCouponId,
    UserCouponStatus, UserId,
};

/// Where an order's lines come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderSource {
    Lines(Vec<LineRequest>),
    /// The user's cart, which the order empties.
    FromCart,
}

/// Create an order: reserve stock and coupons.
#[derive(Debug, Clone)]
pub struct CreateOrder {
    pub user_id: UserId,
    pub source: OrderSource,
    /// CART coupons, and CART_ITEM coupons to place on the line where each takes off most.
    pub user_coupon_ids: Vec<UserCouponId>,
}

impl CreateOrder {
    pub(crate) fn canonical(&self) -> String {
        let mut s = String::new();
        match &self.source {
            OrderSource::FromCart => s.push_str("fromCart"),
            OrderSource::Lines(lines) => {
                for l in lines {
                    s.push_str(&format!(
                        "{}x{}c{};",
                        l.product_id,
                        l.quantity,
                        l.user_coupon_id.map_or(0, |c| c.get())
                    ));
                }
            }
        }
        s.push('|');
        for c in &self.user_coupon_ids {
            s.push_str(&format!("{c};"));
        }
        s
    }
}

impl Stockade {
    /// One of the user's orders.
    ///
    /// # Errors
    /// `ORDER_NOT_FOUND` also when the order belongs to someone else (its existence is not
    /// revealed); `BACKEND_UNAVAILABLE`.
    pub async fn order(&self, user: UserId, id: OrderId) -> Result<OrderView, AppError> {
        let mut uow = self.core.ports.store.begin().await?;
        let order = load_owned(&mut *uow, user, id).await?;
        Ok(OrderView::from(&order))
    }

    /// Cancels an order: an unpaid one releases its stock and coupons; a paid one is also
    /// refunded.
    ///
    /// # Errors
    /// `ORDER_NOT_FOUND`; `INVALID_ORDER_STATE` when already cancelled, failed or expired;
    /// `LOCK_TIMEOUT`; `BACKEND_UNAVAILABLE`.
    #[tracing::instrument(skip_all, fields(user = %user, order = %id))]
    pub async fn cancel_order(&self, user: UserId, id: OrderId) -> Result<OrderView, AppError> {
        self.retry_contention(|| self.cancel_once(user, id)).await
    }

    async fn cancel_once(&self, user: UserId, id: OrderId) -> Result<OrderView, AppError> {
        // At most twice: once to finish a payment saga left open, once to cancel.
        for _ in 0..2 {
            let mut guard = self
                .enter(&[keys::payment(id), keys::balance(user)])
                .await?;
            let uow = guard.begin().await?;
            let (order, payments) = load_owned_with_payments(&mut *uow, user, id).await?;
            let open = payments
                .into_iter()
                .find(|p| p.status == stockade_domain::PaymentStatus::Pending);
            if let (Some(payment), OrderStatus::PendingPayment) = (open, order.status) {
                // A saga interrupted after its debit: settle it first (the platform may know the
                // order as paid), then cancel what it left.
                guard.rollback();
                match self.finish_saga(guard, order, payment, None, None).await {
                    Ok(_) | Err(AppError::PaymentFailed) => continue,
                    Err(e) => return Err(e),
                }
            }
            let now = self.core.ports.clock.now();
            let released = release_order(&mut *uow, &order, OrderStatus::Cancelled, now).await?;
            guard.finish().await?;
            if order.status.holds_reservations() {
                self.restocked(order.lines.iter().map(|l| l.product_id).collect())
                    .await;
            }
            if order.status == OrderStatus::Paid {
                // The sale no longer counts (it was counted on the day it was paid).
                self.count_sales(&order, now, false).await;
            }
            return Ok(OrderView::from(&released));
        }
        Err(AppError::LockTimeout)
    }

    /// Expires unpaid orders whose time ran out (at most `limit` per call), releasing what they
    /// hold. Returns how many expired. An order whose payment is under way is skipped (its
    /// lock is held) and picked up by a later run if it is still unpaid.
    ///
    /// # Errors
    /// `BACKEND_UNAVAILABLE` when the due orders cannot be listed.
    pub async fn expire_orders(&self, limit: usize) -> Result<usize, AppError> {
        let now = self.core.ports.clock.now();
        let due = {
            let mut uow = self.core.ports.store.begin().await?;
            uow.orders().due_for_expiry(now, limit).await?
        };
        let mut expired = 0;
        for (id, user) in due {
            match self.retry_contention(|| self.expire_one(id, user)).await {
                Ok(true) => expired += 1,
                Ok(false) => {}
                Err(e) => tracing::debug!(order = %id, error = %e, "order not expired this round"),
            }
        }
        Ok(expired)
    }

    async fn expire_one(&self, id: OrderId, user: UserId) -> Result<bool, AppError> {
        let mut guard = self
            .enter(&[keys::payment(id), keys::balance(user)])
            .await?;
        let uow = guard.begin().await?;
        let now = self.core.ports.clock.now();
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
            .find(|p| p.status == stockade_domain::PaymentStatus::Pending);
        if let Some(payment) = pending {
            // A payment saga was interrupted after its debit: finish it (it pays or
            // compensates the order) instead of expiring an order the platform may know as paid.
            guard.rollback();
            return match self.finish_saga(guard, order, payment, None, None).await {
                Ok(_) | Err(AppError::PaymentFailed) => Ok(true),
                Err(e) => Err(e),
            };
        }
        release_order(&mut *uow, &order, OrderStatus::Expired, now).await?;
        guard.finish().await?;
        self.restocked(order.lines.iter().map(|l| l.product_id).collect())
            .await;
        Ok(true)
    }
}

pub(crate) fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

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
        // Product order, as when the stock was taken (see `place`).
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
