//! The Postgres backend: the store (with its change feed), advisory locks, idempotency, and the
//! write path that ties them together in one transaction.

use crate::metered::MeteredSections;
use crate::wiring::{
    GateBackend, IdempotencyBackend, LockBackend, PgSettings, StoreBackend, Wiring,
};
use crate::StartError;
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::clock::IdGenerator;
use stockade_application::ports::lock::LockManager;
use stockade_application::ports::section::Sections;
use stockade_application::Ports;
use stockade_postgres::{
    PgChangeFeed, PgConfig, PgIdempotencyStore, PgLockManager, PgSections, PgStore,
};

/// The Postgres adapters the wiring asked for, over one migrated database.
#[derive(Debug)]
pub struct PostgresPorts {
    /// The store's pool (also the idempotency store's when the store is elsewhere).
    pub pool: sqlx::PgPool,
    pub store: Option<(PgStore, PgChangeFeed)>,
    pub locks: Option<PgLockManager>,
    pub idempotency: Option<PgIdempotencyStore>,
    /// Accounts follow the store: on the database whenever the store is.
    pub accounts: Option<stockade_postgres::PgAccounts>,
    /// Every pool opened, named for the pool gauges (`store`, `locks`, `claims`).
    pub pools: Vec<(&'static str, sqlx::PgPool)>,
}

/// Connects, applies the migrations, and builds the adapters of the ports `wiring` puts on
/// Postgres; `ids` names idempotency claims.
///
/// # Errors
/// [`StartError::Postgres`] when the database cannot be reached or migrated.
pub async fn build(
    settings: &PgSettings,
    wiring: &Wiring,
    ids: Arc<dyn IdGenerator>,
) -> Result<PostgresPorts, StartError> {
    let config = PgConfig {
        schema: settings.schema.clone(),
        max_connections: settings.max_connections.max(1),
        // Short: during an outage a request answers 503 after this wait instead of holding
        // its caller (docs/decisions/0020).
        acquire_timeout: settings.acquire_timeout,
        ..PgConfig::new(settings.url.expose_secret())
    };
    let pool = stockade_postgres::connect(&config).await?;
    stockade_postgres::migrate(&pool).await?;
    let mut pools = vec![("store", pool.clone())];
    let mut locks = None;
    if wiring.lock == LockBackend::PostgresAdvisory {
        let lock_pool = stockade_postgres::connect(&PgConfig {
            max_connections: settings.lock_max_connections.max(1),
            // The lock's own wait bounds a checkout (see PgLockManager).
            acquire_timeout: Duration::from_secs(3_600),
            ..config.clone()
        })
        .await?;
        let namespace = match &settings.schema {
            Some(schema) => format!("{}/{schema}", settings.lock_namespace),
            None => settings.lock_namespace.clone(),
        };
        pools.push(("locks", lock_pool.clone()));
        locks = Some(PgLockManager::new(lock_pool, namespace));
    }
    let store = (wiring.store == StoreBackend::Postgres).then(|| {
        // Every instance shares the database: restocks are told to all through it.
        let changes = PgChangeFeed::start(pool.clone());
        (PgStore::new(pool.clone()), changes)
    });
    let mut idempotency = None;
    if wiring.idempotency == IdempotencyBackend::Postgres {
        // With the store on the same database, successful outcomes commit inside the business
        // transactions; claims then need no synchronous flush of their own.
        idempotency = Some(if store.is_some() {
            let claims = stockade_postgres::connect(&PgConfig {
                max_connections: (settings.max_connections / 2).max(2),
                synchronous_commit: false,
                ..config.clone()
            })
            .await?;
            pools.push(("claims", claims.clone()));
            PgIdempotencyStore::on_own_pool(claims, ids)
        } else {
            PgIdempotencyStore::new(pool.clone(), ids)
        });
    }
    if wiring.gate == GateBackend::Memory && store.is_some() {
        tracing::warn!("FLASH coupons use the in-process gate: run one instance, or --gate redis, for exact FLASH issuance across instances");
    }
    // Accounts follow the store.
    let accounts = store
        .is_some()
        .then(|| stockade_postgres::PgAccounts::new(pool.clone()));
    Ok(PostgresPorts {
        accounts,
        pool,
        store,
        locks,
        idempotency,
        pools,
    })
}

impl PostgresPorts {
    /// Puts these adapters in place of the memory ones.
    pub fn install(&self, ports: &mut Ports) {
        if let Some((store, changes)) = &self.store {
            ports.changes = Arc::new(changes.clone());
            ports.store = Arc::new(store.clone());
        }
        if let Some(locks) = &self.locks {
            ports.locks = Arc::new(locks.clone());
        }
        if let Some(idempotency) = &self.idempotency {
            ports.idempotency = Arc::new(idempotency.clone());
        }
        if let Some(accounts) = &self.accounts {
            ports.accounts = Arc::new(accounts.clone());
        }
    }

    /// The write path on the database, when the store is there: on the sessions that hold the
    /// advisory locks, or fenced under `locks` (the ports' final, metered lock manager) when
    /// another backend grants them. With idempotency on the same database, outcomes commit
    /// with the writes they describe.
    pub fn sections(
        &self,
        wiring: &Wiring,
        locks: Arc<dyn LockManager>,
    ) -> Option<Arc<dyn Sections>> {
        let (store, _) = self.store.as_ref()?;
        let recording = |sections: PgSections| {
            if wiring.idempotency == IdempotencyBackend::Postgres {
                sections.recording_outcomes()
            } else {
                sections
            }
        };
        Some(match &self.locks {
            // Their waits happen inside the sections, so the sections publish them.
            Some(own) => Arc::new(MeteredSections {
                inner: Arc::new(recording(PgSections::on_lock_sessions(
                    store.clone(),
                    own.clone(),
                ))),
                backend: wiring.lock.label(),
            }),
            None => Arc::new(recording(PgSections::fenced(store.clone(), locks))),
        })
    }
}

/// `stockade migrate`: applies the migrations to the database at `url`.
///
/// # Errors
/// [`StartError::Postgres`].
pub async fn migrate(
    url: &secrecy::SecretString,
    schema: Option<String>,
) -> Result<(), StartError> {
    let pool = stockade_postgres::connect(&PgConfig {
        schema,
        max_connections: 1,
        ..PgConfig::new(url.expose_secret())
    })
    .await?;
    stockade_postgres::migrate(&pool).await?;
    pool.close().await;
    Ok(())
}
