//! # stockade-redis
//!
//! Redis adapters: the Redlock [`RedisLockManager`] (Lua acquisition and release over a
//! quorum, a FIFO queue per key on every node, bounded waiting, cancel-safety, fencing tokens,
//! and a lease watchdog on rslock's `extend`) and the Lua-scripted
//! [`RedisIdempotencyStore`], popular products in day-bucketed sorted sets
//! ([`RedisSalesCounter`]) with a shared, TTL'd ranking cache ([`RedisPopularityCache`]), and
//! the FLASH coupon pipeline: the Lua [`RedisCouponGate`] and the Redis Streams
//! [`RedisIssuanceQueue`].
//!
//! All but the lock manager speak through a [`RedisConnection`], to one server or one Redis
//! Cluster ([`RedisTarget`]); their keys carry hash tags so that each script and `MULTI` stays
//! in one slot. Locks never run on a cluster (docs/decisions/0026).

mod connection;
mod error;
mod gate;
mod idempotency;
mod lock;
mod persistence;
mod popularity;
mod queue;

pub use connection::{RedisConnection, RedisTarget};
pub use gate::RedisCouponGate;
pub use idempotency::RedisIdempotencyStore;
pub use lock::RedisLockManager;
pub use persistence::{Persistence, RedisPersistenceProbe};
pub use popularity::{RedisPopularityCache, RedisSalesCounter};
pub use queue::{DeadLetter, RedisIssuanceQueue, GROUP as ISSUANCE_GROUP};

#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error("the Redis URL is not valid: {0}")]
    Url(#[source] redis::RedisError),
    #[error("could not connect to Redis: {0}")]
    Connect(#[source] redis::RedisError),
}
