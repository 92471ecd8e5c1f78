//! The Postgres store: one transaction per unit of work.
//!
//! Guarded operations are single conditional statements (`UPDATE … WHERE stock >= $q`,
//! `UPDATE … WHERE issued < quantity`, `UPDATE … WHERE status = $from`), never a read followed
//! by a blind write. The one read-then-decide is the wallet: the balance row is read
//! `FOR UPDATE`, the domain's wallet rule decides, and the update and the ledger entry are
//! written in the same transaction. Fencing tokens are checked on `lock_fences` with a
//! conditional upsert. A transaction dropped without commit rolls back (sqlx does it when the
//! connection goes back to the pool).

use crate::convert::{at, id, join_reference, money, qty, split_reference, ts, u32_of};
use crate::error::{corrupt, store_error};
use crate::lock::HostedSession;
use async_trait::async_trait;
use sqlx::{PgConnection, PgPool, Postgres, Row, Transaction};
use std::fmt;
use stockade_application::ports::idempotency::{StoredOutcome, Ticket};
use stockade_application::ports::lock::Fence;
use stockade_application::ports::store::{
    CartRepository, CouponRepository, LedgerChange, NewOrder, OrderRepository, PaymentRepository,
    ProductRepository, SagaStep, Store, StoreError, UnitOfWork, WalletAudit, WalletRepository,
};
use stockade_domain::{
    Cart, Coupon, CouponId, CouponKind, Discount, DomainError, IssuanceMode, LedgerEntry,
    LedgerKind, Money, NewCoupon, NewProduct, Order, OrderId, OrderLine, OrderStatus, Payment,
    PaymentId, PaymentStatus, Product, ProductId, Quantity, Timestamp, TransactionId, UserCoupon,
    UserCouponId, UserCouponStatus, UserId, Wallet,
};

/// The Postgres [`Store`].
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("connections", &self.pool.size())
            .finish()
    }
}

impl PgStore {
    pub fn new(pool: PgPool) -> Self {
        PgStore { pool }
    }

    /// A unit of work on a connection of the pool.
    pub(crate) async fn unit(&self) -> Result<PgUnit, StoreError> {
        let tx = self.pool.begin().await.map_err(store_error)?;
        Ok(PgUnit { tx: Tx::Pooled(tx) })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Store for PgStore {
    async fn begin(&self) -> Result<Box<dyn UnitOfWork>, StoreError> {
        Ok(Box::new(self.unit().await?))
    }
}

/// A unit's transaction: on a connection of the store's pool, or on the session holding its
/// locks.
pub(crate) enum Tx {
    Pooled(Transaction<'static, Postgres>),
    Hosted(HostedSession),
}

impl std::ops::Deref for Tx {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        match self {
            Tx::Pooled(t) => t,
            Tx::Hosted(h) => h,
        }
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Tx::Pooled(t) => t,
            Tx::Hosted(h) => h,
        }
    }
}

pub(crate) struct PgUnit {
    pub(crate) tx: Tx,
}

type R<T> = Result<T, StoreError>;

fn e(err: sqlx::Error) -> StoreError {
    store_error(err)
}

#[async_trait]
impl UnitOfWork for PgUnit {
    fn wallets(&mut self) -> &mut dyn WalletRepository {
        self
    }
    fn products(&mut self) -> &mut dyn ProductRepository {
        self
    }
    fn carts(&mut self) -> &mut dyn CartRepository {
        self
    }
    fn coupons(&mut self) -> &mut dyn CouponRepository {
        self
    }
    fn orders(&mut self) -> &mut dyn OrderRepository {
        self
    }
    fn payments(&mut self) -> &mut dyn PaymentRepository {
        self
    }

    async fn check_fences(&mut self, fences: &[Fence]) -> R<()> {
        if fences.is_empty() {
            return Ok(());
        }
        // One statement for every key (sorted, so concurrent units lock the rows in one order).
        let mut sorted: Vec<&Fence> = fences.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        sorted.dedup_by(|a, b| a.key == b.key);
        let keys: Vec<&str> = sorted.iter().map(|f| f.key.as_str()).collect();
        let tokens: Vec<i64> = sorted
            .iter()
            .map(|f| i64::try_from(f.token.0).map_err(|_| corrupt("token")))
            .collect::<R<_>>()?;
        let kept: Vec<String> = sqlx::query_scalar(
            "INSERT INTO lock_fences (key, token)
             SELECT * FROM unnest($1::text[], $2::bigint[])
             ON CONFLICT (key) DO UPDATE SET token = EXCLUDED.token, updated_at = statement_timestamp()
             WHERE lock_fences.token <= EXCLUDED.token
             RETURNING key",
        )
        .bind(&keys)
        .bind(&tokens)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?;
        if let Some(stale) = keys.iter().find(|k| !kept.iter().any(|x| x == *k)) {
            return Err(StoreError::StaleFence {
                key: (*stale).to_owned(),
            });
        }
        Ok(())
    }

    async fn order_with_payments(&mut self, oid: OrderId) -> R<Option<(Order, Vec<Payment>)>> {
        Ok(self
            .load("WHERE id = $1", Some(oid.get()), true)
            .await?
            .pop())
    }

    async fn commit(self: Box<Self>) -> R<()> {
        match self.tx {
            Tx::Pooled(t) => t.commit().await.map_err(e),
            Tx::Hosted(h) => h.commit().await.map_err(e),
        }
    }
}

impl PgUnit {
    /// Completes the idempotency record of `ticket` with `outcome`, as part of this unit.
    /// [`StoreError::TicketLost`] when the record no longer belongs to the ticket.
    pub(crate) async fn record_outcome(
        &mut self,
        ticket: &Ticket,
        outcome: &StoredOutcome,
        ttl: std::time::Duration,
    ) -> R<()> {
        let done = sqlx::query(
            "UPDATE idempotency_keys
             SET state = 'DONE', ok = $4, body = $5,
                 expires_at = statement_timestamp() + ($6 || ' milliseconds')::interval, updated_at = statement_timestamp()
             WHERE scope = $1 AND key = $2 AND owner = $3 AND state = 'IN_FLIGHT'",
        )
        .bind(&ticket.scope.0)
        .bind(ticket.key.as_str())
        .bind(&ticket.owner)
        .bind(outcome.ok)
        .bind(&outcome.body)
        .bind(ttl.as_millis().max(1).to_string())
        .execute(&mut *self.tx)
        .await
        .map_err(e)?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::TicketLost)
        }
    }

    /// [`Self::record_outcome`] for several tickets, in one statement.
    pub(crate) async fn record_outcomes(
        &mut self,
        outcomes: &[(Ticket, StoredOutcome)],
        ttl: std::time::Duration,
    ) -> R<()> {
        if let [(ticket, outcome)] = outcomes {
            return self.record_outcome(ticket, outcome, ttl).await;
        }
        crate::batch::record_outcomes(&mut self.tx, outcomes, ttl).await
    }
}

