//! [`Service::build`]: from flags to a running application — wiring, the check of the gate's
//! persistence, backends, metering, demo data, HTTP state and worker intervals; then
//! [`Service::spawn_workers`]: the start-up reconciliation in the background, and the workers
//! after it. The end-to-end tests start the service through it.

use crate::backends;
use crate::config::{Profile, ServeArgs, DEMO_JWT_SECRET};
use crate::gate_persistence::GatePersistence;
use crate::wiring::{GateBackend, QueueBackend, Wiring};
use crate::{gauges, metered, seed, workers, StartError};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::time::Duration;
use stockade_application::{AppError, Ports, Settings, Stockade};
use stockade_http::jwks::{JwksSource, KeySet};
use stockade_http::{AppState, CorsOrigins, JwtSecret, Readiness, ReadyCheck, Reset, TokenRules};
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

/// The issuer and audience tokens must name, and the external key set, when configured.
async fn token_rules(args: &ServeArgs) -> Result<TokenRules, StartError> {
    let source = match (&args.jwks_file, &args.jwks_url) {
        (Some(path), _) => Some(JwksSource::File(path.clone())),
        (None, Some(url)) => Some(JwksSource::Url(url.clone())),
        (None, None) => None,
    };
    let keys = match source {
        Some(source) => Some(KeySet::load(source).await?),
        None => None,
    };
    Ok(TokenRules {
        issuer: args.jwt_issuer.clone(),
        audience: args.jwt_audience.clone(),
        keys,
    })
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
    /// Builds the adapters `args` choose, the application and its HTTP state (not ready yet:
    /// see [`Service::spawn_workers`]); checks the persistence of the gate's Redis first;
    /// applies migrations when a port runs on Postgres; seeds the demo data in the demo profile
    /// (into an empty store only). A backend that cannot be reached fails the start.
    ///
    /// # Errors
    /// [`StartError`] naming what is missing.
    pub async fn build(args: &ServeArgs) -> Result<Service, StartError> {
        let wiring = Wiring::from_args(args)?;
        let jwt = jwt_secret(args)?;
        let cors = CorsOrigins::parse(&args.cors_origins)?;
        let rules = token_rules(args).await?;
        // Before anything is migrated: refuse a gate that cannot keep its promises.
        let mut checks: Vec<Arc<dyn ReadyCheck>> = Vec::new();
        if let Some(gate) = gate_persistence(&wiring).await? {
            gate.at_start(args.profile, args.allow_volatile_gate)
                .await?;
            checks.push(Arc::new(gate));
        }
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
        let readiness = Readiness::new(
            Some(STARTING.to_owned()),
            stockade_http::readiness::DEFAULT_PROBE_TIMEOUT,
            checks,
        );
        let state = AppState {
            app: app.clone(),
            jwt: JwtSecret::with_rules(jwt.expose_secret(), rules),
            metrics: stockade_http::metrics_handle().inspect(|_| gauges::describe()),
            reset,
            request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
            cors,
            readiness,
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

    /// Starts the start-up work in the background: reconciles every FLASH gate with the store
    /// (retrying until it succeeds), then marks the service ready and starts the background
    /// workers, which rely on the gates knowing the store. Until then `/ready` and business
    /// requests answer 503 (docs/decisions/0020). The set ends once `shutdown` turns true and
    /// the workers stopped; aborting it aborts them.
    pub fn spawn_workers(&self, shutdown: &watch::Receiver<bool>) -> JoinSet<()> {
        let mut set = JoinSet::new();
        let (app, intervals) = (self.app.clone(), self.intervals.clone());
        let (readiness, mut shutdown) = (self.state.readiness.clone(), shutdown.clone());
        set.spawn(gauges::run(
            self.pools.clone(),
            self.intervals.metrics,
            shutdown.clone(),
        ));
        set.spawn(async move {
            if !reconcile_until_done(&app, &mut shutdown).await {
                return;
            }
            readiness.mark_ready();
            tracing::info!("start-up reconciliation done: ready");
            let mut workers = workers::spawn(&app, &intervals, &shutdown);
            while workers.join_next().await.is_some() {}
        });
        set
    }

    /// The HTTP service.
    pub fn router(&self) -> axum::Router {
        stockade_http::router(self.state.clone())
    }
}

/// Why `/ready` answers 503 while the start-up work runs.
pub const STARTING: &str = "starting: reconciling coupon gates";

/// How long the start-up reconciliation waits before trying again after a failure.
const RETRY_START_UP: Duration = Duration::from_secs(1);

/// Gates live outside the store: makes sure every FLASH coupon has one and that it knows every
/// coupon the store already issued (after a restart, for instance), trying again until it
/// succeeds. `false` when `shutdown` came first.
async fn reconcile_until_done(app: &Stockade, shutdown: &mut watch::Receiver<bool>) -> bool {
    loop {
        if *shutdown.borrow() {
            return false;
        }
        match app.reconcile_all().await {
            Ok(r) => {
                if r.repaired + r.rolled_back > 0 {
                    tracing::warn!(
                        repaired = r.repaired,
                        rolled_back = r.rolled_back,
                        "start-up reconciliation repaired drift"
                    );
                }
                return true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "start-up reconciliation failed; trying again");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY_START_UP) => {}
            changed = shutdown.changed() => {
                // The sender is gone: nobody will ever ask to stop, nor be served.
                if changed.is_err() {
                    return false;
                }
            }
        }
    }
}

/// A probe of the gate's Redis when the gate or the queue runs there (both use the first
/// `--redis-url`, or the cluster, every node of which is asked).
async fn gate_persistence(wiring: &Wiring) -> Result<Option<GatePersistence>, StartError> {
    let on_redis = wiring.gate == GateBackend::Redis || wiring.queue == QueueBackend::Redis;
    match (on_redis, &wiring.redis) {
        (true, Some(redis)) => Ok(Some(GatePersistence::connect(redis.target()).await?)),
        _ => Ok(None),
    }
}
