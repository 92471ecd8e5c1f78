//! Command line and environment: every `serve` flag also reads an environment variable.
//!
//! Secrets (the JWT secret, and the database and Redis URLs, which can carry passwords) are
//! [`SecretString`]s from the moment they are parsed: `Debug` of any of these structs shows
//! `[REDACTED]` in their place, and the value is only exposed where an adapter is built. Which
//! backend each port runs on is decided from these flags in [`crate::wiring`].

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;
use std::fmt;
use std::net::SocketAddr;

/// The secret used when none is configured, in the demo profile only.
pub const DEMO_JWT_SECRET: &str = "stockade-demo-secret-change-me";

#[derive(Debug, Parser)]
#[command(
    name = "stockade",
    version,
    about = "A commerce backend that stays right under concurrency"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve(Box<ServeArgs>),
    /// Print a bearer token for the configured secret.
    Token(TokenArgs),
    /// Apply database migrations (for the postgres store).
    Migrate(MigrateArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// Memory everything plus the demo data.
    Demo,
    /// Postgres and Redis, no demo data.
    Production,
}

/// Where a port's adapter comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Memory,
    Postgres,
    Redis,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Memory => "memory",
            Backend::Postgres => "postgres",
            Backend::Redis => "redis",
        })
    }
}