// ----------------------------------------------------------------------------------------------
// Wallets and the ledger

fn ledger_entry(row: &sqlx::postgres::PgRow) -> R<LedgerEntry> {
    let kind: String = row.try_get("kind").map_err(e)?;
    Ok(LedgerEntry {
        id: id(row.try_get("id").map_err(e)?, TransactionId::new)?,
        user_id: id(row.try_get("user_id").map_err(e)?, UserId::new)?,
        kind: LedgerKind::parse(&kind).ok_or_else(|| corrupt("ledger kind"))?,
        amount: money(row.try_get("amount").map_err(e)?),
        balance_after: money(row.try_get("balance_after").map_err(e)?),
        reference: join_reference(
            row.try_get("ref_type").map_err(e)?,
            row.try_get("ref_id").map_err(e)?,
        ),
        created_at: ts(row.try_get("created_at").map_err(e)?),
    })
}

const LEDGER_COLUMNS: &str =
    "id, user_id, kind, amount, balance_after, ref_type, ref_id, created_at";

#[async_trait]
impl WalletRepository for PgUnit {
    async fn balance(&mut self, user: UserId) -> R<Money> {
        let b: Option<i64> = sqlx::query_scalar("SELECT balance FROM wallets WHERE user_id = $1")
            .bind(user.get())
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(e)?;
        Ok(money(b.unwrap_or(0)))
    }

    async fn append(&mut self, change: LedgerChange, now: Timestamp) -> R<LedgerEntry> {
        let user = change.user_id.get();
        let (ref_type, ref_id) = match &change.reference {
            Some(r) => {
                let (t, i) = split_reference(r);
                (Some(t.to_owned()), Some(i.to_owned()))
            }
            None => (None, None),
        };
        // Create the wallet on first use, lock its row, and see whether the reference is taken:
        // one round trip. The domain's wallet rule then decides on the locked balance.
        let row = sqlx::query(
            "WITH created AS (
                 INSERT INTO wallets (user_id, balance, created_at, updated_at) VALUES ($1, 0, $2, $2)
                 ON CONFLICT (user_id) DO NOTHING RETURNING balance)
             SELECT COALESCE((SELECT balance FROM created),
                             (SELECT balance FROM wallets WHERE user_id = $1 FOR UPDATE)) AS balance,
                    EXISTS (SELECT 1 FROM ledger WHERE ref_type = $3 AND ref_id = $4 AND kind = $5) AS taken",
        )
        .bind(user)
        .bind(at(now))
        .bind(&ref_type)
        .bind(&ref_id)
        .bind(change.kind.as_str())
        .fetch_one(&mut *self.tx)
        .await
        .map_err(e)?;
        let mut balance: Option<i64> = row.try_get("balance").map_err(e)?;
        let taken: bool = row.try_get("taken").map_err(e)?;
        if balance.is_none() {
            // A concurrent unit created the wallet after this statement's snapshot was taken:
            // lock and read it with a fresh one (waiting for that unit if it is still open).
            balance = Some(
                sqlx::query_scalar("SELECT balance FROM wallets WHERE user_id = $1 FOR UPDATE")
                    .bind(user)
                    .fetch_one(&mut *self.tx)
                    .await
                    .map_err(e)?,
            );
        }
        if taken {
            return Err(StoreError::Conflict("ledger reference"));
        }
        let mut wallet = Wallet {
            user_id: change.user_id,
            balance: money(balance.unwrap_or(0)),
        };
        let draft = wallet.apply(change.kind, change.amount, change.reference)?;
        let row = sqlx::query(&format!(
            "WITH moved AS (UPDATE wallets SET balance = $4, updated_at = $7 WHERE user_id = $1)
             INSERT INTO ledger (user_id, kind, amount, balance_after, ref_type, ref_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {LEDGER_COLUMNS}"
        ))
        .bind(user)
        .bind(draft.kind.as_str())
        .bind(draft.amount.won())
        .bind(draft.balance_after.won())
        .bind(ref_type)
        .bind(ref_id)
        .bind(at(now))
        .fetch_one(&mut *self.tx)
        .await
        .map_err(e)?;
        ledger_entry(&row)
    }

    async fn entries(&mut self, user: UserId) -> R<Vec<LedgerEntry>> {
        let rows = sqlx::query(&format!(
            "SELECT {LEDGER_COLUMNS} FROM ledger WHERE user_id = $1 ORDER BY id"
        ))
        .bind(user.get())
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?;
        rows.iter().map(ledger_entry).collect()
    }

    async fn find_entry(&mut self, reference: &str, kind: LedgerKind) -> R<Option<LedgerEntry>> {
        let (t, i) = split_reference(reference);
        let row = sqlx::query(&format!(
            "SELECT {LEDGER_COLUMNS} FROM ledger WHERE ref_type = $1 AND ref_id = $2 AND kind = $3"
        ))
        .bind(t)
        .bind(i)
        .bind(kind.as_str())
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(e)?;
        row.as_ref().map(ledger_entry).transpose()
    }

