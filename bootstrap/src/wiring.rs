//! The wiring, typed: which backend serves each port, decided once from the profile and the
//! flags, before anything connects.
//!
//! Each port gets an enum of its own because each port has its own set of adapters (the gate
//! has no Postgres adapter, the store no Redis one): a pairing this build cannot serve is
//! refused here, naming the port, and the builders in [`crate::backends`] only ever see
//! choices they can honour. Connection settings belong to a backend rather than a port (one
//! database and one set of Redis nodes serve several ports), so [`Wiring`] carries them once,
//! present exactly when some port runs on that backend.

use crate::config::{Backend, Profile, RedisMode, ServeArgs};
use crate::StartError;
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;
use stockade_redis::RedisTarget;

/// A port's choice of backend, as read from a [`Backend`] flag.
trait PortBackend: Sized {
    /// The port's name in flags, errors and log lines.
    const PORT: &'static str;
    /// The backends this port can run on, for the error that refuses another.
    const AVAILABLE: &'static str;
    /// The in-process adapter (the demo profile's choice for every port).
    const MEMORY: Self;
    /// The production profile's choice.
    const PRODUCTION: Self;
    /// `None` when this port has no adapter on `backend`.
    fn on(backend: Backend) -> Option<Self>;
}

/// Where the catalogue, stock, orders, coupons, wallets and carts live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreBackend {
    Memory,
    Postgres,
}

impl PortBackend for StoreBackend {
    const PORT: &'static str = "store";
    const AVAILABLE: &'static str = "memory, postgres";
    const MEMORY: Self = StoreBackend::Memory;
    const PRODUCTION: Self = StoreBackend::Postgres;
    fn on(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Memory => Some(StoreBackend::Memory),
            Backend::Postgres => Some(StoreBackend::Postgres),
            Backend::Redis => None,
        }
    }
}

/// Who grants the use cases' locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockBackend {
    Memory,
    /// Advisory locks, each grant holding a session of the lock pool.
    PostgresAdvisory,
    /// Redlock over independent servers: every `--redis-lock-url`, else (one server mode)
    /// every `--redis-url` (one node is plain Redis locking). Never the nodes of a cluster.
    Redlock,
}

impl LockBackend {
    /// The `backend` label of the lock metrics.
    pub fn label(self) -> &'static str {
        match self {
            LockBackend::Memory => "memory",
            LockBackend::PostgresAdvisory => "postgres",
            LockBackend::Redlock => "redis",
        }
    }
}

impl PortBackend for LockBackend {
    const PORT: &'static str = "lock";
    const AVAILABLE: &'static str = "memory, postgres, redis";
    const MEMORY: Self = LockBackend::Memory;
    const PRODUCTION: Self = LockBackend::Redlock;
    fn on(backend: Backend) -> Option<Self> {
        Some(match backend {
            Backend::Memory => LockBackend::Memory,
            Backend::Postgres => LockBackend::PostgresAdvisory,
            Backend::Redis => LockBackend::Redlock,
        })
    }
}

/// Where idempotency keys are claimed and outcomes replayed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdempotencyBackend {
    Memory,
    Postgres,
    Redis,
}

impl PortBackend for IdempotencyBackend {
    const PORT: &'static str = "idempotency";
    const AVAILABLE: &'static str = "memory, postgres, redis";
    const MEMORY: Self = IdempotencyBackend::Memory;
    const PRODUCTION: Self = IdempotencyBackend::Redis;
    fn on(backend: Backend) -> Option<Self> {
        Some(match backend {
            Backend::Memory => IdempotencyBackend::Memory,
            Backend::Postgres => IdempotencyBackend::Postgres,
            Backend::Redis => IdempotencyBackend::Redis,
        })
    }
}

