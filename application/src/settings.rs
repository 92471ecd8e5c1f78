//! Tunables of the use cases. Bootstrap fills them from flags and environment.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a use case queues for its locks.
    pub lock_wait: Duration,
    /// How long a lock grant lives if its holder vanishes.
    pub lock_lease: Duration,
    /// How long an unpaid order holds its stock and coupons.
    pub order_ttl: Duration,
    /// How long a finished idempotent outcome is replayed.
    pub idempotency_ttl: Duration,
    /// How long an in-flight idempotency record holds its key if its request dies.
    pub idempotency_lease: Duration,
    /// How long a popular-products answer is cached.
    pub popularity_ttl: Duration,
    /// The most the payment saga waits for the data platform.
    pub platform_timeout: Duration,
    /// Deliveries of one issuance before it is dead-lettered.
    pub issuance_max_attempts: u32,
    /// First retry delay of an issuance; doubles with each attempt.
    pub issuance_backoff: Duration,
    /// The most requests one combined turn runs together (docs/decisions/0012); 1 turns
    /// combining off.
    pub combine_max_batch: usize,
    /// How long a product stays known as sold out without news of a restock (zero turns the
    /// sold-out fast path off).
    pub sold_out_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lock_wait: Duration::from_secs(5),
            lock_lease: Duration::from_secs(30),
            order_ttl: Duration::from_secs(15 * 60),
            idempotency_ttl: Duration::from_secs(24 * 60 * 60),
            idempotency_lease: Duration::from_secs(60),
            popularity_ttl: Duration::from_secs(60),
            platform_timeout: Duration::from_secs(5),
            issuance_max_attempts: 5,
            issuance_backoff: Duration::from_millis(100),
            combine_max_batch: 128,
            sold_out_ttl: Duration::from_secs(2),
        }
    }
}