    async fn audit(&mut self) -> R<Vec<WalletAudit>> {
        let rows = sqlx::query(
            "SELECT w.user_id, w.balance,
                    COALESCE(SUM(CASE l.kind WHEN 'USE' THEN -l.amount ELSE l.amount END), 0)::BIGINT AS ledger_sum,
                    COALESCE(SUM(l.amount) FILTER (WHERE l.kind = 'CHARGE'), 0)::BIGINT AS charges,
                    COALESCE(SUM(l.amount) FILTER (WHERE l.kind = 'USE'), 0)::BIGINT AS uses,
                    COALESCE(SUM(l.amount) FILTER (WHERE l.kind = 'REFUND'), 0)::BIGINT AS refunds
             FROM wallets w LEFT JOIN ledger l ON l.user_id = w.user_id
             GROUP BY w.user_id, w.balance ORDER BY w.user_id",
        )
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?;
        rows.iter()
            .map(|r| {
                Ok(WalletAudit {
                    user_id: id(r.try_get("user_id").map_err(e)?, UserId::new)?,
                    balance: r.try_get("balance").map_err(e)?,
                    ledger_sum: r.try_get("ledger_sum").map_err(e)?,
                    charges: r.try_get("charges").map_err(e)?,
                    uses: r.try_get("uses").map_err(e)?,
                    refunds: r.try_get("refunds").map_err(e)?,
                })
            })
            .collect()
    }
}

// ----------------------------------------------------------------------------------------------
// Products and carts

fn product(row: &sqlx::postgres::PgRow) -> R<Product> {
    Ok(Product {
        id: id(row.try_get("id").map_err(e)?, ProductId::new)?,
        name: row.try_get("name").map_err(e)?,
        price: money(row.try_get("price").map_err(e)?),
        stock: u32_of(row.try_get("stock").map_err(e)?),
        max_per_order: u32_of(i64::from(
            row.try_get::<i32, _>("max_per_order").map_err(e)?,
        )),
    })
}

const PRODUCT_COLUMNS: &str = "id, name, price, stock, max_per_order";

#[async_trait]
impl ProductRepository for PgUnit {
    async fn get(&mut self, pid: ProductId) -> R<Option<Product>> {
        let row = sqlx::query(&format!(
            "SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1 AND state = 'ACTIVE'"
        ))
        .bind(pid.get())
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(e)?;
        row.as_ref().map(product).transpose()
    }

    async fn list(&mut self) -> R<Vec<Product>> {
        let rows = sqlx::query(&format!(
            "SELECT {PRODUCT_COLUMNS} FROM products WHERE state = 'ACTIVE' ORDER BY id"
        ))
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?;
        rows.iter().map(product).collect()
    }

    async fn insert(&mut self, new: NewProduct) -> R<Product> {
        let row = sqlx::query(&format!(
            "INSERT INTO products (name, price, stock, max_per_order, created_at, updated_at)
             VALUES ($1, $2, $3, $4, statement_timestamp(), statement_timestamp()) RETURNING {PRODUCT_COLUMNS}"
        ))
        .bind(&new.name)
        .bind(new.price.won())
        .bind(i64::from(new.stock))
        .bind(i32::try_from(new.max_per_order).unwrap_or(i32::MAX))
        .fetch_one(&mut *self.tx)
        .await
        .map_err(e)?;
        product(&row)
    }

    async fn set_stock(&mut self, pid: ProductId, stock: u32) -> R<Option<Product>> {
        let row = sqlx::query(&format!(
            "UPDATE products SET stock = $2, updated_at = statement_timestamp()
             WHERE id = $1 AND state = 'ACTIVE' RETURNING {PRODUCT_COLUMNS}"
        ))
        .bind(pid.get())
        .bind(i64::from(stock))
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(e)?;
        row.as_ref().map(product).transpose()
    }

    async fn deduct_stock(&mut self, pid: ProductId, quantity: Quantity) -> R<()> {
        let q = i64::from(quantity.get());
        let done = sqlx::query(
            "UPDATE products SET stock = stock - $2, updated_at = statement_timestamp()
             WHERE id = $1 AND state = 'ACTIVE' AND stock >= $2",
        )
        .bind(pid.get())
        .bind(q)
        .execute(&mut *self.tx)
        .await
        .map_err(e)?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        let left: Option<i64> =
            sqlx::query_scalar("SELECT stock FROM products WHERE id = $1 AND state = 'ACTIVE'")
                .bind(pid.get())
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(e)?;
        Err(match left {
            None => DomainError::ProductNotFound(pid.get()).into(),
            Some(available) => DomainError::InsufficientStock {
                product: pid.get(),
                requested: quantity.get(),
                available: u32_of(available),
            }
            .into(),
        })
    }

    async fn restore_stock(&mut self, pid: ProductId, quantity: Quantity) -> R<()> {
        let done =
            sqlx::query("UPDATE products SET stock = stock + $2, updated_at = statement_timestamp() WHERE id = $1")
                .bind(pid.get())
                .bind(i64::from(quantity.get()))
                .execute(&mut *self.tx)
                .await
                .map_err(e)?;
        if done.rows_affected() == 0 {
            return Err(DomainError::ProductNotFound(pid.get()).into());
        }
        Ok(())
    }
}

#[async_trait]
impl CartRepository for PgUnit {
    async fn get(&mut self, user: UserId) -> R<Cart> {
        let rows = sqlx::query(
            "SELECT product_id, quantity FROM cart_items
             WHERE user_id = $1 AND state = 'ACTIVE' ORDER BY product_id",
        )
        .bind(user.get())
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?;
        let mut cart = Cart::empty(user);
        for r in rows {
            cart.items.insert(
                id(r.try_get("product_id").map_err(e)?, ProductId::new)?,
                qty(r.try_get("quantity").map_err(e)?)?,
            );
        }
        Ok(cart)
    }

