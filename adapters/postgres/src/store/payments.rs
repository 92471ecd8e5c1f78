//! Payments and the payment saga's log.

use super::{e, limit, PgUnit, R};
use crate::convert::{at, id, money, ts};
use crate::error::corrupt;
use async_trait::async_trait;
use stockade_application::ports::store::{PaymentRepository, SagaStep};
use stockade_domain::{
    Money, Order, OrderId, Payment, PaymentId, PaymentStatus, Timestamp, UserId,
};
use time::OffsetDateTime;

/// A row of `payments`.
#[derive(Debug, sqlx::FromRow)]
struct PaymentRow {
    id: i64,
    order_id: i64,
    user_id: i64,
    amount: i64,
    status: String,
    idempotency_ref: Option<String>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl PaymentRow {
    fn into_payment(self) -> R<Payment> {
        Ok(Payment {
            id: id(self.id, PaymentId::new)?,
            order_id: id(self.order_id, OrderId::new)?,
            user_id: id(self.user_id, UserId::new)?,
            amount: money(self.amount),
            status: PaymentStatus::parse(&self.status).ok_or_else(|| corrupt("payment status"))?,
            reference: self.idempotency_ref,
            created_at: ts(self.created_at),
            updated_at: ts(self.updated_at),
        })
    }
}

/// A PENDING payment (order `$1`, user `$2`, amount `$3`, at `$4`, reference `$5`) between the
/// fixed fragments `$before` and `$after`, which make the statement answer the payment's row.
macro_rules! insert_payment {
    ($before:tt, $after:tt, $order:expr, $amount:expr, $reference:expr, $now:expr) => {
        sqlx::query_as!(
            PaymentRow,
            $before
                + "INSERT INTO payments
                       (order_id, user_id, amount, status, idempotency_ref, created_at, updated_at)
                   VALUES ($1, $2, $3, 'PENDING', $5, $4, $4)"
                + $after,
            $order.id.get(),
            $order.user_id.get(),
            $amount.won(),
            at($now),
            $reference,
        )
    };
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
        insert_payment!(
            "",
            " RETURNING id, order_id, user_id, amount, status, idempotency_ref, created_at, updated_at",
            order,
            amount,
            reference,
            now
        )
        .fetch_one(&mut *self.tx)
        .await
        .map_err(e)?
        .into_payment()
    }

    async fn insert_debited(
        &mut self,
        order: &Order,
        amount: Money,
        reference: Option<&str>,
        now: Timestamp,
    ) -> R<Payment> {
        insert_payment!(
            "WITH p AS (",
            r#" RETURNING id, order_id, user_id, amount, status, idempotency_ref, created_at, updated_at),
             s AS (
                 INSERT INTO saga_log (payment_id, order_id, step, created_at, updated_at)
                 SELECT id, order_id, 'DEBITED', $4, $4 FROM p)
             SELECT id AS "id!", order_id AS "order_id!", user_id AS "user_id!", amount AS "amount!",
                    status AS "status!", idempotency_ref AS "idempotency_ref?",
                    created_at AS "created_at!", updated_at AS "updated_at!"
             FROM p"#,
            order,
            amount,
            reference,
            now
        )
        .fetch_one(&mut *self.tx)
        .await
        .map_err(e)?
        .into_payment()
    }

    async fn for_order(&mut self, oid: OrderId) -> R<Vec<Payment>> {
        sqlx::query_as!(
            PaymentRow,
            "SELECT id, order_id, user_id, amount, status, idempotency_ref, created_at, updated_at
             FROM payments WHERE order_id = $1 ORDER BY id",
            oid.get(),
        )
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?
        .into_iter()
        .map(PaymentRow::into_payment)
        .collect()
    }

    async fn update_status(
        &mut self,
        pid: PaymentId,
        from: PaymentStatus,
        to: PaymentStatus,
        now: Timestamp,
    ) -> R<bool> {
        let done = sqlx::query!(
            "UPDATE payments SET status = $3, updated_at = $4 WHERE id = $1 AND status = $2",
            pid.get(),
            from.as_str(),
            to.as_str(),
            at(now),
        )
        .execute(&mut *self.tx)
        .await
        .map_err(e)?;
        Ok(done.rows_affected() == 1)
    }

    async fn confirm(&mut self, p: &Payment, now: Timestamp) -> R<bool> {
        // Both rows must be in their expected state, or nothing changes.
        let done = sqlx::query_scalar!(
            r#"WITH ok AS (
                 SELECT EXISTS (SELECT 1 FROM payments WHERE id = $1 AND status = 'PENDING' FOR UPDATE)
                    AND EXISTS (SELECT 1 FROM orders WHERE id = $2 AND status = 'PENDING_PAYMENT' FOR UPDATE) AS yes),
             p AS (UPDATE payments SET status = 'APPROVED', updated_at = $3
                   WHERE id = $1 AND status = 'PENDING' AND (SELECT yes FROM ok) RETURNING id),
             o AS (UPDATE orders SET status = 'PAID', updated_at = $3
                   WHERE id = $2 AND status = 'PENDING_PAYMENT' AND (SELECT yes FROM ok) RETURNING id),
             s AS (INSERT INTO saga_log (payment_id, order_id, step, created_at, updated_at)
                   SELECT $1, $2, 'CONFIRMED', $3, $3 WHERE (SELECT yes FROM ok)
                   ON CONFLICT (payment_id) DO UPDATE SET step = 'CONFIRMED', updated_at = EXCLUDED.updated_at)
             SELECT (SELECT yes FROM ok) AS "yes!""#,
            p.id.get(),
            p.order_id.get(),
            at(now),
        )
        .fetch_one(&mut *self.tx)
        .await
        .map_err(e)?;
        Ok(done)
    }

    async fn log_saga_step(&mut self, p: &Payment, step: SagaStep, now: Timestamp) -> R<()> {
        sqlx::query!(
            "INSERT INTO saga_log (payment_id, order_id, step, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (payment_id) DO UPDATE SET step = EXCLUDED.step, updated_at = EXCLUDED.updated_at",
            p.id.get(),
            p.order_id.get(),
            step.as_str(),
            at(now),
        )
        .execute(&mut *self.tx)
        .await
        .map_err(e)?;
        Ok(())
    }

    async fn open_sagas(&mut self, before: Timestamp, max: usize) -> R<Vec<(OrderId, UserId)>> {
        sqlx::query!(
            "SELECT s.order_id, p.user_id FROM saga_log s JOIN payments p ON p.id = s.payment_id
             WHERE s.step = 'DEBITED' AND s.created_at < $1
             ORDER BY s.created_at LIMIT $2",
            at(before),
            limit(max),
        )
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?
        .into_iter()
        .map(|r| Ok((id(r.order_id, OrderId::new)?, id(r.user_id, UserId::new)?)))
        .collect()
    }
}