/// Declares a port whose adapters are memory and Redis only.
macro_rules! memory_or_redis {
    ($(#[$doc:meta])* $name:ident, $port:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            Memory,
            Redis,
        }

        impl PortBackend for $name {
            const PORT: &'static str = $port;
            const AVAILABLE: &'static str = "memory, redis";
            const MEMORY: Self = $name::Memory;
            const PRODUCTION: Self = $name::Redis;
            fn on(backend: Backend) -> Option<Self> {
                match backend {
                    Backend::Memory => Some($name::Memory),
                    Backend::Redis => Some($name::Redis),
                    Backend::Postgres => None,
                }
            }
        }
    };
}

memory_or_redis!(
    /// Who admits FLASH coupon claims.
    GateBackend,
    "gate"
);
memory_or_redis!(
    /// Where FLASH issuances wait for a consumer.
    QueueBackend,
    "queue"
);
memory_or_redis!(
    /// Where popular-product sales are counted and rankings cached (`Memory`: ranked from the
    /// store's paid orders, cached in the process).
    PopularityBackend,
    "popularity"
);

/// How to reach the database, for the ports that run on Postgres.
#[derive(Debug, Clone)]
pub struct PgSettings {
    pub url: SecretString,
    pub schema: Option<String>,
    /// Connections in the store's pool.
    pub max_connections: u32,
    /// How long a checkout of the store's pool waits for a connection.
    pub acquire_timeout: Duration,
    /// Connections in the lock pool (each held grant uses one).
    pub lock_max_connections: u32,
    /// Namespace of the advisory-lock ids.
    pub lock_namespace: String,
}

/// How to reach Redis, for the ports that run on it.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// How `urls` are read: servers of their own, or seeds of one cluster.
    pub mode: RedisMode,
    /// The servers (the other ports use the first) or the cluster's seed nodes.
    pub urls: Vec<SecretString>,
    /// The independent servers of the lock's Redlock.
    pub lock_urls: Vec<SecretString>,
    /// Whether the production profile may run the gate and queue on a Redis without an
    /// append-only file.
    pub allow_volatile_gate: bool,
    /// Prefix of every key.
    pub namespace: String,
    /// How long a delivered issuance may stay unacknowledged before another consumer takes it.
    pub issuance_visibility: Duration,
}

/// The backend of every port, and the settings of each backend in use.
#[derive(Debug, Clone)]
pub struct Wiring {
    pub store: StoreBackend,
    pub lock: LockBackend,
    pub idempotency: IdempotencyBackend,
    pub gate: GateBackend,
    pub queue: QueueBackend,
    pub popularity: PopularityBackend,
    /// `Some` exactly when some port runs on Postgres.
    pub postgres: Option<PgSettings>,
    /// `Some` exactly when some port runs on Redis.
    pub redis: Option<RedisSettings>,
}

impl RedisSettings {
    /// Where the gate, queue, idempotency, popularity and persistence probe connect: the first
    /// URL, or the cluster whose seeds are all the URLs.
    pub fn target(&self) -> RedisTarget {
        match self.mode {
            RedisMode::Single => RedisTarget::Single(
                self.urls
                    .first()
                    .map(|u| u.expose_secret().to_owned())
                    .unwrap_or_default(),
            ),
            RedisMode::Cluster => RedisTarget::Cluster(
                self.urls
                    .iter()
                    .map(|u| u.expose_secret().to_owned())
                    .collect(),
            ),
        }
    }
}

/// The lock's backend: as [`choose`], except on a Redis Cluster without independent lock
/// servers (docs/decisions/0026): there the production profile locks through Postgres, and
/// `--lock redis` is refused.
fn choose_lock(args: &ServeArgs) -> Result<LockBackend, StartError> {
    let cluster_only = args.redis_mode == RedisMode::Cluster && args.redis_lock_urls.is_empty();
    match (args.lock, args.profile) {
        (None, Profile::Production) if cluster_only => Ok(LockBackend::PostgresAdvisory),
        (Some(Backend::Redis), _) if cluster_only => Err(StartError::ClusterLock),
        (flag, profile) => choose(flag, profile),
    }
}

