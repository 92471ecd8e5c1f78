//! # stockade (bootstrap)
//!
//! The only crate that knows every adapter. It reads configuration ([`config`]), turns it into
//! a typed choice of backend per port ([`wiring`]), builds each backend with its own builder
//! ([`backends`]) into one `Ports` bundle, seeds the demo data when asked, starts the
//! background workers and serves the HTTP API. [`Service::build`] is also what the end-to-end
//! tests start.

pub mod backends;
pub mod config;
#[cfg(test)]
mod flags_table;
pub mod gate_persistence;
mod gauges;
pub mod listen;
mod metered;
mod run;
pub mod seed;
mod service;
pub mod telemetry;
pub mod token;
pub mod wiring;
pub mod workers;

pub use config::Backend;
pub use run::{migrate, serve};
pub use service::Service;

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
    #[error(
        "--lock redis with --redis-mode cluster needs independent Redis servers for Redlock \
         (--redis-lock-url): the masters of one cluster are not independent \
         (docs/decisions/0026); or lock through Postgres (--lock postgres)"
    )]
    ClusterLock,
    #[error("the production profile needs --jwt-secret (or STOCKADE_JWT_SECRET)")]
    MissingSecret,
    #[error("--cors-origin: {0}")]
    Cors(#[from] stockade_http::cors::BadOrigin),
    #[error("{0}")]
    Jwks(#[from] stockade_http::jwks::JwksError),
    #[error("could not seed the demo data: {0}")]
    Seed(#[source] stockade_application::AppError),
    #[error("Postgres: {0}")]
    Postgres(#[from] stockade_postgres::PgSetupError),
    #[error("Redis: {0}")]
    Redis(#[from] stockade_redis::RedisSetupError),
    #[error(
        "the Redis of the FLASH gate and issuance queue (the first --redis-url, or a node of \
         the cluster) keeps no append-only file ({persistence}): its restart would lose coupon reservations already \
         answered RESERVED. Turn AOF on (appendonly yes, appendfsync everysec or always), or \
         start with --allow-volatile-gate (STOCKADE_ALLOW_VOLATILE_GATE) to run without that \
         guarantee"
    )]
    VolatileGate {
        persistence: stockade_redis::Persistence,
    },
    #[error("could not listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