    async fn save(&mut self, cart: &Cart) -> R<()> {
        let keep: Vec<i64> = cart.items.keys().map(|p| p.get()).collect();
        sqlx::query(
            "UPDATE cart_items SET state = 'REMOVED', updated_at = statement_timestamp()
             WHERE user_id = $1 AND state = 'ACTIVE' AND NOT (product_id = ANY($2))",
        )
        .bind(cart.user_id.get())
        .bind(&keep)
        .execute(&mut *self.tx)
        .await
        .map_err(e)?;
        for (p, q) in &cart.items {
            sqlx::query(
                "INSERT INTO cart_items (user_id, product_id, quantity, state, created_at, updated_at)
                 VALUES ($1, $2, $3, 'ACTIVE', statement_timestamp(), statement_timestamp())
                 ON CONFLICT (user_id, product_id)
                 DO UPDATE SET quantity = EXCLUDED.quantity, state = 'ACTIVE', updated_at = statement_timestamp()",
            )
            .bind(cart.user_id.get())
            .bind(p.get())
            .bind(i32::try_from(q.get()).unwrap_or(i32::MAX))
            .execute(&mut *self.tx)
            .await
            .map_err(e)?;
        }
        Ok(())
    }
}

// ----------------------------------------------------------------------------------------------
// Coupons

const COUPON_COLUMNS: &str = "id, name, kind, discount_type, discount_value, max_discount, \
     min_order_amount, quantity, mode, valid_from, valid_until";

fn coupon(row: &sqlx::postgres::PgRow) -> R<Coupon> {
    let kind: String = row.try_get("kind").map_err(e)?;
    let dtype: String = row.try_get("discount_type").map_err(e)?;
    let mode: String = row.try_get("mode").map_err(e)?;
    let from: Option<time::OffsetDateTime> = row.try_get("valid_from").map_err(e)?;
    let until: Option<time::OffsetDateTime> = row.try_get("valid_until").map_err(e)?;
    Ok(Coupon {
        id: id(row.try_get("id").map_err(e)?, CouponId::new)?,
        name: row.try_get("name").map_err(e)?,
        kind: CouponKind::parse(&kind).ok_or_else(|| corrupt("coupon kind"))?,
        discount: Discount::new(
            &dtype,
            row.try_get("discount_value").map_err(e)?,
            row.try_get("max_discount").map_err(e)?,
        )
        .map_err(|_| corrupt("discount"))?,
        min_order_amount: money(row.try_get("min_order_amount").map_err(e)?),
        quantity: u32_of(i64::from(row.try_get::<i32, _>("quantity").map_err(e)?)),
        mode: IssuanceMode::parse(&mode).ok_or_else(|| corrupt("coupon mode"))?,
        valid_from: from.map(ts),
        valid_until: until.map(ts),
    })
}

const USER_COUPON_COLUMNS: &str = "id, coupon_id, user_id, status, order_id, issued_at, expires_at";

fn user_coupon(row: &sqlx::postgres::PgRow) -> R<UserCoupon> {
    let status: String = row.try_get("status").map_err(e)?;
    let order: Option<i64> = row.try_get("order_id").map_err(e)?;
    Ok(UserCoupon {
        id: id(row.try_get("id").map_err(e)?, UserCouponId::new)?,
        coupon_id: id(row.try_get("coupon_id").map_err(e)?, CouponId::new)?,
        user_id: id(row.try_get("user_id").map_err(e)?, UserId::new)?,
        status: UserCouponStatus::parse(&status).ok_or_else(|| corrupt("user coupon status"))?,
        issued_at: ts(row.try_get("issued_at").map_err(e)?),
        expires_at: ts(row.try_get("expires_at").map_err(e)?),
        order_id: order.map(|o| id(o, OrderId::new)).transpose()?,
    })
}

