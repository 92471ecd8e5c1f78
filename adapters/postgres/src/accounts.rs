//! The Postgres [`AccountStore`]: accounts in `accounts` (a unique index on the email, ids
//! from the `account_ids` sequence) and failed sign-ins in `login_failures`, shared by every
//! instance on the database.

use crate::convert::{at, ts};
use crate::error::backend;
use async_trait::async_trait;
use sqlx::PgPool;
use stockade_application::ports::accounts::{Account, AccountError, AccountStore, NewAccount};
use stockade_domain::{Email, Timestamp, UserId};

#[derive(Debug, Clone)]
pub struct PgAccounts {
    pool: PgPool,
}

impl PgAccounts {
    pub fn new(pool: PgPool) -> Self {
        PgAccounts { pool }
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    user_id: i64,
    email: String,
    name: String,
    password_hash: String,
}

fn err(e: sqlx::Error) -> AccountError {
    if let sqlx::Error::Database(db) = &e {
        if db.constraint() == Some("accounts_email_unique") {
            return AccountError::EmailTaken;
        }
    }
    AccountError::Unavailable(backend(e))
}

fn account(row: Row) -> Result<Account, AccountError> {
    let corrupt =
        |what: &str| AccountError::Unavailable(backend(format!("unexpected data: {what}")));
    Ok(Account {
        id: UserId::new(row.user_id).map_err(|_| corrupt("account id"))?,
        email: Email::parse(&row.email).map_err(|_| corrupt("account email"))?,
        name: row.name,
        password_hash: row.password_hash,
    })
}

#[async_trait]
impl AccountStore for PgAccounts {
    async fn create(&self, new: NewAccount) -> Result<Account, AccountError> {
        let row = sqlx::query_as!(
            Row,
            "INSERT INTO accounts (email, name, password_hash) VALUES ($1, $2, $3)
             RETURNING user_id, email, name, password_hash",
            new.email.as_str(),
            new.name,
            new.password_hash,
        )
        .fetch_one(&self.pool)
        .await
        .map_err(err)?;
        account(row)
    }

    async fn by_email(&self, email: &Email) -> Result<Option<Account>, AccountError> {
        let row = sqlx::query_as!(
            Row,
            "SELECT user_id, email, name, password_hash FROM accounts WHERE email = $1",
            email.as_str(),
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.map(account).transpose()
    }

    async fn by_id(&self, id: UserId) -> Result<Option<Account>, AccountError> {
        let row = sqlx::query_as!(
            Row,
            "SELECT user_id, email, name, password_hash FROM accounts WHERE user_id = $1",
            id.get(),
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.map(account).transpose()
    }

    async fn record_failure(
        &self,
        email: &Email,
        when: Timestamp,
        forget_before: Timestamp,
    ) -> Result<(), AccountError> {
        // One statement: the email's stale rows go as the new one arrives.
        sqlx::query!(
            "WITH gone AS (DELETE FROM login_failures WHERE email = $1 AND failed_at < $3)
             INSERT INTO login_failures (email, failed_at) VALUES ($1, $2)",
            email.as_str(),
            at(when),
            at(forget_before),
        )
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn failures(
        &self,
        email: &Email,
        since: Timestamp,
    ) -> Result<Vec<Timestamp>, AccountError> {
        let times = sqlx::query_scalar!(
            "SELECT failed_at FROM login_failures WHERE email = $1 AND failed_at >= $2
             ORDER BY failed_at",
            email.as_str(),
            at(since),
        )
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        Ok(times.into_iter().map(ts).collect())
    }

    async fn clear_failures(&self, email: &Email) -> Result<(), AccountError> {
        sqlx::query!(
            "DELETE FROM login_failures WHERE email = $1",
            email.as_str()
        )
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }
}