/// The flag if given, else the profile's choice; an error if the port cannot run there.
fn choose<P: PortBackend>(flag: Option<Backend>, profile: Profile) -> Result<P, StartError> {
    match flag {
        None => Ok(match profile {
            Profile::Demo => P::MEMORY,
            Profile::Production => P::PRODUCTION,
        }),
        Some(backend) => P::on(backend).ok_or(StartError::Unavailable {
            port: P::PORT,
            backend,
            available: P::AVAILABLE,
        }),
    }
}

impl Wiring {
    /// Reads the choice of every port from `args` (the flag, else the profile's default).
    ///
    /// # Errors
    /// [`StartError::Unavailable`] for the first port (in the order store, lock, idempotency,
    /// gate, queue, popularity) asked to run on a backend it has no adapter for.
    pub fn from_args(args: &ServeArgs) -> Result<Wiring, StartError> {
        let p = args.profile;
        let mut wiring = Wiring {
            store: choose(args.store, p)?,
            lock: choose_lock(args)?,
            idempotency: choose(args.idempotency, p)?,
            gate: choose(args.gate, p)?,
            queue: choose(args.queue, p)?,
            popularity: choose(args.popularity, p)?,
            postgres: None,
            redis: None,
        };
        if wiring.uses_postgres() {
            wiring.postgres = Some(PgSettings {
                url: args.database_url.clone(),
                schema: args.database_schema.clone(),
                max_connections: args.db_max_connections,
                acquire_timeout: Duration::from_millis(args.db_acquire_timeout_ms.max(1)),
                lock_max_connections: args.lock_max_connections,
                lock_namespace: args.lock_namespace.clone(),
            });
        }
        if wiring.uses_redis() {
            let lock_urls = match (args.redis_lock_urls.is_empty(), args.redis_mode) {
                (false, _) => args.redis_lock_urls.clone(),
                (true, RedisMode::Single) => args.redis_urls.clone(),
                (true, RedisMode::Cluster) => Vec::new(),
            };
            wiring.redis = Some(RedisSettings {
                mode: args.redis_mode,
                urls: args.redis_urls.clone(),
                lock_urls,
                allow_volatile_gate: args.allow_volatile_gate,
                namespace: args.lock_namespace.clone(),
                issuance_visibility: Duration::from_secs(args.issuance_visibility_secs.max(1)),
            });
        }
        Ok(wiring)
    }

    fn uses_postgres(&self) -> bool {
        self.store == StoreBackend::Postgres
            || self.lock == LockBackend::PostgresAdvisory
            || self.idempotency == IdempotencyBackend::Postgres
    }

    fn uses_redis(&self) -> bool {
        self.lock == LockBackend::Redlock
            || self.idempotency == IdempotencyBackend::Redis
            || self.gate == GateBackend::Redis
            || self.queue == QueueBackend::Redis
            || self.popularity == PopularityBackend::Redis
    }