#[async_trait]
impl CouponRepository for PgUnit {
    async fn insert(&mut self, new: NewCoupon) -> R<Coupon> {
        let row = sqlx::query(&format!(
            "INSERT INTO coupons (name, kind, discount_type, discount_value, max_discount,
                 min_order_amount, quantity, mode, valid_from, valid_until, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, statement_timestamp(), statement_timestamp())
             RETURNING {COUPON_COLUMNS}"
        ))
        .bind(&new.name)
        .bind(new.kind.as_str())
        .bind(new.discount.type_str())
        .bind(new.discount.value())
        .bind(new.discount.cap().map(|m| m.won()))
        .bind(new.min_order_amount.won())
        .bind(i32::try_from(new.quantity).unwrap_or(i32::MAX))
        .bind(new.mode.as_str())
        .bind(new.valid_from.map(at))
        .bind(new.valid_until.map(at))
        .fetch_one(&mut *self.tx)
        .await
        .map_err(e)?;
        coupon(&row)
    }

    async fn get(&mut self, cid: CouponId) -> R<Option<Coupon>> {
        let row = sqlx::query(&format!(
            "SELECT {COUPON_COLUMNS} FROM coupons WHERE id = $1"
        ))
        .bind(cid.get())
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(e)?;
        row.as_ref().map(coupon).transpose()
    }

    async fn list(&mut self) -> R<Vec<Coupon>> {
        let rows = sqlx::query(&format!("SELECT {COUPON_COLUMNS} FROM coupons ORDER BY id"))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(e)?;
        rows.iter().map(coupon).collect()
    }

    async fn issue(&mut self, c: &Coupon, user: UserId, now: Timestamp) -> R<UserCoupon> {
        let row = sqlx::query(&format!(
            "INSERT INTO user_coupons (coupon_id, user_id, status, issued_at, expires_at, created_at, updated_at)
             VALUES ($1, $2, 'ISSUED', $3, $4, $3, $3)
             ON CONFLICT (coupon_id, user_id) DO NOTHING
             RETURNING {USER_COUPON_COLUMNS}"
        ))
        .bind(c.id.get())
        .bind(user.get())
        .bind(at(now))
        .bind(at(c.expiry_for(now)))
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(e)?;
        let Some(row) = row else {
            return Err(DomainError::CouponAlreadyIssued.into());
        };
        let counted = sqlx::query(
            "UPDATE coupons SET issued = issued + 1, updated_at = statement_timestamp()
             WHERE id = $1 AND issued < quantity",
        )
        .bind(c.id.get())
        .execute(&mut *self.tx)
        .await
        .map_err(e)?;
        if counted.rows_affected() == 0 {
            // The caller drops the unit, which also removes the row inserted above.
            return Err(DomainError::CouponSoldOut.into());
        }
        sqlx::query("DELETE FROM failed_issuances WHERE coupon_id = $1 AND user_id = $2")
            .bind(c.id.get())
            .bind(user.get())
            .execute(&mut *self.tx)
            .await
            .map_err(e)?;
        user_coupon(&row)
    }

    /// One statement for the whole batch: the rows go in (in user order, so that two batches
    /// holding the same users never wait on each other in a cycle), the coupon's count moves
    /// by the number that went in, if that stays within the quantity, and those users'
    /// failures are cleared.
    async fn issue_batch(&mut self, c: &Coupon, claims: &[(UserId, Timestamp)]) -> R<u32> {
        let mut sorted: Vec<(UserId, Timestamp)> = claims.to_vec();
        sorted.sort_by_key(|(u, _)| *u);
        sorted.dedup_by_key(|(u, _)| *u);
        if sorted.is_empty() {
            return Ok(0);
        }
        let users: Vec<i64> = sorted.iter().map(|(u, _)| u.get()).collect();
        let issued_at: Vec<_> = sorted.iter().map(|(_, t)| at(*t)).collect();
        let expires_at: Vec<_> = sorted.iter().map(|(_, t)| at(c.expiry_for(*t))).collect();
        let row = sqlx::query(
            "WITH claim AS (
                 SELECT * FROM unnest($2::bigint[], $3::timestamptz[], $4::timestamptz[])
                     AS c (user_id, issued_at, expires_at)
             ), issued AS (
                 INSERT INTO user_coupons
                     (coupon_id, user_id, status, issued_at, expires_at, created_at, updated_at)
                 SELECT $1, user_id, 'ISSUED', issued_at, expires_at, issued_at, issued_at
                 FROM claim ORDER BY user_id
                 ON CONFLICT (coupon_id, user_id) DO NOTHING
                 RETURNING user_id
             ), counted AS (
                 UPDATE coupons SET issued = issued + (SELECT count(*) FROM issued),
                                    updated_at = statement_timestamp()
                 WHERE id = $1 AND (SELECT count(*) FROM issued) > 0
                   AND issued + (SELECT count(*) FROM issued) <= quantity
                 RETURNING id
             ), cleared AS (
                 DELETE FROM failed_issuances
                 WHERE coupon_id = $1 AND user_id IN (SELECT user_id FROM issued)
             )
             SELECT (SELECT count(*) FROM issued) AS issued, (SELECT count(*) FROM counted) AS counted",
        )
        .bind(c.id.get())
        .bind(&users)
        .bind(&issued_at)
        .bind(&expires_at)
        .fetch_one(&mut *self.tx)
        .await
        .map_err(e)?;
        let issued: i64 = row.try_get("issued").map_err(e)?;
        let counted: i64 = row.try_get("counted").map_err(e)?;
        if issued > 0 && counted == 0 {
            // The caller drops the unit, which also removes the rows inserted above.
            return Err(DomainError::CouponSoldOut.into());
        }
        Ok(u32_of(issued))
    }

    async fn issue_each(
        &mut self,
        c: &Coupon,
        users: &[UserId],
        now: Timestamp,
    ) -> R<Vec<Result<UserCoupon, DomainError>>> {
        crate::batch::issue_each(&mut self.tx, c, users, now).await
    }

    async fn get_user_coupon(&mut self, ucid: UserCouponId) -> R<Option<UserCoupon>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COUPON_COLUMNS} FROM user_coupons WHERE id = $1"
        ))
        .bind(ucid.get())
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(e)?;
        row.as_ref().map(user_coupon).transpose()
    }

    async fn user_coupons(&mut self, user: UserId) -> R<Vec<UserCoupon>> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COUPON_COLUMNS} FROM user_coupons WHERE user_id = $1 ORDER BY id"
        ))
        .bind(user.get())
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?;
        rows.iter().map(user_coupon).collect()
    }

    async fn issued_count(&mut self, cid: CouponId) -> R<u32> {
        let n: Option<i32> = sqlx::query_scalar("SELECT issued FROM coupons WHERE id = $1")
            .bind(cid.get())
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(e)?;
        Ok(u32_of(i64::from(n.unwrap_or(0))))
    }

    async fn holders(&mut self, cid: CouponId) -> R<Vec<UserId>> {
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT user_id FROM user_coupons WHERE coupon_id = $1 ORDER BY id")
                .bind(cid.get())
                .fetch_all(&mut *self.tx)
                .await
                .map_err(e)?;
        ids.into_iter().map(|u| id(u, UserId::new)).collect()
    }

    async fn set_state(
        &mut self,
        ucid: UserCouponId,
        from: UserCouponStatus,
        to: UserCouponStatus,
        order: Option<OrderId>,
    ) -> R<bool> {
        let done = sqlx::query(
            "UPDATE user_coupons SET status = $3, order_id = $4, updated_at = statement_timestamp()
             WHERE id = $1 AND status = $2",
        )
        .bind(ucid.get())
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(order.map(|o| o.get()))
        .execute(&mut *self.tx)
        .await
        .map_err(e)?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_failure(
        &mut self,
        cid: CouponId,
        user: UserId,
        reason: &str,
        now: Timestamp,
    ) -> R<()> {
        sqlx::query(
            "INSERT INTO failed_issuances (coupon_id, user_id, reason, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (coupon_id, user_id) DO UPDATE SET reason = EXCLUDED.reason, updated_at = EXCLUDED.updated_at",
        )
        .bind(cid.get())
        .bind(user.get())
        .bind(reason)
        .bind(at(now))
        .execute(&mut *self.tx)
        .await
        .map_err(e)?;
        Ok(())
    }

    async fn failures(&mut self, cid: CouponId) -> R<Vec<UserId>> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT user_id FROM failed_issuances WHERE coupon_id = $1 ORDER BY user_id",
        )
        .bind(cid.get())
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?;
        ids.into_iter().map(|u| id(u, UserId::new)).collect()
    }
}

// ----------------------------------------------------------------------------------------------
// Orders and payments

const ORDER_COLUMNS: &str =
    "id, user_id, status, subtotal, discount, total, expires_at, created_at, updated_at";

