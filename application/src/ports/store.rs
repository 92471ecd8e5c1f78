//! The store: repositories reached through a unit of work.
//!
//! # Contract (every adapter MUST)
//! - Make every write of one [`UnitOfWork`] visible atomically on [`UnitOfWork::commit`], and
//!   none of them if the unit is dropped without commit (or commit fails).
//! - Give a unit a consistent view: what it wrote, it reads back.
//! - Make the guarded operations conditional inside the backend (never a read-modify-write
//!   without a guard): [`ProductRepository::deduct_stock`] never takes stock below zero,
//!   [`WalletRepository::append`] never takes a balance below zero or past the domain's caps,
//!   [`CouponRepository::issue`] never issues past the quantity nor twice to one user, the
//!   `update_status` / `set_state` methods change a row only when it is in the expected state.
//! - Refuse a second ledger entry with the same `(reference, kind)` with
//!   [`StoreError::Conflict`].
//! - Refuse, in [`UnitOfWork::check_fences`], a fencing token lower than the highest one the
//!   store has seen for that key, with [`StoreError::StaleFence`]; remember the highest token
//!   as part of the unit's writes.
//! - Map a lost connection or any backend failure to [`StoreError::Unavailable`], with nothing
//!   half-applied; a serialization failure or deadlock to [`StoreError::Contention`].

