//! # stockade-postgres
//!
//! PostgreSQL adapters (sqlx): the store with its unit of work on transactions
//! ([`PgStore`]), an advisory-lock [`PgLockManager`] with fencing tokens from a sequence, and
//! the [`PgIdempotencyStore`]. The crate owns its migrations ([`MIGRATOR`]), embedded in the
//! binary and run by `stockade migrate` and at start.

mod accounts;
mod batch;
mod changes;
mod convert;
mod error;
mod idempotency;
mod lock;
mod section;
mod sessions;
mod store;
mod waits;

pub use accounts::PgAccounts;
pub use changes::PgChangeFeed;
pub use idempotency::PgIdempotencyStore;
pub use lock::{lock_id, PgLockManager};
pub use section::PgSections;
pub use store::PgStore;
pub use waits::describe as describe_metrics;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgPool};
use std::str::FromStr;
use std::time::Duration;

/// The schema's migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How to connect.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// The connection URL; it can carry a password, so it is kept as a secret (`Debug` shows
    /// it redacted) and read only where the connection options are parsed.
    pub url: SecretString,
    /// A schema to use instead of `public` (tests use one per test).
    pub schema: Option<String>,
    pub max_connections: u32,
    /// How long a checkout may wait for a free connection.
    pub acquire_timeout: Duration,
    /// Shown in `pg_stat_activity.application_name`.
    pub application_name: String,
    /// Whether commits on these connections wait for the WAL flush. Turn it off only for
    /// writes whose loss in a server crash is harmless (see `PgIdempotencyStore`).
    pub synchronous_commit: bool,
}

impl PgConfig {
    pub fn new(url: impl Into<String>) -> Self {
        PgConfig {
            url: SecretString::from(url.into()),
            schema: None,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            application_name: "stockade".to_owned(),
            synchronous_commit: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PgSetupError {
    #[error("the database URL is not valid: {0}")]
    Url(#[source] sqlx::Error),
    #[error("could not connect to Postgres: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migrations failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("could not create the database: {0}")]
    Create(#[source] sqlx::Error),
}

/// Creates the database `url` names unless it exists (the URL's user needs `CREATEDB`).
/// Answers whether it was created.
///
/// # Errors
/// [`PgSetupError::Create`] when the server refuses or cannot be reached.
pub async fn create_database(url: &str) -> Result<bool, PgSetupError> {
    use sqlx::migrate::MigrateDatabase;
    if sqlx::Postgres::database_exists(url)
        .await
        .map_err(PgSetupError::Create)?
    {
        return Ok(false);
    }
    match sqlx::Postgres::create_database(url).await {
        Ok(()) => Ok(true),
        // Another process created it in between.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => Ok(false),
        Err(e) => Err(PgSetupError::Create(e)),
    }
}

/// A pooled connection idle for this long is pinged before it is handed out.
const IDLE_CHECK: Duration = Duration::from_secs(1);

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A pool whose connections use `config.schema` (when set), run their transactions at READ
/// COMMITTED whatever the server's default (the adapters rely on each statement seeing what
/// committed before it; a lock grant may open its first unit's transaction before the lock is
/// granted, ADR 0009), and give up waiting for a client that went away
/// (`client_connection_check_interval`).
///
/// # Errors
/// [`PgSetupError`] when the URL is bad or the server does not answer.
pub async fn connect(config: &PgConfig) -> Result<PgPool, PgSetupError> {
    let options = PgConnectOptions::from_str(config.url.expose_secret())
        .map_err(PgSetupError::Url)?
        .application_name(&config.application_name);
    let schema = config.schema.clone();
    let synchronous = config.synchronous_commit;
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        // sqlx already pings every connection given back to the pool (which also flushes a
        // dropped transaction's rollback); pinging again at every checkout would add a round
        // trip to each unit of work, so only a connection idle for a while is checked.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= IDLE_CHECK {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .after_connect(move |conn, _meta| {
            let schema = schema.clone();
            Box::pin(async move {
                conn.execute(
                    "SET client_connection_check_interval = '250ms';
                     SET default_transaction_isolation = 'read committed'",
                )
                .await?;
                if !synchronous {
                    conn.execute("SET synchronous_commit = off").await?;
                }
                if let Some(schema) = schema {
                    // `SET search_path` takes no parameter; `set_config` does the same with
                    // the quoted name bound.
                    sqlx::query!(
                        "SELECT set_config('search_path', $1, false)",
                        quote_ident(&schema),
                    )
                    .fetch_one(&mut *conn)
                    .await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(PgSetupError::Connect)
}

/// Applies every pending migration.
///
/// # Errors
/// [`PgSetupError::Migrate`].
pub async fn migrate(pool: &PgPool) -> Result<(), PgSetupError> {
    MIGRATOR.run(pool).await.map_err(PgSetupError::Migrate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_url() {
        let config = PgConfig::new("postgres://shop:hunter2-pg@db.internal:5432/shop");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2-pg"), "{shown}");
        assert!(!shown.contains("db.internal"), "{shown}");
        assert_eq!(
            config.url.expose_secret(),
            "postgres://shop:hunter2-pg@db.internal:5432/shop"
        );
    }
}