/// How the `--redis-url` values are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RedisMode {
    /// Each URL is a server of its own: the first serves every port, all of them Redlock.
    Single,
    /// The URLs are seed nodes of one Redis Cluster, which serves every port but the lock.
    Cluster,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlatformModeArg {
    Accept,
    Fail,
    Hang,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Parses the JWT secret: any non-empty string.
fn jwt_secret(s: &str) -> Result<SecretString, String> {
    if s.is_empty() {
        return Err("the JWT secret must not be empty".into());
    }
    Ok(SecretString::from(s))
}

/// Parses a connection URL that may carry a password: kept as given, only wrapped.
fn secret_url(s: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(s))
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "STOCKADE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// HS256 secret for bearer tokens (required outside the demo profile).
    #[arg(
        long,
        env = "STOCKADE_JWT_SECRET",
        hide_env_values = true,
        value_parser = jwt_secret
    )]
    pub jwt_secret: Option<SecretString>,
    /// Tokens must carry this `iss` (minted tokens carry it too).
    #[arg(long, env = "STOCKADE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Tokens must carry this `aud` (minted tokens carry it too).
    #[arg(long, env = "STOCKADE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// A JSON Web Key Set file: RS256 and ES256 tokens are then verified by `kid` against it
    /// (read again at most every 30 s when a token names an unknown `kid`).
    #[arg(long, env = "STOCKADE_JWKS_FILE", conflicts_with = "jwks_url")]
    pub jwks_file: Option<std::path::PathBuf>,
    /// A JSON Web Key Set URL (an identity provider's `jwks_uri`), as `--jwks-file` but fetched.
    #[arg(long, env = "STOCKADE_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// `demo`: memory adapters and demo data; `production`: Postgres + Redis.
    #[arg(long, env = "STOCKADE_PROFILE", value_enum, default_value = "demo")]
    pub profile: Profile,
    /// Store adapter (default: from the profile).
    #[arg(long, env = "STOCKADE_STORE", value_enum)]
    pub store: Option<Backend>,
    /// Lock manager adapter.
    #[arg(long, env = "STOCKADE_LOCK", value_enum)]
    pub lock: Option<Backend>,
    /// Idempotency store adapter.
    #[arg(long, env = "STOCKADE_IDEMPOTENCY", value_enum)]
    pub idempotency: Option<Backend>,
    /// FLASH coupon gate adapter.
    #[arg(long, env = "STOCKADE_GATE", value_enum)]
    pub gate: Option<Backend>,
    /// Issuance queue adapter.
    #[arg(long, env = "STOCKADE_QUEUE", value_enum)]
    pub queue: Option<Backend>,
    /// Where popular-product sales are counted and rankings cached (`memory`: ranked from the
    /// store's paid orders, cached in the process).
    #[arg(long, env = "STOCKADE_POPULARITY", value_enum)]
    pub popularity: Option<Backend>,
    /// Postgres connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/stockade",
        hide_env_values = true,
        value_parser = secret_url
    )]
    pub database_url: SecretString,
    /// Postgres schema to use instead of `public`.
    #[arg(long, env = "STOCKADE_DATABASE_SCHEMA")]
    pub database_schema: Option<String>,
    /// Connections in the Postgres store's pool.
    #[arg(long, env = "STOCKADE_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// How long a request waits for a connection of the store's pool before it answers 503
    /// `BACKEND_UNAVAILABLE`, in milliseconds (the lock pool keeps its own, longer wait).
    #[arg(long, env = "STOCKADE_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 1_000)]
    pub db_acquire_timeout_ms: u64,
    /// Connections in the Postgres lock pool (each held lock grant uses one).
    #[arg(long, env = "STOCKADE_LOCK_MAX_CONNECTIONS", default_value_t = 32)]
    pub lock_max_connections: u32,
    /// Namespace of Postgres advisory-lock ids and Redis keys (deployments sharing a server
    /// must differ).
    #[arg(long, env = "STOCKADE_LOCK_NAMESPACE", default_value = "stockade")]
    pub lock_namespace: String,
    /// Redis URL; give several (or a comma-separated list) for Redlock over N masters.
    #[arg(
        long = "redis-url",
        env = "REDIS_URL",
        value_delimiter = ',',
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true,
        value_parser = secret_url
    )]
    pub redis_urls: Vec<SecretString>,
    /// `single`: every `--redis-url` is a server of its own; `cluster`: they are seed nodes of
    /// one Redis Cluster (the gate, queue, idempotency and popularity run on it; locks do not,
    /// see `--redis-lock-url`).
    #[arg(
        long,
        env = "STOCKADE_REDIS_MODE",
        value_enum,
        default_value = "single"
    )]
    pub redis_mode: RedisMode,
    /// Independent Redis servers for Redlock (repeatable or comma-separated), instead of the
    /// `--redis-url` ones; with `--redis-mode cluster` the only way to `--lock redis`, whose
    /// default there is `postgres`.
    #[arg(
        long = "redis-lock-url",
        env = "STOCKADE_REDIS_LOCK_URL",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = secret_url
    )]
    pub redis_lock_urls: Vec<SecretString>,
    /// Start the production profile even though the Redis of the FLASH gate and issuance queue
    /// keeps no append-only file: a restart of that Redis then loses reservations already
    /// answered RESERVED (a warning is logged and `/ready` reports it).
    #[arg(long, env = "STOCKADE_ALLOW_VOLATILE_GATE")]
    pub allow_volatile_gate: bool,
    /// Log format.
    #[arg(long, env = "STOCKADE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// How long a use case waits for its locks, in milliseconds.
    #[arg(long, env = "STOCKADE_LOCK_WAIT_MS", default_value_t = 5_000)]
    pub lock_wait_ms: u64,
    /// How long a lock lives if its holder vanishes, in milliseconds.
    #[arg(long, env = "STOCKADE_LOCK_LEASE_MS", default_value_t = 30_000)]
    pub lock_lease_ms: u64,
    /// How long an unpaid order holds its stock and coupons, in seconds.
    #[arg(long, env = "STOCKADE_ORDER_TTL_SECS", default_value_t = 900)]
    pub order_ttl_secs: u64,
    /// How long an idempotent outcome is replayed, in seconds.
    #[arg(long, env = "STOCKADE_IDEMPOTENCY_TTL_SECS", default_value_t = 86_400)]
    pub idempotency_ttl_secs: u64,
    /// How long an in-flight idempotency key is held if its request dies, in seconds.
    #[arg(long, env = "STOCKADE_IDEMPOTENCY_LEASE_SECS", default_value_t = 60)]
    pub idempotency_lease_secs: u64,
    /// The longest one request may take, in seconds (keep it under the idempotency lease).
    #[arg(long, env = "STOCKADE_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// The longest the payment saga waits for the data platform, in milliseconds.
    #[arg(long, env = "STOCKADE_PLATFORM_TIMEOUT_MS", default_value_t = 5_000)]
    pub platform_timeout_ms: u64,
    /// How long a popular-products answer is cached, in seconds.
    #[arg(long, env = "STOCKADE_POPULARITY_TTL_SECS", default_value_t = 60)]
    pub popularity_ttl_secs: u64,
    /// Issuance consumers in this process.
    #[arg(long, env = "STOCKADE_ISSUANCE_CONSUMERS", default_value_t = 2)]
    pub issuance_consumers: usize,
    /// How long an issuance delivered to a consumer may stay unacknowledged before another
    /// consumer takes it over (Redis queue), in seconds.
    #[arg(long, env = "STOCKADE_ISSUANCE_VISIBILITY_SECS", default_value_t = 30)]
    pub issuance_visibility_secs: u64,
    /// Deliveries of one issuance before it is dead-lettered.
    #[arg(long, env = "STOCKADE_ISSUANCE_MAX_ATTEMPTS", default_value_t = 5)]
    pub issuance_max_attempts: u32,
    /// How often unpaid orders are expired, in seconds.
    #[arg(long, env = "STOCKADE_EXPIRY_INTERVAL_SECS", default_value_t = 5)]
    pub expiry_interval_secs: u64,
    /// How the built-in data-platform stand-in answers: `accept`, `fail`, or `hang` (never
    /// answers; the saga's time-out then compensates). For demos and failure drills.
    #[arg(
        long,
        env = "STOCKADE_PLATFORM_MODE",
        value_enum,
        default_value = "accept"
    )]
    pub platform_mode: PlatformModeArg,
    /// How long a payment saga may stay interrupted before the recovery worker finishes it, in
    /// seconds (keep it above the platform time-out).
    #[arg(long, env = "STOCKADE_SAGA_RECOVERY_AFTER_SECS", default_value_t = 30)]
    pub saga_recovery_after_secs: u64,
    /// The longest a client may take to send a whole request head, in seconds: from connecting,
    /// or from the first byte of a later request on a kept-alive connection.
    #[arg(
        long,
        env = "STOCKADE_HTTP_HEADER_TIMEOUT",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub http_header_timeout: u64,
    /// The longest a kept-alive connection may stay open with no request on it, in seconds.
    #[arg(
        long,
        env = "STOCKADE_HTTP_IDLE_TIMEOUT",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub http_idle_timeout: u64,
    /// The most client connections open at once; at the cap new ones wait in the listen
    /// backlog (default: the open-file limit less 128 and both Postgres pools, between 16 and
    /// 65,536).
    #[arg(
        long,
        env = "STOCKADE_MAX_CONNECTIONS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_connections: Option<u64>,
    /// How often FLASH coupons are reconciled, in seconds.
    #[arg(long, env = "STOCKADE_RECONCILE_INTERVAL_SECS", default_value_t = 300)]
    pub reconcile_interval_secs: u64,
    /// An origin browsers may call the API from (`https://shop.example`), repeatable or
    /// comma-separated; `*` for any. CORS is off when none is given.
    #[arg(
        long = "cors-origin",
        env = "STOCKADE_CORS_ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The user id the token names (1 to 2^53-1, what a token's `sub` may hold).
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..=(1_i64 << 53) - 1))]
    pub user: i64,
    /// Make it an admin token.
    #[arg(long)]
    pub admin: bool,
    /// HS256 secret (the demo secret when unset).
    #[arg(
        long,
        env = "STOCKADE_JWT_SECRET",
        hide_env_values = true,
        value_parser = jwt_secret
    )]
    pub jwt_secret: Option<SecretString>,
    /// The `iss` to put in the token (as the service's `--jwt-issuer`).
    #[arg(long, env = "STOCKADE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The `aud` to put in the token (as the service's `--jwt-audience`).
    #[arg(long, env = "STOCKADE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 86_400)]
    pub ttl_secs: u64,
    /// Print tokens for this many users, `--user` and the ids after it, one per line.
    #[arg(long, default_value_t = 1)]
    pub count: u32,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// Postgres connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/stockade",
        hide_env_values = true,
        value_parser = secret_url
    )]
    pub database_url: SecretString,
    /// Postgres schema to use instead of `public`.
    #[arg(long, env = "STOCKADE_DATABASE_SCHEMA")]
    pub database_schema: Option<String>,
    /// Create the database first when it does not exist (the URL's user needs CREATEDB).
    #[arg(long)]
    pub create: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::wiring::Wiring;
    use secrecy::ExposeSecret;

    const SECRETS: [&str; 4] = ["pw-database", "pw-redis-one", "pw-redis-two", "jwt-s3cret"];

    fn parse(argv: &[&str]) -> Cli {
        Cli::try_parse_from(argv).unwrap()
    }

    fn assert_redacted(debug: &str) {
        for secret in SECRETS {
            assert!(!debug.contains(secret), "{secret} shown in {debug}");
        }
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let cli = parse(&[
            "stockade",
            "serve",
            "--profile",
            "production",
            "--database-url",
            "postgres://app:pw-database@db:5432/stockade",
            "--redis-url",
            "redis://:pw-redis-one@r1:6379,redis://default:pw-redis-two@r2:6379",
            "--jwt-secret",
            "jwt-s3cret",
        ]);
        assert_redacted(&format!("{cli:?}"));
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        // The values are all there, only hidden.
        assert_eq!(args.redis_urls.len(), 2);
        assert!(args.database_url.expose_secret().contains("pw-database"));
        let wiring = Wiring::from_args(&args).unwrap();
        assert_redacted(&format!("{wiring:?}"));
        assert_redacted(&format!("{:?}", wiring.postgres));
        assert_redacted(&format!("{:?}", wiring.redis));

        let migrate = parse(&[
            "stockade",
            "migrate",
            "--database-url",
            "postgres://app:pw-database@db/stockade",
        ]);
        assert_redacted(&format!("{migrate:?}"));
        let token = parse(&[
            "stockade",
            "token",
            "--user",
            "1",
            "--jwt-secret",
            "jwt-s3cret",
        ]);
        assert_redacted(&format!("{token:?}"));
    }

    #[test]
    fn an_empty_jwt_secret_is_refused() {
        let e = Cli::try_parse_from(["stockade", "serve", "--jwt-secret", ""]).unwrap_err();
        assert!(
            e.to_string().contains("the JWT secret must not be empty"),
            "{e}"
        );
    }

    #[test]
    fn the_urls_default_as_before() {
        let from_env = ["DATABASE_URL", "REDIS_URL", "STOCKADE_JWT_SECRET"];
        if from_env.iter().any(|v| std::env::var_os(v).is_some()) {
            return; // the environment, not the default, would be read
        }
        let Command::Serve(args) = parse(&["stockade", "serve"]).command else {
            panic!("not serve")
        };
        assert_eq!(
            args.database_url.expose_secret(),
            "postgres://postgres@127.0.0.1:5432/stockade"
        );
        let urls: Vec<&str> = args.redis_urls.iter().map(|u| u.expose_secret()).collect();
        assert_eq!(urls, ["redis://127.0.0.1:6379"]);
        assert!(args.jwt_secret.is_none());
    }
}
