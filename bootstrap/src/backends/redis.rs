//! The Redis backend: Redlock over the independent lock servers; idempotency, sales counts and
//! rankings, the FLASH gate and the issuance queue on the first server, or on the cluster.

use crate::wiring::{
    GateBackend, IdempotencyBackend, LockBackend, PopularityBackend, QueueBackend, RedisSettings,
    Wiring,
};
use crate::StartError;
use secrecy::ExposeSecret;
use std::sync::Arc;
use stockade_application::ports::clock::IdGenerator;
use stockade_application::Ports;
use stockade_redis::{
    RedisCouponGate, RedisIdempotencyStore, RedisIssuanceQueue, RedisLockManager,
    RedisPopularityCache, RedisSalesCounter,
};

/// The Redis adapters the wiring asked for.
#[derive(Debug, Default)]
pub struct RedisPorts {
    pub locks: Option<RedisLockManager>,
    pub idempotency: Option<RedisIdempotencyStore>,
    pub popularity: Option<(RedisSalesCounter, RedisPopularityCache)>,
    pub gate: Option<RedisCouponGate>,
    pub queue: Option<RedisIssuanceQueue>,
}

/// Connects the adapters of the ports `wiring` puts on Redis; `ids` names idempotency claims
/// and this process's queue consumer.
///
/// # Errors
/// [`StartError::Redis`] when a URL is invalid or a node cannot be reached.
pub async fn build(
    settings: &RedisSettings,
    wiring: &Wiring,
    ids: Arc<dyn IdGenerator>,
) -> Result<RedisPorts, StartError> {
    let namespace = &settings.namespace;
    let first = settings.target();
    let first = &first;
    let mut out = RedisPorts::default();
    if wiring.lock == LockBackend::Redlock {
        let urls: Vec<String> = settings
            .lock_urls
            .iter()
            .map(|url| url.expose_secret().to_owned())
            .collect();
        out.locks = Some(RedisLockManager::connect(&urls, namespace.clone(), true).await?);
    }
    if wiring.idempotency == IdempotencyBackend::Redis {
        out.idempotency =
            Some(RedisIdempotencyStore::connect(first, namespace.clone(), ids.clone()).await?);
    }
    if wiring.popularity == PopularityBackend::Redis {
        let sales = RedisSalesCounter::connect(first, namespace.clone()).await?;
        let rankings = RedisPopularityCache::connect(first, namespace.clone()).await?;
        out.popularity = Some((sales, rankings));
    }
    if wiring.gate == GateBackend::Redis {
        out.gate = Some(RedisCouponGate::connect(first, namespace.clone()).await?);
    }
    if wiring.queue == QueueBackend::Redis {
        // Unique per process: a restarted instance is a new consumer, and what the old one left
        // pending is taken over after the visibility time.
        let consumer = format!("{}-{}", std::process::id(), ids.unique());
        out.queue = Some(
            RedisIssuanceQueue::connect(first, namespace, consumer, settings.issuance_visibility)
                .await?,
        );
    }
    Ok(out)
}

impl RedisPorts {
    /// Puts these adapters in place of the memory ones.
    pub fn install(self, ports: &mut Ports) {
        if let Some(locks) = self.locks {
            ports.locks = Arc::new(locks);
        }
        if let Some(idempotency) = self.idempotency {
            ports.idempotency = Arc::new(idempotency);
        }
        if let Some((sales, rankings)) = self.popularity {
            ports.sales = Some(Arc::new(sales));
            ports.popularity = Arc::new(rankings);
        }
        if let Some(gate) = self.gate {
            ports.gate = Arc::new(gate);
        }
        if let Some(queue) = self.queue {
            ports.queue = Arc::new(queue);
        }
    }
}
