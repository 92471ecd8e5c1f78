//! # stockade (bootstrap)
//!
//! The only crate that knows every adapter: it reads configuration, builds the chosen adapters
//! into a [`Ports`] bundle, seeds the demo data when asked, starts the background workers and
//! serves the HTTP API. [`Service::build`] is also what the end-to-end tests start.

pub mod config;
mod metered;
pub mod seed;
pub mod telemetry;
pub mod workers;

use async_trait::async_trait;
use config::{Backend, PlatformModeArg, Profile, ServeArgs, DEMO_JWT_SECRET};
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::clock::Clock;
use stockade_application::{AppError, Ports, Settings, Stockade};
use stockade_http::{AppState, JwtSecret, Reset};
use stockade_memory::{MemoryBackend, PlatformMode, SystemClock};
use stockade_postgres::{PgConfig, PgIdempotencyStore, PgLockManager, PgSections, PgStore};
use stockade_redis::{
    RedisCouponGate, RedisIdempotencyStore, RedisIssuanceQueue, RedisLockManager,
    RedisPopularityCache, RedisSalesCounter,
};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "the {port} adapter `{backend}` is not available in this build (available: {available})"
    )]
    Unavailable {
        port: &'static str,
        backend: Backend,
        available: &'static str,
    },
    #[error("the production profile needs --jwt-secret (or STOCKADE_JWT_SECRET)")]
    MissingSecret,
    #[error("could not seed the demo data: {0}")]
    Seed(#[source] AppError),
    #[error("Postgres: {0}")]
    Postgres(#[from] stockade_postgres::PgSetupError),
    #[error("Redis: {0}")]
    Redis(#[from] stockade_redis::RedisSetupError),
    #[error("could not listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A built service: the application, its HTTP state, and the adapters it runs on.
#[derive(Debug, Clone)]
pub struct Service {
    pub app: Stockade,
    pub state: AppState,
    /// The memory adapters (those of the ports configured as `memory` are the ones in use).
    pub memory: MemoryBackend,
    /// The Postgres store's pool, when a port runs on Postgres.
    pub postgres: Option<sqlx::PgPool>,
    pub intervals: workers::Intervals,
}

/// Puts the demo data back: empties every memory adapter and seeds again.
#[derive(Debug)]
struct DemoReset {
    app: Stockade,
    memory: MemoryBackend,
}

#[async_trait]
impl Reset for DemoReset {
    async fn reset(&self) -> Result<(), AppError> {
        self.memory.store.reset().await;
        self.memory.gate.wipe();
        self.memory.queue.clear();
        self.memory.idempotency.clear();
        self.memory.popularity.clear_now();
        self.app.forget_cached_policies();
        seed::demo(&self.app).await
    }
}

fn settings(args: &ServeArgs) -> Settings {
    Settings {
        lock_wait: Duration::from_millis(args.lock_wait_ms),
        lock_lease: Duration::from_millis(args.lock_lease_ms),
        order_ttl: Duration::from_secs(args.order_ttl_secs),
        idempotency_ttl: Duration::from_secs(args.idempotency_ttl_secs),
        idempotency_lease: Duration::from_secs(args.idempotency_lease_secs),
        popularity_ttl: Duration::from_secs(args.popularity_ttl_secs),
        platform_timeout: Duration::from_millis(args.platform_timeout_ms),
        issuance_max_attempts: args.issuance_max_attempts.max(1),
        ..Settings::default()
    }
}

/// Which backends each port can run on in this build.
fn check_available(args: &ServeArgs) -> Result<(), StartError> {
    for (port, backend) in args.choices() {
        let available: &'static str = match port {
            "store" => "memory, postgres",
            "lock" | "idempotency" => "memory, postgres, redis",
            "gate" | "queue" | "popularity" => "memory, redis",
            _ => "memory",
        };
        let ok = available.contains(&backend.to_string());
        if !ok {
            return Err(StartError::Unavailable {
                port,
                backend,
                available,
            });
        }
    }
    Ok(())
}

impl Service {
    /// Builds the adapters `args` choose, the application and its HTTP state; applies
    /// migrations when a port runs on Postgres; seeds the demo data in the demo profile (into
    /// an empty store only).
    ///
    /// # Errors
    /// [`StartError`] naming what is missing.
    pub async fn build(args: &ServeArgs) -> Result<Service, StartError> {
        check_available(args)?;
        let jwt = match (&args.jwt_secret, args.profile) {
            (Some(secret), _) => JwtSecret::new(secret.0.clone()),
            (None, Profile::Demo) => {
                tracing::warn!(
                    "no --jwt-secret given: using the public demo secret (demo profile only)"
                );
                JwtSecret::new(DEMO_JWT_SECRET)
            }
            (None, Profile::Production) => return Err(StartError::MissingSecret),
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let memory = MemoryBackend::new(clock);
        memory.platform.set_mode(match args.platform_mode {
            PlatformModeArg::Accept => PlatformMode::Accept,
            PlatformModeArg::Fail => PlatformMode::Fail,
            PlatformModeArg::Hang => PlatformMode::Hang,
        });
        let mut ports = memory.ports();
        let choices: std::collections::HashMap<_, _> = args.choices().into_iter().collect();
        let uses_postgres = choices.values().any(|b| *b == Backend::Postgres);
        let mut postgres = None;
        let mut pg_locks = None;
        let mut pg_store = None;
        let mut lock_backend = "memory";
        if uses_postgres {
            let config = PgConfig {
                schema: args.database_schema.clone(),
                max_connections: args.db_max_connections.max(1),
                ..PgConfig::new(args.database_url.clone())
            };
            let pool = stockade_postgres::connect(&config).await?;
            stockade_postgres::migrate(&pool).await?;
            if choices["lock"] == Backend::Postgres {
                let lock_pool = stockade_postgres::connect(&PgConfig {
                    max_connections: args.lock_max_connections.max(1),
                    // The lock's own wait bounds a checkout (see PgLockManager).
                    acquire_timeout: Duration::from_secs(3_600),
                    ..config.clone()
                })
                .await?;
                let namespace = match &args.database_schema {
                    Some(schema) => format!("{}/{schema}", args.lock_namespace),
                    None => args.lock_namespace.clone(),
                };
                pg_locks = Some(PgLockManager::new(lock_pool, namespace));
            }
            if choices["store"] == Backend::Postgres {
                // Every instance shares the database: restocks are told to all through it.
                ports.changes = Arc::new(stockade_postgres::PgChangeFeed::start(pool.clone()));
                pg_store = Some(PgStore::new(pool.clone()));
                ports.store = Arc::new(PgStore::new(pool.clone()));
            }
            if let Some(locks) = &pg_locks {
                ports.locks = Arc::new(locks.clone());
                lock_backend = "postgres";
            }
            if choices["idempotency"] == Backend::Postgres {
                // With the store on the same database, successful outcomes commit inside the
                // business transactions; claims then need no synchronous flush of their own.
                ports.idempotency = Arc::new(if choices["store"] == Backend::Postgres {
                    let claims = stockade_postgres::connect(&PgConfig {
                        max_connections: (args.db_max_connections / 2).max(2),
                        synchronous_commit: false,
                        ..config.clone()
                    })
                    .await?;
                    PgIdempotencyStore::on_own_pool(claims, ports.ids.clone())
                } else {
                    PgIdempotencyStore::new(pool.clone(), ports.ids.clone())
                });
            }
            if choices["gate"] == Backend::Memory && choices["store"] == Backend::Postgres {
                tracing::warn!("FLASH coupons use the in-process gate: run one instance, or --gate redis, for exact FLASH issuance across instances");
            }
            postgres = Some(pool);
        }
        if choices["lock"] == Backend::Redis {
            ports.locks = Arc::new(
                RedisLockManager::connect(&args.redis_urls, args.lock_namespace.clone(), true)
                    .await?,
            );
            lock_backend = "redis";
        }
        if choices["idempotency"] == Backend::Redis {
            let url = args.redis_urls.first().cloned().unwrap_or_default();
            ports.idempotency = Arc::new(
                RedisIdempotencyStore::connect(
                    &url,
                    args.lock_namespace.clone(),
                    ports.ids.clone(),
                )
                .await?,
            );
        }
        if choices["popularity"] == Backend::Redis {
            let url = args.redis_urls.first().cloned().unwrap_or_default();
            ports.sales = Some(Arc::new(
                RedisSalesCounter::connect(&url, args.lock_namespace.clone()).await?,
            ));
            ports.popularity =
                Arc::new(RedisPopularityCache::connect(&url, args.lock_namespace.clone()).await?);
        }
        let first_redis = args.redis_urls.first().cloned().unwrap_or_default();
        if choices["gate"] == Backend::Redis {
            ports.gate = Arc::new(
                RedisCouponGate::connect(&first_redis, args.lock_namespace.clone()).await?,
            );
        }
        if choices["queue"] == Backend::Redis {
            // Unique per process: a restarted instance is a new consumer, and what the old one
            // left pending is taken over after the visibility time.
            let consumer = format!("{}-{}", std::process::id(), ports.ids.unique());
            ports.queue = Arc::new(
                RedisIssuanceQueue::connect(
                    &first_redis,
                    &args.lock_namespace,
                    consumer,
                    Duration::from_secs(args.issuance_visibility_secs.max(1)),
                )
                .await?,
            );
        }
        if args.profile == Profile::Production {
            let in_memory: Vec<&str> = [
                "store",
                "lock",
                "idempotency",
                "gate",
                "queue",
                "popularity",
            ]
            .into_iter()
            .filter(|p| choices[p] == Backend::Memory)
            .collect();
            if !in_memory.is_empty() {
                tracing::warn!(
                    parts = %in_memory.join(", "),
                    "production profile: these parts run in this process's memory"
                );
            }
        }
        let mut ports = metered_ports(ports, lock_backend);
        if let Some(store) = pg_store {
            // Writes run on the database: on the sessions holding their advisory locks, or
            // fenced under the other lock backend's grants.
            let (sections, on_sessions) = match pg_locks {
                Some(locks) => (PgSections::on_lock_sessions(store, locks), true),
                None => (PgSections::fenced(store, ports.locks.clone()), false),
            };
            // Both on the same database: outcomes commit with the writes they describe.
            let sections = if choices["idempotency"] == Backend::Postgres {
                sections.recording_outcomes()
            } else {
                sections
            };
            ports.sections = Some(if on_sessions {
                Arc::new(metered::MeteredSections {
                    inner: Arc::new(sections),
                    backend: lock_backend,
                })
            } else {
                Arc::new(sections)
            });
        }
        let settings = settings(args);
        let app = Stockade::new(ports, settings);
        let mut reset: Option<Arc<dyn Reset>> = None;
        if args.profile == Profile::Demo {
            if app.products().await.map_err(StartError::Seed)?.is_empty() {
                seed::demo(&app).await.map_err(StartError::Seed)?;
            }
            // Reset empties the memory adapters; with the store, gate or queue elsewhere it
            // would leave them disagreeing, so it is only offered when all three are in memory.
            let all_in_memory = ["store", "gate", "queue"]
                .iter()
                .all(|p| choices[p] == Backend::Memory);
            if all_in_memory {
                reset = Some(Arc::new(DemoReset {
                    app: app.clone(),
                    memory: memory.clone(),
                }));
            }
        }
        // Gates live outside the store: make sure every FLASH coupon has one and that it knows
        // every coupon the store already issued (after a restart, for instance).
        if let Err(e) = app.reconcile_all().await {
            tracing::warn!(error = %e, "start-up reconciliation failed; the worker will retry");
        }
        let state = AppState {
            app: app.clone(),
            jwt,
            metrics: stockade_http::metrics_handle(),
            reset,
            request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
        };
        let intervals = workers::Intervals {
            issuance_consumers: args.issuance_consumers,
            expiry: Duration::from_secs(args.expiry_interval_secs.max(1)),
            popularity: Duration::from_secs((args.popularity_ttl_secs / 2).max(1)),
            reconcile: Duration::from_secs(args.reconcile_interval_secs.max(1)),
            purge: Duration::from_secs(60),
            metrics: Duration::from_secs(1),
            saga_recovery: Duration::from_secs(5),
            saga_recovery_after: Duration::from_secs(args.saga_recovery_after_secs),
        };
        Ok(Service {
            app,
            state,
            memory,
            postgres,
            intervals,
        })
    }

    /// Starts the background workers.
    pub fn spawn_workers(&self, shutdown: &watch::Receiver<bool>) -> JoinSet<()> {
        workers::spawn(&self.app, &self.intervals, shutdown)
    }

    /// The HTTP service.
    pub fn router(&self) -> axum::Router {
        stockade_http::router(self.state.clone())
    }
}

fn metered_ports(mut ports: Ports, backend: &'static str) -> Ports {
    ports.locks = Arc::new(metered::MeteredLocks {
        inner: ports.locks,
        backend,
    });
    ports.idempotency = Arc::new(metered::MeteredIdempotency {
        inner: ports.idempotency,
    });
    ports.gate = Arc::new(metered::MeteredGate::new(ports.gate));
    ports
}

/// `stockade migrate`: applies the Postgres migrations.
///
/// # Errors
/// [`StartError::Postgres`].
pub async fn migrate(args: &config::MigrateArgs) -> Result<(), StartError> {
    let pool = stockade_postgres::connect(&PgConfig {
        schema: args.database_schema.clone(),
        max_connections: 1,
        ..PgConfig::new(args.database_url.clone())
    })
    .await?;
    stockade_postgres::migrate(&pool).await?;
    pool.close().await;
    Ok(())
}

/// Serves until SIGTERM or Ctrl-C, then drains in-flight requests and stops the workers.
///
/// # Errors
/// [`StartError`] when the service cannot be built or the address cannot be bound.
pub async fn serve(args: &ServeArgs) -> Result<(), StartError> {
    let service = Service::build(args).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: args.listen,
            source,
        })?;
    let (stop, stopped) = watch::channel(false);
    let mut workers = service.spawn_workers(&stopped);
    tracing::info!(addr = %args.listen, profile = ?args.profile, "stockade is listening");
    // Answers are small and each is one write: send them at once rather than waiting on the
    // client's acknowledgement of the previous segment (Nagle).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on a connection");
        }
    });
    let served = axum::serve(listener, service.router())
        .with_graceful_shutdown(shutdown_signal())
        .await;
    tracing::info!("shutting down: stopping workers");
    let _ = stop.send(true);
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("workers did not stop in 10 s; aborting them");
        workers.abort_all();
    }
    if let Err(e) = served {
        tracing::error!(error = %e, "server error");
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