impl PgUnit {
    /// Orders with their lines and cart coupons, in one round trip.
    async fn load_orders(&mut self, filter: &str, arg: Option<i64>) -> R<Vec<Order>> {
        let loaded = self.load(filter, arg, false).await?;
        Ok(loaded.into_iter().map(|(order, _)| order).collect())
    }

    /// Orders with their lines and cart coupons, and with their payments (oldest first) if
    /// `payments` (otherwise none), in one round trip.
    async fn load(
        &mut self,
        filter: &str,
        arg: Option<i64>,
        payments: bool,
    ) -> R<Vec<(Order, Vec<Payment>)>> {
        let payment_column = if payments {
            ",
                COALESCE((SELECT json_agg(json_build_object(
                    'id', p.id, 'order_id', p.order_id, 'user_id', p.user_id, 'amount', p.amount,
                    'status', p.status, 'idempotency_ref', p.idempotency_ref,
                    'created_at', floor(extract(epoch FROM p.created_at) * 1000)::bigint,
                    'updated_at', floor(extract(epoch FROM p.updated_at) * 1000)::bigint)
                    ORDER BY p.id)
                    FROM payments p WHERE p.order_id = orders.id), '[]') AS payments"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {ORDER_COLUMNS},
                COALESCE((SELECT json_agg(json_build_object(
                    'product_id', l.product_id, 'name', l.name, 'unit_price', l.unit_price,
                    'quantity', l.quantity, 'line_total', l.line_total, 'discount', l.discount,
                    'user_coupon_id', l.user_coupon_id) ORDER BY l.line_no)
                    FROM order_lines l WHERE l.order_id = orders.id), '[]') AS lines,
                COALESCE((SELECT json_agg(json_build_object(
                    'user_coupon_id', c.user_coupon_id, 'discount', c.discount) ORDER BY c.position)
                    FROM order_coupons c WHERE c.order_id = orders.id), '[]') AS coupons
                {payment_column}
             FROM orders {filter} ORDER BY id"
        );
        let mut q = sqlx::query(&sql);
        if let Some(a) = arg {
            q = q.bind(a);
        }
        let rows = q.fetch_all(&mut *self.tx).await.map_err(e)?;
        let num = |v: &serde_json::Value, k: &str| v[k].as_i64().ok_or_else(|| corrupt(k));
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let status: String = r.try_get("status").map_err(e)?;
            let lines: serde_json::Value = r.try_get("lines").map_err(e)?;
            let coupons: serde_json::Value = r.try_get("coupons").map_err(e)?;
            let mut order_lines = Vec::new();
            for l in lines.as_array().into_iter().flatten() {
                order_lines.push(OrderLine {
                    product_id: id(num(l, "product_id")?, ProductId::new)?,
                    name: l["name"].as_str().unwrap_or_default().to_owned(),
                    unit_price: money(num(l, "unit_price")?),
                    quantity: qty(
                        i32::try_from(num(l, "quantity")?).map_err(|_| corrupt("quantity"))?
                    )?,
                    line_total: money(num(l, "line_total")?),
                    discount: money(num(l, "discount")?),
                    user_coupon_id: l["user_coupon_id"]
                        .as_i64()
                        .map(|u| id(u, UserCouponId::new))
                        .transpose()?,
                });
            }
            let mut cart_coupons = Vec::new();
            for c in coupons.as_array().into_iter().flatten() {
                cart_coupons.push((
                    id(num(c, "user_coupon_id")?, UserCouponId::new)?,
                    money(num(c, "discount")?),
                ));
            }
            let mut paid = Vec::new();
            if payments {
                let listed: serde_json::Value = r.try_get("payments").map_err(e)?;
                for p in listed.as_array().into_iter().flatten() {
                    let status = p["status"].as_str().unwrap_or_default();
                    paid.push(Payment {
                        id: id(num(p, "id")?, PaymentId::new)?,
                        order_id: id(num(p, "order_id")?, OrderId::new)?,
                        user_id: id(num(p, "user_id")?, UserId::new)?,
                        amount: money(num(p, "amount")?),
                        status: PaymentStatus::parse(status)
                            .ok_or_else(|| corrupt("payment status"))?,
                        reference: p["idempotency_ref"].as_str().map(str::to_owned),
                        created_at: Timestamp::from_millis(num(p, "created_at")?),
                        updated_at: Timestamp::from_millis(num(p, "updated_at")?),
                    });
                }
            }
            let order = Order {
                id: id(r.try_get("id").map_err(e)?, OrderId::new)?,
                user_id: id(r.try_get("user_id").map_err(e)?, UserId::new)?,
                status: OrderStatus::parse(&status).ok_or_else(|| corrupt("order status"))?,
                lines: order_lines,
                cart_coupons,
                subtotal: money(r.try_get("subtotal").map_err(e)?),
                discount: money(r.try_get("discount").map_err(e)?),
                total: money(r.try_get("total").map_err(e)?),
                created_at: ts(r.try_get("created_at").map_err(e)?),
                expires_at: ts(r.try_get("expires_at").map_err(e)?),
                updated_at: ts(r.try_get("updated_at").map_err(e)?),
            };
            out.push((order, paid));
        }
        Ok(out)
    }
}