use super::error::BackendError;
use crate::ports::lock::Fence;
use async_trait::async_trait;
use std::fmt;
use stockade_domain::{
    Cart, Coupon, CouponId, DomainError, LedgerEntry, LedgerKind, Money, NewCoupon, NewProduct,
    Order, OrderId, OrderStatus, Payment, PaymentId, PaymentStatus, Pricing, Product,
    ProductChanges, ProductId, Quantity, Timestamp, TransactionId, UserCoupon, UserCouponId,
    UserCouponStatus, UserId,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A guarded operation's condition did not hold (no stock, no balance, sold out…).
    #[error(transparent)]
    Rejected(#[from] DomainError),
    /// A write carried a fencing token older than one the store has already seen for the key.
    #[error("stale fencing token for lock {key}")]
    StaleFence { key: String },
    /// A uniqueness rule refused the write (what names it).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The backend gave up on the unit because of concurrent units (a serialization failure or
    /// a deadlock); running the whole unit again may succeed.
    #[error("the unit of work collided with a concurrent one")]
    Contention,
    /// The idempotency record this unit was to complete now belongs to a newer request.
    #[error("the idempotency key was taken over by a newer request")]
    TicketLost,
    #[error(transparent)]
    Unavailable(#[from] BackendError),
}

/// Opens units of work.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    async fn begin(&self) -> Result<Box<dyn UnitOfWork>, StoreError>;
}

/// One atomic set of reads and writes. Dropping it without `commit` rolls it back.
#[async_trait]
pub trait UnitOfWork: Send {
    fn wallets(&mut self) -> &mut dyn WalletRepository;
    fn products(&mut self) -> &mut dyn ProductRepository;
    fn carts(&mut self) -> &mut dyn CartRepository;
    fn coupons(&mut self) -> &mut dyn CouponRepository;
    fn orders(&mut self) -> &mut dyn OrderRepository;
    fn payments(&mut self) -> &mut dyn PaymentRepository;

    /// Checks every fence against the highest token seen for its key and records it.
    async fn check_fences(&mut self, fences: &[Fence]) -> Result<(), StoreError>;

    /// An order and its payments (oldest first). An adapter may read both at once.
    async fn order_with_payments(
        &mut self,
        id: OrderId,
    ) -> Result<Option<(Order, Vec<Payment>)>, StoreError> {
        let Some(order) = self.orders().get(id).await? else {
            return Ok(None);
        };
        let payments = self.payments().for_order(id).await?;
        Ok(Some((order, payments)))
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// A change to append to a wallet's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerChange {
    pub user_id: UserId,
    pub kind: LedgerKind,
    pub amount: Money,
    pub reference: Option<String>,
}

#[async_trait]
pub trait WalletRepository: Send {
    /// The balance; 0 for a user with no wallet yet.
    async fn balance(&mut self, user: UserId) -> Result<Money, StoreError>;
    /// Applies the change with the domain's wallet rule (`Wallet::balance_after`) as the guard,
    /// creating the wallet on first use, and returns the recorded entry.
    async fn append(
        &mut self,
        change: LedgerChange,
        now: Timestamp,
    ) -> Result<LedgerEntry, StoreError>;
    /// The user's entries, oldest first.
    async fn entries(&mut self, user: UserId) -> Result<Vec<LedgerEntry>, StoreError>;
    /// Up to `limit` of the user's entries with ids below `before` (all when `None`), newest
    /// first: a keyset page.
    async fn entries_page(
        &mut self,
        user: UserId,
        before: Option<TransactionId>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError>;
    /// The entry with this reference and kind, if any.
    async fn find_entry(
        &mut self,
        reference: &str,
        kind: LedgerKind,
    ) -> Result<Option<LedgerEntry>, StoreError>;
    /// Every wallet with its balance and its ledger sum (for audits).
    async fn audit(&mut self) -> Result<Vec<WalletAudit>, StoreError>;
}

/// A wallet as an audit sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletAudit {
    pub user_id: UserId,
    pub balance: i64,
    pub ledger_sum: i64,
    pub charges: i64,
    pub uses: i64,
    pub refunds: i64,
}

#[async_trait]
pub trait ProductRepository: Send {
    async fn get(&mut self, id: ProductId) -> Result<Option<Product>, StoreError>;
    async fn list(&mut self) -> Result<Vec<Product>, StoreError>;
    /// Up to `limit` products with ids above `after` (from the first when `None`), by id.
    async fn page(
        &mut self,
        after: Option<ProductId>,
        limit: usize,
    ) -> Result<Vec<Product>, StoreError>;
    async fn insert(&mut self, new: NewProduct) -> Result<Product, StoreError>;
    /// Sets the stock level; `None` when the product does not exist.
    async fn set_stock(&mut self, id: ProductId, stock: u32)
        -> Result<Option<Product>, StoreError>;
    /// Applies an admin's changes (each field given is set, the others kept, stock untouched)
    /// and answers the product as it now is; `None` when the product does not exist.
    async fn update(
        &mut self,
        id: ProductId,
        changes: &ProductChanges,
    ) -> Result<Option<Product>, StoreError>;
    /// Removes `quantity` only if that many are left (`INSUFFICIENT_STOCK` otherwise).
    async fn deduct_stock(&mut self, id: ProductId, quantity: Quantity) -> Result<(), StoreError>;
    /// Puts `quantity` back.
    async fn restore_stock(&mut self, id: ProductId, quantity: Quantity) -> Result<(), StoreError>;
}

#[async_trait]
pub trait CartRepository: Send {
    /// The user's cart; empty when there is none yet.
    async fn get(&mut self, user: UserId) -> Result<Cart, StoreError>;
    async fn save(&mut self, cart: &Cart) -> Result<(), StoreError>;
}

#[async_trait]
pub trait CouponRepository: Send {
    async fn insert(&mut self, new: NewCoupon) -> Result<Coupon, StoreError>;
    async fn get(&mut self, id: CouponId) -> Result<Option<Coupon>, StoreError>;
    /// Every coupon policy, by id.
    async fn list(&mut self) -> Result<Vec<Coupon>, StoreError>;
    /// Up to `limit` coupon policies with ids above `after`, by id, each with how many were
    /// issued of it. With `issuable_at`, only those valid at that time with some left to issue.
    async fn page(
        &mut self,
        issuable_at: Option<Timestamp>,
        after: Option<CouponId>,
        limit: usize,
    ) -> Result<Vec<(Coupon, u32)>, StoreError>;
    /// Issues `coupon` to `user` only if fewer than `quantity` were issued
    /// (`COUPON_SOLD_OUT`) and the user holds none yet (`COUPON_ALREADY_ISSUED`). Clears a
    /// failure recorded for the pair.
    async fn issue(
        &mut self,
        coupon: &Coupon,
        user: UserId,
        now: Timestamp,
    ) -> Result<UserCoupon, StoreError>;
    /// [`CouponRepository::issue`] for many users at once, all or nothing: issues `coupon` to
    /// each user of `claims` (with the time of their reservation) who holds none yet, and
    /// answers how many it issued (a user listed twice, or holding the coupon already, counts
    /// once, as held). `COUPON_SOLD_OUT` when those new ones would pass the quantity; the unit
    /// must then be dropped, which issues none of them. Clears the failures recorded for the
    /// users it issues to.
    ///
    /// This default issues them one by one; an adapter overrides it when it can do the same in
    /// fewer steps (one statement instead of three per user on Postgres).
    async fn issue_batch(
        &mut self,
        coupon: &Coupon,
        claims: &[(UserId, Timestamp)],
    ) -> Result<u32, StoreError> {
        let mut issued = 0_u32;
        for &(user, at) in claims {
            match self.issue(coupon, user, at).await {
                Ok(_) => issued += 1,
                Err(StoreError::Rejected(DomainError::CouponAlreadyIssued)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(issued)
    }
    /// [`CouponRepository::issue`] for each of `users` in turn, as if one after the other:
    /// each answer is the issued coupon, `COUPON_ALREADY_ISSUED` (the user holds it, or is
    /// listed earlier) or `COUPON_SOLD_OUT` (the quantity ran out before this user). A refusal
    /// writes nothing. For a caller holding the coupon's lock.
    ///
    /// This default issues them one by one, counting what is left so that it never asks for one
    /// past the quantity; an adapter overrides it when it can do the same in one step.
    async fn issue_each(
        &mut self,
        coupon: &Coupon,
        users: &[UserId],
        now: Timestamp,
    ) -> Result<Vec<Result<UserCoupon, DomainError>>, StoreError> {
        let mut issued = self.issued_count(coupon.id).await?;
        let mut answers = Vec::with_capacity(users.len());
        for &user in users {
            if issued >= coupon.quantity {
                // Serial issuance refuses a holder as such even when none are left.
                let holds = self
                    .user_coupons(user)
                    .await?
                    .iter()
                    .any(|uc| uc.coupon_id == coupon.id);
                answers.push(Err(if holds {
                    DomainError::CouponAlreadyIssued
                } else {
                    DomainError::CouponSoldOut
                }));
                continue;
            }
            match self.issue(coupon, user, now).await {
                Ok(uc) => {
                    issued += 1;
                    answers.push(Ok(uc));
                }
                Err(StoreError::Rejected(DomainError::CouponAlreadyIssued)) => {
                    answers.push(Err(DomainError::CouponAlreadyIssued));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(answers)
    }
    async fn get_user_coupon(&mut self, id: UserCouponId)
        -> Result<Option<UserCoupon>, StoreError>;
    async fn user_coupons(&mut self, user: UserId) -> Result<Vec<UserCoupon>, StoreError>;
    /// Up to `limit` of the user's coupons with ids above `after`, by id.
    async fn user_coupons_page(
        &mut self,
        user: UserId,
        after: Option<UserCouponId>,
        limit: usize,
    ) -> Result<Vec<UserCoupon>, StoreError>;
    /// How many were issued of `coupon`.
    async fn issued_count(&mut self, coupon: CouponId) -> Result<u32, StoreError>;
    /// Who holds `coupon`.
    async fn holders(&mut self, coupon: CouponId) -> Result<Vec<UserId>, StoreError>;
    /// Moves a user coupon from `from` to `to` (setting its order); false if it was not in `from`.
    async fn set_state(
        &mut self,
        id: UserCouponId,
        from: UserCouponStatus,
        to: UserCouponStatus,
        order: Option<OrderId>,
    ) -> Result<bool, StoreError>;
    /// Records that a FLASH reservation could not be persisted: the first failure of the pair
    /// with `attempts` 1, each later one adding 1 to `attempts` and replacing `reason` and the
    /// failure time with `now`. `reason` is shown to admins: callers pass a stable, safe text
    /// (an API code name), never a backend's message.
    async fn record_failure(
        &mut self,
        coupon: CouponId,
        user: UserId,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Removes the failure recorded for the pair (a replay found the user holding the coupon
    /// already); false if there was none.
    async fn clear_failure(&mut self, coupon: CouponId, user: UserId) -> Result<bool, StoreError>;
    /// Users with a recorded failure for `coupon`.
    async fn failures(&mut self, coupon: CouponId) -> Result<Vec<UserId>, StoreError>;
    /// The failures recorded for `coupon`, by user id ascending: those of users after `after`
    /// (all when `None`), at most `limit` of them (a keyset page: no offset).
    async fn failure_records(
        &mut self,
        coupon: CouponId,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<IssuanceFailure>, StoreError>;
}

/// A FLASH issuance that could not be persisted, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuanceFailure {
    pub user_id: UserId,
    /// A stable, safe text (an API code name such as `COUPON_SOLD_OUT`).
    pub reason: String,
    /// How many times the pair failed (1 for the first).
    pub attempts: u32,
    /// When it last failed.
    pub failed_at: Timestamp,
}

/// What the store needs to create an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub user_id: UserId,
    pub pricing: Pricing,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The idempotency reference of the request that places it, if keyed. A store MUST refuse
    /// a second order with the same reference with `StoreError::Conflict("order reference")`.
    pub reference: Option<String>,
}

#[async_trait]
pub trait OrderRepository: Send {
    async fn insert(&mut self, new: NewOrder) -> Result<Order, StoreError>;
    /// [`Self::insert`] for several orders, in the order given; the answers are in that order
    /// too. A refused one ([`StoreError::Conflict`]) fails the call, and the unit must then be
    /// dropped. This default inserts them one by one; an adapter overrides it when it can write
    /// them with one statement per table.
    async fn insert_many(&mut self, news: Vec<NewOrder>) -> Result<Vec<Order>, StoreError> {
        let mut orders = Vec::with_capacity(news.len());
        for new in news {
            orders.push(self.insert(new).await?);
        }
        Ok(orders)
    }
    async fn get(&mut self, id: OrderId) -> Result<Option<Order>, StoreError>;
    /// The order placed with this idempotency reference, if any.
    async fn find_by_reference(&mut self, reference: &str) -> Result<Option<Order>, StoreError>;
    /// Moves an order from `from` to `to`; false if it was not in `from`.
    async fn update_status(
        &mut self,
        id: OrderId,
        from: OrderStatus,
        to: OrderStatus,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Unpaid orders whose time ran out, oldest first, with their users.
    async fn due_for_expiry(
        &mut self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(OrderId, UserId)>, StoreError>;
    /// How many units of `product` the orders of `user` hold that are not CANCELLED, EXPIRED or
    /// PAYMENT_FAILED (what counts against the product's `max_per_customer`), this unit's own
    /// inserts included. One indexed read: it runs inside every create-order turn for a
    /// product with a limit.
    async fn units_held(&mut self, user: UserId, product: ProductId) -> Result<u64, StoreError>;
    /// Units sold per product by orders PAID at or after `since`.
    async fn sales_since(&mut self, since: Timestamp) -> Result<Vec<(ProductId, u64)>, StoreError>;
    /// Every order (for audits and tests; adapters may page internally).
    async fn all(&mut self) -> Result<Vec<Order>, StoreError>;
    /// Up to `limit` orders matching `filter` with ids below `before` (all when `None`),
    /// newest first: a keyset page.
    async fn page(
        &mut self,
        filter: OrderFilter,
        before: Option<OrderId>,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError>;
}

/// Which orders a list shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderFilter {
    /// Only this user's.
    pub user: Option<UserId>,
    /// Only those in this state.
    pub status: Option<OrderStatus>,
}

/// A step of the payment saga, as recorded (see `usecases::process_payment`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SagaStep {
    /// Step 1 committed: the wallet is debited and the payment PENDING.
    Debited,
    /// The platform accepted; the order is PAID.
    Confirmed,
    /// The debit was refunded and the order released.
    Compensated,
}

impl SagaStep {
    pub const fn as_str(self) -> &'static str {
        match self {
            SagaStep::Debited => "DEBITED",
            SagaStep::Confirmed => "CONFIRMED",
            SagaStep::Compensated => "COMPENSATED",
        }
    }
}

#[async_trait]
pub trait PaymentRepository: Send {
    /// A PENDING payment of `order`; `reference` names the keyed pay request that makes it.
    async fn insert(
        &mut self,
        order: &Order,
        amount: Money,
        reference: Option<&str>,
        now: Timestamp,
    ) -> Result<Payment, StoreError>;
    /// [`Self::insert`], and the payment's saga recorded at [`SagaStep::Debited`]: for the unit
    /// that also debits the wallet for it (the step commits with the debit or not at all). An
    /// adapter may write both at once.
    async fn insert_debited(
        &mut self,
        order: &Order,
        amount: Money,
        reference: Option<&str>,
        now: Timestamp,
    ) -> Result<Payment, StoreError> {
        let payment = self.insert(order, amount, reference, now).await?;
        self.log_saga_step(&payment, SagaStep::Debited, now).await?;
        Ok(payment)
    }
    async fn for_order(&mut self, order: OrderId) -> Result<Vec<Payment>, StoreError>;
    /// Moves a payment from `from` to `to`; false if it was not in `from`.
    async fn update_status(
        &mut self,
        id: PaymentId,
        from: PaymentStatus,
        to: PaymentStatus,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Confirms a payment saga in one step: the payment PENDING -> APPROVED, its order
    /// PENDING_PAYMENT -> PAID, and the saga log at `Confirmed`. False (and nothing changed) if
    /// either row was not in its expected state.
    async fn confirm(&mut self, payment: &Payment, now: Timestamp) -> Result<bool, StoreError>;
    /// Records that `payment`'s saga reached `step` (inserting or moving its log entry).
    async fn log_saga_step(
        &mut self,
        payment: &Payment,
        step: SagaStep,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Orders whose payment saga has been at `Debited` since before `before` (a crash or a store
    /// failure interrupted it), oldest first.
    async fn open_sagas(
        &mut self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<(OrderId, UserId)>, StoreError>;
}
