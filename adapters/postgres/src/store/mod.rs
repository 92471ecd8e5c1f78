//! The Postgres store: one transaction per unit of work.
//!
//! Guarded operations are single conditional statements (`UPDATE … WHERE stock >= $q`,
//! `UPDATE … WHERE issued < quantity`, `UPDATE … WHERE status = $from`), never a read followed
//! by a blind write. The one read-then-decide is the wallet: the balance row is read
//! `FOR UPDATE`, the domain's wallet rule decides, and the update and the ledger entry are
//! written in the same transaction. Fencing tokens are checked on `lock_fences` with a
//! conditional upsert. A transaction dropped without commit rolls back (sqlx does it when the
//! connection goes back to the pool).
//!
//! One module per repository of the [`UnitOfWork`] port, each implementing its trait on the
//! same [`PgUnit`]. Every statement is a `sqlx::query!` family macro, checked against the schema
//! at compile time (offline, from the workspace's `.sqlx/` data, ADR 0015); rows come back as
//! `#[derive(sqlx::FromRow)]` structs that turn into domain values at this seam, never in the
//! repositories' callers. Statements name tables without a schema: the pool's `search_path`
//! picks the schema at run time (tests use one per test).

mod carts;
mod coupons;
mod orders;
mod payments;
mod products;
mod wallets;

use crate::error::{corrupt, store_error};
use crate::lock::HostedSession;
use crate::waits::Checkout;
use async_trait::async_trait;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use std::fmt;
use stockade_application::ports::idempotency::{StoredOutcome, Ticket};
use stockade_application::ports::lock::Fence;
use stockade_application::ports::store::{
    CartRepository, CouponRepository, OrderRepository, PaymentRepository, ProductRepository, Store,
    StoreError, UnitOfWork, WalletRepository,
};
use stockade_domain::{Order, OrderId, Payment};

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
        let checkout = Checkout::start("store");
        let tx = checkout
            .finish(self.pool.begin().await)
            .map_err(store_error)?;
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

/// One unit of work: every repository of the port, on one transaction.
pub(crate) struct PgUnit {
    pub(crate) tx: Tx,
}

type R<T> = Result<T, StoreError>;

fn e(err: sqlx::Error) -> StoreError {
    store_error(err)
}

/// A `usize` limit as the `bigint` a `LIMIT` takes.
fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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
        let kept: Vec<String> = sqlx::query_scalar!(
            r#"INSERT INTO lock_fences (key, token)
             SELECT * FROM unnest($1::text[], $2::bigint[])
             ON CONFLICT (key) DO UPDATE SET token = EXCLUDED.token, updated_at = statement_timestamp()
             WHERE lock_fences.token <= EXCLUDED.token
             RETURNING key AS "key!""#,
            &keys as &[&str],
            &tokens as &[i64],
        )
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
        self.order_and_payments(oid).await
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
        let done = sqlx::query!(
            "UPDATE idempotency_keys
             SET state = 'DONE', ok = $4, body = $5,
                 expires_at = statement_timestamp() + ($6 || ' milliseconds')::interval, updated_at = statement_timestamp()
             WHERE scope = $1 AND key = $2 AND owner = $3 AND state = 'IN_FLIGHT'",
            &ticket.scope.0,
            ticket.key.as_str(),
            &ticket.owner,
            outcome.ok,
            &outcome.body,
            ttl.as_millis().max(1).to_string(),
        )
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