#[async_trait]
impl OrderRepository for PgUnit {
    async fn insert(&mut self, new: NewOrder) -> R<Order> {
        let p = &new.pricing;
        let n = |i: usize| i32::try_from(i).unwrap_or(i32::MAX);
        let line_no: Vec<i32> = (0..p.lines.len()).map(n).collect();
        let product: Vec<i64> = p.lines.iter().map(|l| l.product_id.get()).collect();
        let name: Vec<&str> = p.lines.iter().map(|l| l.name.as_str()).collect();
        let unit: Vec<i64> = p.lines.iter().map(|l| l.unit_price.won()).collect();
        let quantity: Vec<i32> = p
            .lines
            .iter()
            .map(|l| n(l.quantity.get() as usize))
            .collect();
        let total: Vec<i64> = p.lines.iter().map(|l| l.line_total.won()).collect();
        let off: Vec<i64> = p.lines.iter().map(|l| l.discount.won()).collect();
        let coupon: Vec<Option<i64>> = p
            .lines
            .iter()
            .map(|l| l.user_coupon_id.map(|u| u.get()))
            .collect();
        let position: Vec<i32> = (0..p.cart_coupons.len()).map(n).collect();
        let cart_coupon: Vec<i64> = p.cart_coupons.iter().map(|(u, _)| u.get()).collect();
        let cart_off: Vec<i64> = p.cart_coupons.iter().map(|(_, m)| m.won()).collect();
        // The order, its lines and its cart coupons in one statement.
        let oid: Option<i64> = sqlx::query_scalar(
            "WITH o AS (
                 INSERT INTO orders (user_id, status, subtotal, discount, total, expires_at, created_at, updated_at, idempotency_ref)
                 VALUES ($1, 'PENDING_PAYMENT', $2, $3, $4, $5, $6, $6, $18)
                 ON CONFLICT (idempotency_ref) WHERE idempotency_ref IS NOT NULL DO NOTHING
                 RETURNING id),
             lines AS (
                 INSERT INTO order_lines (order_id, line_no, product_id, name, unit_price, quantity,
                                          line_total, discount, user_coupon_id, created_at, updated_at)
                 SELECT o.id, t.*, $6, $6 FROM o,
                        unnest($7::int[], $8::bigint[], $9::text[], $10::bigint[], $11::int[],
                               $12::bigint[], $13::bigint[], $14::bigint[]) AS t),
             coupons AS (
                 INSERT INTO order_coupons (order_id, position, user_coupon_id, discount, created_at, updated_at)
                 SELECT o.id, t.*, $6, $6 FROM o, unnest($15::int[], $16::bigint[], $17::bigint[]) AS t)
             SELECT id FROM o",
        )
        .bind(new.user_id.get())
        .bind(p.subtotal.won())
        .bind(p.discount.won())
        .bind(p.total.won())
        .bind(at(new.expires_at))
        .bind(at(new.created_at))
        .bind(&line_no)
        .bind(&product)
        .bind(&name)
        .bind(&unit)
        .bind(&quantity)
        .bind(&total)
        .bind(&off)
        .bind(&coupon)
        .bind(&position)
        .bind(&cart_coupon)
        .bind(&cart_off)
        .bind(&new.reference)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(e)?;
        let Some(oid) = oid else {
            return Err(StoreError::Conflict("order reference"));
        };
        // Timestamps round-trip through the database at microsecond precision; the domain's
        // are milliseconds, so the values written are exactly these.
        Ok(Order {
            id: id(oid, OrderId::new)?,
            user_id: new.user_id,
            status: OrderStatus::PendingPayment,
            lines: p.lines.clone(),
            cart_coupons: p.cart_coupons.clone(),
            subtotal: p.subtotal,
            discount: p.discount,
            total: p.total,
            created_at: new.created_at,
            expires_at: new.expires_at,
            updated_at: new.created_at,
        })
    }

    async fn get(&mut self, oid: OrderId) -> R<Option<Order>> {
        Ok(self
            .load_orders("WHERE id = $1", Some(oid.get()))
            .await?
            .pop())
    }

    async fn insert_many(&mut self, mut news: Vec<NewOrder>) -> R<Vec<Order>> {
        // One order: the single statement is lighter to plan than the batch's.
        if news.len() == 1 {
            if let Some(new) = news.pop() {
                return Ok(vec![OrderRepository::insert(self, new).await?]);
            }
        }
        crate::batch::insert_orders(&mut self.tx, news).await
    }

    async fn find_by_reference(&mut self, reference: &str) -> R<Option<Order>> {
        let oid: Option<i64> =
            sqlx::query_scalar("SELECT id FROM orders WHERE idempotency_ref = $1")
                .bind(reference)
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(e)?;
        match oid {
            Some(oid) => OrderRepository::get(self, id(oid, OrderId::new)?).await,
            None => Ok(None),
        }
    }

    async fn update_status(
        &mut self,
        oid: OrderId,
        from: OrderStatus,
        to: OrderStatus,
        now: Timestamp,
    ) -> R<bool> {
        let done = sqlx::query(
            "UPDATE orders SET status = $3, updated_at = $4 WHERE id = $1 AND status = $2",
        )
        .bind(oid.get())
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(at(now))
        .execute(&mut *self.tx)
        .await
        .map_err(e)?;
        Ok(done.rows_affected() == 1)
    }

    async fn due_for_expiry(&mut self, now: Timestamp, limit: usize) -> R<Vec<(OrderId, UserId)>> {
        let rows = sqlx::query(
            "SELECT id, user_id FROM orders
             WHERE status = 'PENDING_PAYMENT' AND expires_at <= $1
             ORDER BY expires_at LIMIT $2",
        )
        .bind(at(now))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?;
        rows.iter()
            .map(|r| {
                Ok((
                    id(r.try_get("id").map_err(e)?, OrderId::new)?,
                    id(r.try_get("user_id").map_err(e)?, UserId::new)?,
                ))
            })
            .collect()
    }

    async fn sales_since(&mut self, since: Timestamp) -> R<Vec<(ProductId, u64)>> {
        let rows = sqlx::query(
            "SELECT l.product_id, SUM(l.quantity)::BIGINT AS sold
             FROM orders o JOIN order_lines l ON l.order_id = o.id
             WHERE o.status = 'PAID' AND o.updated_at >= $1
             GROUP BY l.product_id",
        )
        .bind(at(since))
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?;
        rows.iter()
            .map(|r| {
                Ok((
                    id(r.try_get("product_id").map_err(e)?, ProductId::new)?,
                    u64::try_from(r.try_get::<i64, _>("sold").map_err(e)?).unwrap_or(0),
                ))
            })
            .collect()
    }

    async fn all(&mut self) -> R<Vec<Order>> {
        self.load_orders("", None).await
    }
}

const PAYMENT_COLUMNS: &str =
    "id, order_id, user_id, amount, status, idempotency_ref, created_at, updated_at";

