//! Postgres for tests: each test gets its own schema in the `stockade_test` database, migrated,
//! and dropped at the end. `DATABASE_URL` names the server (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); the database is created on first use.

use sqlx::{Connection, Executor, PgConnection, PgPool};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use stockade_application::ports::clock::IdGenerator;
use stockade_postgres::{connect, migrate, PgConfig, PgIdempotencyStore, PgLockManager, PgStore};

const DATABASE: &str = "stockade_test";

/// The server's URL with the database replaced by `db`.
pub fn url_for(db: &str) -> String {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h.to_owned(), format!("?{q}")),
        None => (base.clone(), String::new()),
    };
    let cut = head
        .rfind('/')
        .filter(|i| head[..*i].ends_with(|c: char| c != '/'));
    match cut {
        Some(i) if head[..i].contains("//") => format!("{}/{db}{query}", &head[..i]),
        _ => format!("{head}/{db}{query}"),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Creates the test database if it is missing, and drops test schemas over an hour old (left by
/// runs that were killed).
async fn prepare() {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let mut admin = PgConnection::connect(&url_for("postgres"))
            .await
            .expect("Postgres answers (DATABASE_URL)");
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(DATABASE)
                .fetch_optional(&mut admin)
                .await
                .unwrap();
        if exists.is_none() {
            // Another test binary may be creating it at the same moment.
            let _ = admin
                .execute(format!("CREATE DATABASE {DATABASE}").as_str())
                .await;
        }
        let mut db = PgConnection::connect(&url_for(DATABASE)).await.unwrap();
        let old: Vec<String> =
            sqlx::query_scalar("SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\\_%'")
                .fetch_all(&mut db)
                .await
                .unwrap();
        let cutoff = now_secs().saturating_sub(3_600);
        for schema in old {
            let secs = schema
                .split('_')
                .nth(1)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            if secs < cutoff {
                let _ = db
                    .execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str())
                    .await;
            }
        }
    })
    .await;
}

/// A migrated schema of its own. Call [`TestDb::drop_schema`] at the end of the test.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub schema: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    pub async fn new() -> TestDb {
        prepare().await;
        static N: AtomicU64 = AtomicU64::new(0);
        let schema = format!(
            "t_{}_{}_{}",
            now_secs(),
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let url = url_for(DATABASE);
        let mut conn = PgConnection::connect(&url).await.unwrap();
        conn.execute(format!("CREATE SCHEMA \"{schema}\"").as_str())
            .await
            .unwrap();
        let pool = connect(&PgConfig {
            schema: Some(schema.clone()),
            max_connections: 10,
            application_name: schema.clone(),
            ..PgConfig::new(url.clone())
        })
        .await
        .unwrap();
        migrate(&pool).await.unwrap();
        TestDb { schema, url, pool }
    }

    /// A second pool on the same schema (for locks, which hold a connection per grant).
    pub async fn pool(&self, max: u32) -> PgPool {
        connect(&PgConfig {
            schema: Some(self.schema.clone()),
            max_connections: max,
            application_name: self.schema.clone(),
            ..PgConfig::new(self.url.clone())
        })
        .await
        .unwrap()
    }

    pub fn store(&self) -> PgStore {
        PgStore::new(self.pool.clone())
    }

    pub async fn locks(&self) -> PgLockManager {
        let pool = connect(&PgConfig {
            schema: Some(self.schema.clone()),
            max_connections: 20,
            acquire_timeout: std::time::Duration::from_secs(3_600),
            application_name: format!("{}-locks", self.schema),
            ..PgConfig::new(self.url.clone())
        })
        .await
        .unwrap();
        PgLockManager::new(pool, self.schema.clone())
    }

    pub fn idempotency(&self, ids: Arc<dyn IdGenerator>) -> PgIdempotencyStore {
        PgIdempotencyStore::new(self.pool.clone(), ids)
    }

    pub async fn drop_schema(&self) {
        self.pool.close().await;
        let mut conn = PgConnection::connect(&self.url).await.unwrap();
        let _ = conn
            .execute(format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema).as_str())
            .await;
    }
}
