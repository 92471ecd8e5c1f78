//! Wallets and their ledger.

use super::{e, limit, PgUnit, R};
use crate::convert::{at, id, join_reference, money, split_reference, ts};
use crate::error::corrupt;
use async_trait::async_trait;
use stockade_application::ports::store::{LedgerChange, StoreError, WalletAudit, WalletRepository};
use stockade_domain::{LedgerEntry, LedgerKind, Money, Timestamp, TransactionId, UserId, Wallet};
use time::OffsetDateTime;

/// A row of `ledger`.
#[derive(Debug, sqlx::FromRow)]
struct LedgerRow {
    id: i64,
    user_id: i64,
    kind: String,
    amount: i64,
    balance_after: i64,
    ref_type: Option<String>,
    ref_id: Option<String>,
    created_at: OffsetDateTime,
}

impl LedgerRow {
    fn into_entry(self) -> R<LedgerEntry> {
        Ok(LedgerEntry {
            id: id(self.id, TransactionId::new)?,
            user_id: id(self.user_id, UserId::new)?,
            kind: LedgerKind::parse(&self.kind).ok_or_else(|| corrupt("ledger kind"))?,
            amount: money(self.amount),
            balance_after: money(self.balance_after),
            reference: join_reference(self.ref_type, self.ref_id),
            created_at: ts(self.created_at),
        })
    }
}

/// A wallet with its ledger's sums, as `audit` reads it.
#[derive(Debug, sqlx::FromRow)]
struct AuditRow {
    user_id: i64,
    balance: i64,
    ledger_sum: i64,
    charges: i64,
    uses: i64,
    refunds: i64,
}

#[async_trait]
impl WalletRepository for PgUnit {
    async fn balance(&mut self, user: UserId) -> R<Money> {
        let b = sqlx::query_scalar!("SELECT balance FROM wallets WHERE user_id = $1", user.get())
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
        let found = sqlx::query!(
            r#"WITH created AS (
                 INSERT INTO wallets (user_id, balance, created_at, updated_at) VALUES ($1, 0, $2, $2)
                 ON CONFLICT (user_id) DO NOTHING RETURNING balance)
             SELECT COALESCE((SELECT balance FROM created),
                             (SELECT balance FROM wallets WHERE user_id = $1 FOR UPDATE)) AS "balance?",
                    EXISTS (SELECT 1 FROM ledger WHERE ref_type = $3 AND ref_id = $4 AND kind = $5) AS "taken!""#,
            user,
            at(now),
            ref_type.as_deref(),
            ref_id.as_deref(),
            change.kind.as_str(),
        )
        .fetch_one(&mut *self.tx)
        .await
        .map_err(e)?;
        let balance = match found.balance {
            Some(b) => b,
            // A concurrent unit created the wallet after this statement's snapshot was taken:
            // lock and read it with a fresh one (waiting for that unit if it is still open).
            None => sqlx::query_scalar!(
                "SELECT balance FROM wallets WHERE user_id = $1 FOR UPDATE",
                user
            )
            .fetch_one(&mut *self.tx)
            .await
            .map_err(e)?,
        };
        if found.taken {
            return Err(StoreError::Conflict("ledger reference"));
        }
        let mut wallet = Wallet {
            user_id: change.user_id,
            balance: money(balance),
        };
        let draft = wallet.apply(change.kind, change.amount, change.reference)?;
        let row = sqlx::query_as!(
            LedgerRow,
            "WITH moved AS (UPDATE wallets SET balance = $4, updated_at = $7 WHERE user_id = $1)
             INSERT INTO ledger (user_id, kind, amount, balance_after, ref_type, ref_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
             RETURNING id, user_id, kind, amount, balance_after, ref_type, ref_id, created_at",
            user,
            draft.kind.as_str(),
            draft.amount.won(),
            draft.balance_after.won(),
            ref_type,
            ref_id,
            at(now),
        )
        .fetch_one(&mut *self.tx)
        .await
        .map_err(e)?;
        row.into_entry()
    }

    async fn entries(&mut self, user: UserId) -> R<Vec<LedgerEntry>> {
        sqlx::query_as!(
            LedgerRow,
            "SELECT id, user_id, kind, amount, balance_after, ref_type, ref_id, created_at
             FROM ledger WHERE user_id = $1 ORDER BY id",
            user.get(),
        )
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?
        .into_iter()
        .map(LedgerRow::into_entry)
        .collect()
    }

    async fn entries_page(
        &mut self,
        user: UserId,
        before: Option<TransactionId>,
        max: usize,
    ) -> R<Vec<LedgerEntry>> {
        sqlx::query_as!(
            LedgerRow,
            "SELECT id, user_id, kind, amount, balance_after, ref_type, ref_id, created_at
             FROM ledger WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
            user.get(),
            before.map_or(i64::MAX, TransactionId::get),
            limit(max),
        )
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?
        .into_iter()
        .map(LedgerRow::into_entry)
        .collect()
    }

    async fn find_entry(&mut self, reference: &str, kind: LedgerKind) -> R<Option<LedgerEntry>> {
        let (t, i) = split_reference(reference);
        sqlx::query_as!(
            LedgerRow,
            "SELECT id, user_id, kind, amount, balance_after, ref_type, ref_id, created_at
             FROM ledger WHERE ref_type = $1 AND ref_id = $2 AND kind = $3",
            t,
            i,
            kind.as_str(),
        )
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(e)?
        .map(LedgerRow::into_entry)
        .transpose()
    }

    async fn audit(&mut self) -> R<Vec<WalletAudit>> {
        let rows = sqlx::query_as!(
            AuditRow,
            r#"SELECT w.user_id, w.balance,
                    COALESCE(SUM(CASE l.kind WHEN 'USE' THEN -l.amount ELSE l.amount END), 0)::BIGINT AS "ledger_sum!",
                    COALESCE(SUM(l.amount) FILTER (WHERE l.kind = 'CHARGE'), 0)::BIGINT AS "charges!",
                    COALESCE(SUM(l.amount) FILTER (WHERE l.kind = 'USE'), 0)::BIGINT AS "uses!",
                    COALESCE(SUM(l.amount) FILTER (WHERE l.kind = 'REFUND'), 0)::BIGINT AS "refunds!"
             FROM wallets w LEFT JOIN ledger l ON l.user_id = w.user_id
             GROUP BY w.user_id, w.balance ORDER BY w.user_id"#,
        )
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?;
        rows.into_iter()
            .map(|r| {
                Ok(WalletAudit {
                    user_id: id(r.user_id, UserId::new)?,
                    balance: r.balance,
                    ledger_sum: r.ledger_sum,
                    charges: r.charges,
                    uses: r.uses,
                    refunds: r.refunds,
                })
            })
            .collect()
    }
}
