//! [`Service::build`]: from flags to a running application — wiring, backends, metering, demo
//! data, HTTP state and worker intervals. The end-to-end tests start the service through it.

use crate::backends;
use crate::config::{Profile, ServeArgs, DEMO_JWT_SECRET};
use crate::wiring::Wiring;
use crate::{gauges, metered, seed, workers, StartError};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::time::Duration;
use stockade_application::{AppError, Ports, Settings, Stockade};
use stockade_http::{AppState, CorsOrigins, JwtSecret, Reset};
use stockade_memory::MemoryBackend;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A built service: the application, its HTTP state, and the adapters it runs on.
#[derive(Debug, Clone)]
pub struct Service {
    pub app: Stockade,
    pub state: AppState,
    /// The memory adapters (those of the ports configured as `memory` are the ones in use).
    pub memory: MemoryBackend,
    /// The Postgres store's pool, when a port runs on Postgres.
    pub postgres: Option<sqlx::PgPool>,
    /// Every Postgres pool, named, for the pool gauges.
    pub pools: Vec<(&'static str, sqlx::PgPool)>,
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

/// The secret tokens are signed with: the configured one, else the public demo secret in the
/// demo profile only.
fn jwt_secret(args: &ServeArgs) -> Result<SecretString, StartError> {
    match (&args.jwt_secret, args.profile) {
        (Some(secret), _) => Ok(secret.clone()),
        (None, Profile::Demo) => {
            tracing::warn!(
                "no --jwt-secret given: using the public demo secret (demo profile only)"
            );
            Ok(SecretString::from(DEMO_JWT_SECRET))
        }
        (None, Profile::Production) => Err(StartError::MissingSecret),
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

fn intervals(args: &ServeArgs) -> workers::Intervals {
    workers::Intervals {
        issuance_consumers: args.issuance_consumers,
        expiry: Duration::from_secs(args.expiry_interval_secs.max(1)),
        popularity: Duration::from_secs((args.popularity_ttl_secs / 2).max(1)),
        reconcile: Duration::from_secs(args.reconcile_interval_secs.max(1)),
        purge: Duration::from_secs(60),
        metrics: Duration::from_secs(1),
        saga_recovery: Duration::from_secs(5),
        saga_recovery_after: Duration::from_secs(args.saga_recovery_after_secs),
    }
}

/// Wraps the ports whose use the metrics describe (lock waits, idempotency replays, gate
/// outcomes) without the use cases knowing.
fn metered(mut ports: Ports, lock_backend: &'static str) -> Ports {
    ports.locks = Arc::new(metered::MeteredLocks {
        inner: ports.locks,
        backend: lock_backend,
    });
    ports.idempotency = Arc::new(metered::MeteredIdempotency {
        inner: ports.idempotency,
    });
    ports.gate = Arc::new(metered::MeteredGate::new(ports.gate));
    ports
}

impl Service {
    /// Builds the adapters `args` choose, the application and its HTTP state; applies
    /// migrations when a port runs on Postgres; seeds the demo data in the demo profile (into
    /// an empty store only).
    ///
    /// # Errors
    /// [`StartError`] naming what is missing.
    pub async fn build(args: &ServeArgs) -> Result<Service, StartError> {
        let wiring = Wiring::from_args(args)?;
        let jwt = jwt_secret(args)?;
        let cors = CorsOrigins::parse(&args.cors_origins)?;
        let memory = backends::memory::build(args.platform_mode);
        let mut ports = memory.ports();
        let postgres = match &wiring.postgres {
            Some(pg) => Some(backends::postgres::build(pg, &wiring, ports.ids.clone()).await?),
            None => None,
        };
        let redis = match &wiring.redis {
            Some(redis) => Some(backends::redis::build(redis, &wiring, ports.ids.clone()).await?),
            None => None,
        };
        if let Some(pg) = &postgres {
            pg.install(&mut ports);
        }
        if let Some(redis) = redis {
            redis.install(&mut ports);
        }
        let in_memory = wiring.in_memory();
        if args.profile == Profile::Production && !in_memory.is_empty() {
            tracing::warn!(
                parts = %in_memory.join(", "),
                "production profile: these parts run in this process's memory"
            );
        }
        let mut ports = metered(ports, wiring.lock.label());
        if let Some(pg) = &postgres {
            ports.sections = pg.sections(&wiring, ports.locks.clone());
        }
        let app = Stockade::new(ports, settings(args));
        let mut reset: Option<Arc<dyn Reset>> = None;
        if args.profile == Profile::Demo {
            if app.products().await.map_err(StartError::Seed)?.is_empty() {
                seed::demo(&app).await.map_err(StartError::Seed)?;
            }
            if wiring.resettable() {
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
            jwt: JwtSecret::new(jwt.expose_secret()),
            metrics: stockade_http::metrics_handle().inspect(|_| gauges::describe()),
            reset,
            request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
            cors,
        };
        Ok(Service {
            app,
            state,
            memory,
            pools: postgres
                .as_ref()
                .map(|pg| pg.pools.clone())
                .unwrap_or_default(),
            postgres: postgres.map(|pg| pg.pool),
            intervals: intervals(args),
        })
    }

    /// Starts the background workers.
    pub fn spawn_workers(&self, shutdown: &watch::Receiver<bool>) -> JoinSet<()> {
        let mut set = workers::spawn(&self.app, &self.intervals, shutdown);
        set.spawn(gauges::run(
            self.pools.clone(),
            self.intervals.metrics,
            shutdown.clone(),
        ));
        set
    }

    /// The HTTP service.
    pub fn router(&self) -> axum::Router {
        stockade_http::router(self.state.clone())
    }
}
