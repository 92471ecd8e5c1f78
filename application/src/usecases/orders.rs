//! CreateOrder, GetOrder, CancelOrder, ExpireOrders, and the one routine that releases what an
//! order holds (used by cancellation, expiry and the payment saga's compensation).

use crate::ports::lock::{keys, LockKey};
use crate::ports::store::{LedgerChange, NewOrder, SagaStep, UnitOfWork};
use crate::views::OrderView;
use crate::{AppError, Replayable, Stockade};
use std::collections::{BTreeSet, HashMap};
use stockade_domain::coupon::CouponKind;
use stockade_domain::order::{price_order, HeldCoupon};
use stockade_domain::{
    Coupon, DomainError, IdempotencyKey, LedgerKind, LineRequest, Order, OrderId, OrderStatus,
    Product, ProductId, Timestamp, UserCoupon, UserCouponId, UserCouponStatus, UserId,
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
    fn canonical(&self) -> String {
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

/// How many times create-order re-reads a cart that changed between reading and locking.
const CART_RETRIES: usize = 3;

/// What placing an order in a unit of work came to.
enum Placed {
    New(Order),
    /// An order was already placed under this idempotency reference (nothing was written).
    AlreadyPlaced,
}

impl Stockade {
    /// Creates an order: locks the user and every product at once, deducts stock with guarded
    /// updates, prices and reserves coupons, all in one unit of work.
    ///
    /// # Errors
    /// `CART_EMPTY`, `INVALID_INPUT`, `PRODUCT_NOT_FOUND`, `EXCEEDED_LIMITED_QUANTITY`,
    /// `INSUFFICIENT_STOCK`, `INVALID_COUPON`, `LOCK_TIMEOUT`, `BACKEND_UNAVAILABLE`, and the
    /// idempotency outcomes.
    #[tracing::instrument(skip_all, fields(user = %cmd.user_id))]
    pub async fn create_order(
        &self,
        cmd: CreateOrder,
        key: Option<&IdempotencyKey>,
    ) -> Result<Replayable<OrderView>, AppError> {
        let canonical = cmd.canonical();
        let user = cmd.user_id;
        // The key also names the order itself, so that even a second execution of the same
        // keyed request (its idempotency record lost or taken over) finds the first order.
        let reference = key.map(|k| format!("order:{user}:{k}"));
        let key = key.cloned();
        self.detached(move |app| async move {
            let work =
                app.retry_contention(|| app.create_order_once(cmd.clone(), reference.clone()));
            app.idempotent(user, key.as_ref(), "create-order", canonical, work)
                .await
        })
        .await
    }

    async fn create_order_once(
        &self,
        cmd: CreateOrder,
        reference: Option<String>,
    ) -> Result<OrderView, AppError> {
        if let OrderSource::Lines(lines) = &cmd.source {
            stockade_domain::order::check_lines(lines)?;
        }
        for _ in 0..CART_RETRIES {
            // Which products to lock: from the request, or from the cart as it is now.
            let products: BTreeSet<ProductId> = match &cmd.source {
                OrderSource::Lines(lines) => lines.iter().map(|l| l.product_id).collect(),
                OrderSource::FromCart => {
                    let mut uow = self.core.ports.store.begin().await?;
                    uow.carts()
                        .get(cmd.user_id)
                        .await?
                        .items
                        .keys()
                        .copied()
                        .collect()
                }
            };
            if products.is_empty() {
                return Err(DomainError::CartEmpty.into());
            }
            let mut lock_keys: Vec<LockKey> = products.iter().map(|p| keys::stock(*p)).collect();
            lock_keys.push(keys::order_user(cmd.user_id));
            if cmd.source == OrderSource::FromCart {
                lock_keys.push(keys::cart(cmd.user_id));
            }
            let guard = self.lock(&lock_keys).await?;
            let mut uow = self.begin_guarded(&guard).await?;
            let lines = match &cmd.source {
                OrderSource::Lines(lines) => lines.clone(),
                OrderSource::FromCart => {
                    let cart = uow.carts().get(cmd.user_id).await?;
                    if cart.items.keys().any(|p| !products.contains(p)) {
                        // The cart changed after we read it; take the new set of locks.
                        drop(uow);
                        drop(guard);
                        continue;
                    }
                    if cart.is_empty() {
                        return Err(DomainError::CartEmpty.into());
                    }
                    cart.items
                        .iter()
                        .map(|(p, q)| LineRequest {
                            product_id: *p,
                            quantity: *q,
                            user_coupon_id: None,
                        })
                        .collect()
                }
            };
            let order = match self
                .place(&mut *uow, &cmd, lines, reference.clone())
                .await?
            {
                Placed::New(order) => order,
                Placed::AlreadyPlaced => {
                    // Placed before under this key: answer with that order, change nothing.
                    drop(uow);
                    let mut uow = self.begin_guarded(&guard).await?;
                    let placed = match &reference {
                        Some(r) => uow.orders().find_by_reference(r).await?,
                        None => None,
                    };
                    drop(uow);
                    drop(guard);
                    return placed
                        .map(|o| OrderView::from(&o))
                        .ok_or_else(|| AppError::Internal("order reference without order".into()));
                }
            };
            let view = OrderView::from(&order);
            self.commit_answer(uow, guard, &view).await?;
            return Ok(view);
        }
        Err(AppError::LockTimeout)
    }

    /// The body of create-order inside its unit of work.
    async fn place(
        &self,
        uow: &mut dyn UnitOfWork,
        cmd: &CreateOrder,
        mut lines: Vec<LineRequest>,
        reference: Option<String>,
    ) -> Result<Placed, AppError> {
        let now = self.core.ports.clock.now();
        let mut products: HashMap<ProductId, Product> = HashMap::new();
        for line in &lines {
            let p = uow
                .products()
                .get(line.product_id)
                .await?
                .ok_or(DomainError::ProductNotFound(line.product_id.get()))?;
            products.insert(p.id, p);
        }
        // Load every coupon named anywhere, with its policy.
        let named: Vec<UserCouponId> = lines
            .iter()
            .filter_map(|l| l.user_coupon_id)
            .chain(cmd.user_coupon_ids.iter().copied())
            .collect();
        let mut held: HashMap<UserCouponId, (UserCoupon, Coupon)> = HashMap::new();
        for id in named {
            if held.contains_key(&id) {
                continue;
            }
            let uc = uow
                .coupons()
                .get_user_coupon(id)
                .await?
                .filter(|uc| uc.user_id == cmd.user_id)
                .ok_or_else(|| {
                    DomainError::InvalidCoupon(format!("user coupon {id} is not yours"))
                })?;
            let policy = uow
                .coupons()
                .get(uc.coupon_id)
                .await?
                .ok_or(DomainError::CouponNotFound(uc.coupon_id.get()))?;
            held.insert(id, (uc, policy));
        }
        // Listed CART_ITEM coupons go to the free line where they take off the most.
        let mut cart_coupons = Vec::new();
        for id in &cmd.user_coupon_ids {
            let (uc, policy) = &held[id];
            if policy.kind != CouponKind::CartItem {
                cart_coupons.push(*id);
                continue;
            }
            let best = lines
                .iter_mut()
                .filter(|l| l.user_coupon_id.is_none())
                .max_by_key(|l| {
                    let p = &products[&l.product_id];
                    let total = p.price.checked_mul(l.quantity.get()).unwrap_or_default();
                    (
                        policy.discount_on(total, now).unwrap_or_default(),
                        std::cmp::Reverse(l.product_id),
                    )
                });
            match best {
                Some(line) => line.user_coupon_id = Some(uc.id),
                None => {
                    return Err(DomainError::InvalidCoupon(format!(
                        "no line left for CART_ITEM coupon {id}"
                    ))
                    .into())
                }
            }
        }
        let priced_lines: Vec<(LineRequest, &Product, Option<HeldCoupon<'_>>)> = lines
            .iter()
            .map(|l| {
                let coupon = l
                    .user_coupon_id
                    .and_then(|id| held.get(&id))
                    .map(|(uc, p)| HeldCoupon {
                        user_coupon: uc,
                        policy: p,
                    });
                (l.clone(), &products[&l.product_id], coupon)
            })
            .collect();
        let cart_held: Vec<HeldCoupon<'_>> = cart_coupons
            .iter()
            .map(|id| {
                let (uc, p) = &held[id];
                HeldCoupon {
                    user_coupon: uc,
                    policy: p,
                }
            })
            .collect();
        let pricing = price_order(cmd.user_id, &priced_lines, &cart_held, now)?;
        // In product order, like every other writer of stock rows, so that two units never
        // wait for each other's rows.
        let mut by_product: Vec<_> = pricing.lines.iter().collect();
        by_product.sort_by_key(|l| l.product_id);
        for line in by_product {
            uow.products()
                .deduct_stock(line.product_id, line.quantity)
                .await?;
        }
        let expires_at = now.plus_millis(duration_ms(self.core.settings.order_ttl));
        let order = uow
            .orders()
            .insert(NewOrder {
                user_id: cmd.user_id,
                pricing,
                created_at: now,
                expires_at,
                reference,
            })
            .await;
        let order = match order {
            Ok(order) => order,
            Err(crate::ports::store::StoreError::Conflict("order reference")) => {
                return Ok(Placed::AlreadyPlaced)
            }
            Err(e) => return Err(e.into()),
        };
        for id in order.user_coupon_ids() {
            let moved = uow
                .coupons()
                .set_state(
                    id,
                    UserCouponStatus::Issued,
                    UserCouponStatus::Used,
                    Some(order.id),
                )
                .await?;
            if !moved {
                return Err(
                    DomainError::InvalidCoupon(format!("user coupon {id} is not ISSUED")).into(),
                );
            }
        }
        if cmd.source == OrderSource::FromCart {
            let mut cart = uow.carts().get(cmd.user_id).await?;
            cart.items.clear();
            uow.carts().save(&cart).await?;
        }
        Ok(Placed::New(order))
    }

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
            let guard = self.lock(&[keys::payment(id), keys::balance(user)]).await?;
            let mut uow = self.begin_guarded(&guard).await?;
            let (order, payments) = load_owned_with_payments(&mut *uow, user, id).await?;
            let open = payments
                .into_iter()
                .find(|p| p.status == stockade_domain::PaymentStatus::Pending);
            if let (Some(payment), OrderStatus::PendingPayment) = (open, order.status) {
                // A saga interrupted after its debit: settle it first (the platform may know the
                // order as paid), then cancel what it left.
                drop(uow);
                match self.finish_saga(guard, order, payment, None).await {
                    Ok(_) | Err(AppError::PaymentFailed) => continue,
                    Err(e) => return Err(e),
                }
            }
            let now = self.core.ports.clock.now();
            let released = release_order(&mut *uow, &order, OrderStatus::Cancelled, now).await?;
            self.commit_and_release(uow, guard).await?;
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
        let guard = self.lock(&[keys::payment(id), keys::balance(user)]).await?;
        let mut uow = self.begin_guarded(&guard).await?;
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
            drop(uow);
            return match self.finish_saga(guard, order, payment, None).await {
                Ok(_) | Err(AppError::PaymentFailed) => Ok(true),
                Err(e) => Err(e),
            };
        }
        release_order(&mut *uow, &order, OrderStatus::Expired, now).await?;
        self.commit_and_release(uow, guard).await?;
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