/// A PENDING payment: order `$1`, user `$2`, amount `$3`, at `$4`, reference `$5`.
const INSERT_PAYMENT: &str = "INSERT INTO payments
     (order_id, user_id, amount, status, idempotency_ref, created_at, updated_at)
     VALUES ($1, $2, $3, 'PENDING', $5, $4, $4)";

impl PgUnit {
    /// Runs `sql`, a statement built on [`INSERT_PAYMENT`] that answers the payment's columns.
    async fn insert_payment(
        &mut self,
        sql: &str,
        order: &Order,
        amount: Money,
        reference: Option<&str>,
        now: Timestamp,
    ) -> R<Payment> {
        let row = sqlx::query(sql)
            .bind(order.id.get())
            .bind(order.user_id.get())
            .bind(amount.won())
            .bind(at(now))
            .bind(reference)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(e)?;
        payment(&row)
    }
}

fn payment(row: &sqlx::postgres::PgRow) -> R<Payment> {
    let status: String = row.try_get("status").map_err(e)?;
    Ok(Payment {
        id: id(row.try_get("id").map_err(e)?, PaymentId::new)?,
        order_id: id(row.try_get("order_id").map_err(e)?, OrderId::new)?,
        user_id: id(row.try_get("user_id").map_err(e)?, UserId::new)?,
        amount: money(row.try_get("amount").map_err(e)?),
        status: PaymentStatus::parse(&status).ok_or_else(|| corrupt("payment status"))?,
        reference: row.try_get("idempotency_ref").map_err(e)?,
        created_at: ts(row.try_get("created_at").map_err(e)?),
        updated_at: ts(row.try_get("updated_at").map_err(e)?),
    })
}

#[async_trait]
impl PaymentRepository for PgUnit {
    async fn insert(
        &mut self,
        order: &Order,
        amount: Money,
        reference: Option<&str>,
        now: Timestamp,
    ) -> R<Payment> {
        let sql = format!("{INSERT_PAYMENT} RETURNING {PAYMENT_COLUMNS}");
        self.insert_payment(&sql, order, amount, reference, now)
            .await
    }

    async fn insert_debited(
        &mut self,
        order: &Order,
        amount: Money,
        reference: Option<&str>,
        now: Timestamp,
    ) -> R<Payment> {
        let sql = format!(
            "WITH p AS ({INSERT_PAYMENT} RETURNING {PAYMENT_COLUMNS}),
             s AS (
                 INSERT INTO saga_log (payment_id, order_id, step, created_at, updated_at)
                 SELECT id, order_id, 'DEBITED', $4, $4 FROM p)
             SELECT {PAYMENT_COLUMNS} FROM p"
        );
        self.insert_payment(&sql, order, amount, reference, now)
            .await
    }

    async fn for_order(&mut self, oid: OrderId) -> R<Vec<Payment>> {
        let rows = sqlx::query(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = $1 ORDER BY id"
        ))
        .bind(oid.get())
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?;
        rows.iter().map(payment).collect()
    }

    async fn update_status(
        &mut self,
        pid: PaymentId,
        from: PaymentStatus,
        to: PaymentStatus,
        now: Timestamp,
    ) -> R<bool> {
        let done = sqlx::query(
            "UPDATE payments SET status = $3, updated_at = $4 WHERE id = $1 AND status = $2",
        )
        .bind(pid.get())
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(at(now))
        .execute(&mut *self.tx)
        .await
        .map_err(e)?;
        Ok(done.rows_affected() == 1)
    }

    async fn confirm(&mut self, p: &Payment, now: Timestamp) -> R<bool> {
        // Both rows must be in their expected state, or nothing changes.
        let done: bool = sqlx::query_scalar(
            "WITH ok AS (
                 SELECT EXISTS (SELECT 1 FROM payments WHERE id = $1 AND status = 'PENDING' FOR UPDATE)
                    AND EXISTS (SELECT 1 FROM orders WHERE id = $2 AND status = 'PENDING_PAYMENT' FOR UPDATE) AS yes),
             p AS (UPDATE payments SET status = 'APPROVED', updated_at = $3
                   WHERE id = $1 AND status = 'PENDING' AND (SELECT yes FROM ok) RETURNING id),
             o AS (UPDATE orders SET status = 'PAID', updated_at = $3
                   WHERE id = $2 AND status = 'PENDING_PAYMENT' AND (SELECT yes FROM ok) RETURNING id),
             s AS (INSERT INTO saga_log (payment_id, order_id, step, created_at, updated_at)
                   SELECT $1, $2, 'CONFIRMED', $3, $3 WHERE (SELECT yes FROM ok)
                   ON CONFLICT (payment_id) DO UPDATE SET step = 'CONFIRMED', updated_at = EXCLUDED.updated_at)
             SELECT (SELECT yes FROM ok)",
        )
        .bind(p.id.get())
        .bind(p.order_id.get())
        .bind(at(now))
        .fetch_one(&mut *self.tx)
        .await
        .map_err(e)?;
        Ok(done)
    }

    async fn log_saga_step(&mut self, p: &Payment, step: SagaStep, now: Timestamp) -> R<()> {
        sqlx::query(
            "INSERT INTO saga_log (payment_id, order_id, step, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (payment_id) DO UPDATE SET step = EXCLUDED.step, updated_at = EXCLUDED.updated_at",
        )
        .bind(p.id.get())
        .bind(p.order_id.get())
        .bind(step.as_str())
        .bind(at(now))
        .execute(&mut *self.tx)
        .await
        .map_err(e)?;
        Ok(())
    }

    async fn open_sagas(&mut self, before: Timestamp, limit: usize) -> R<Vec<(OrderId, UserId)>> {
        let rows = sqlx::query(
            "SELECT s.order_id, p.user_id FROM saga_log s JOIN payments p ON p.id = s.payment_id
             WHERE s.step = 'DEBITED' AND s.created_at < $1
             ORDER BY s.created_at LIMIT $2",
        )
        .bind(at(before))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?;
        rows.iter()
            .map(|r| {
                Ok((
                    id(r.try_get("order_id").map_err(e)?, OrderId::new)?,
                    id(r.try_get("user_id").map_err(e)?, UserId::new)?,
                ))
            })
            .collect()
    }
}