    /// The ports that run in this process's memory, in the order of the flags.
    pub fn in_memory(&self) -> Vec<&'static str> {
        [
            ("store", self.store == StoreBackend::Memory),
            ("lock", self.lock == LockBackend::Memory),
            (
                "idempotency",
                self.idempotency == IdempotencyBackend::Memory,
            ),
            ("gate", self.gate == GateBackend::Memory),
            ("queue", self.queue == QueueBackend::Memory),
            ("popularity", self.popularity == PopularityBackend::Memory),
        ]
        .into_iter()
        .filter_map(|(port, memory)| memory.then_some(port))
        .collect()
    }

    /// Whether all the state a demo reset empties (store, gate and queue) is in memory: with
    /// any of them elsewhere, emptying the rest would leave them disagreeing.
    pub fn resettable(&self) -> bool {
        self.store == StoreBackend::Memory
            && self.gate == GateBackend::Memory
            && self.queue == QueueBackend::Memory
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{Cli, Command};
    use clap::Parser;

    fn wiring(flags: &[&str]) -> Result<Wiring, StartError> {
        let argv = ["stockade", "serve"].iter().chain(flags);
        let Command::Serve(args) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not serve")
        };
        Wiring::from_args(&args)
    }

    #[test]
    fn the_demo_profile_runs_everything_in_memory() {
        let w = wiring(&[]).unwrap();
        assert_eq!(w.in_memory().len(), 6);
        assert!(w.postgres.is_none() && w.redis.is_none());
        assert!(w.resettable());
    }

    #[test]
    fn the_production_profile_runs_on_postgres_and_redis() {
        let w = wiring(&["--profile", "production"]).unwrap();
        assert_eq!(w.store, StoreBackend::Postgres);
        assert_eq!(w.lock, LockBackend::Redlock);
        assert_eq!(w.idempotency, IdempotencyBackend::Redis);
        assert_eq!(w.gate, GateBackend::Redis);
        assert_eq!(w.queue, QueueBackend::Redis);
        assert_eq!(w.popularity, PopularityBackend::Redis);
        assert!(w.in_memory().is_empty());
        assert!(w.postgres.is_some() && w.redis.is_some());
    }

    #[test]
    fn a_flag_overrides_the_profile_and_brings_only_its_backend() {
        let w = wiring(&["--store", "postgres", "--lock", "postgres"]).unwrap();
        assert_eq!(w.lock, LockBackend::PostgresAdvisory);
        assert_eq!(w.lock.label(), "postgres");
        assert!(w.postgres.is_some() && w.redis.is_none());
        assert_eq!(
            w.in_memory(),
            ["idempotency", "gate", "queue", "popularity"]
        );
        assert!(!w.resettable());
    }

    #[test]
    fn on_a_cluster_locks_need_independent_servers_or_postgres() {
        let w = wiring(&["--profile", "production", "--redis-mode", "cluster"]).unwrap();
        assert_eq!(w.lock, LockBackend::PostgresAdvisory);
        assert_eq!(w.gate, GateBackend::Redis);
        let redis = w.redis.unwrap();
        assert!(redis.lock_urls.is_empty());
        assert_eq!(
            redis.target(),
            RedisTarget::Cluster(vec!["redis://127.0.0.1:6379".to_owned()])
        );

        let e = wiring(&["--redis-mode", "cluster", "--lock", "redis"]).unwrap_err();
        assert!(matches!(e, StartError::ClusterLock), "{e}");
        assert!(e.to_string().contains("--redis-lock-url"), "{e}");

        let w = wiring(&[
            "--profile",
            "production",
            "--redis-mode",
            "cluster",
            "--redis-url",
            "redis://c1:7000,redis://c2:7000",
            "--redis-lock-url",
            "redis://l1:6379,redis://l2:6379,redis://l3:6379",
        ])
        .unwrap();
        assert_eq!(w.lock, LockBackend::Redlock);
        let redis = w.redis.unwrap();
        assert_eq!(redis.lock_urls.len(), 3);
        assert_eq!(
            redis.target(),
            RedisTarget::Cluster(vec!["redis://c1:7000".into(), "redis://c2:7000".into()])
        );
    }

    #[test]
    fn one_server_mode_locks_on_the_redis_urls_as_before() {
        let w = wiring(&[
            "--profile",
            "production",
            "--redis-url",
            "redis://a:6379,redis://b:6379",
        ])
        .unwrap();
        assert_eq!(w.lock, LockBackend::Redlock);
        let redis = w.redis.unwrap();
        assert_eq!(redis.mode, RedisMode::Single);
        assert_eq!(redis.lock_urls.len(), 2);
        assert_eq!(redis.target(), RedisTarget::Single("redis://a:6379".into()));
    }

    #[test]
    fn a_port_without_an_adapter_on_the_backend_is_refused_by_name() {
        let e = wiring(&["--gate", "postgres"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the gate adapter `postgres` is not available in this build (available: memory, redis)"
        );
        let e = wiring(&["--store", "redis", "--queue", "postgres"]).unwrap_err();
        assert!(
            e.to_string().starts_with("the store adapter `redis`"),
            "{e}"
        );
    }
}
