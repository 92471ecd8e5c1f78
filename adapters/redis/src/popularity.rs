//! Popular products on Redis: units sold per product and per day in sorted sets (one per day,
//! with a TTL), and the ranking cached with a TTL.
//!
//! A ranking over D days adds up the sets of the D calendar days (UTC) ending today — a day
//! bucket, where the store's ranking takes the last D×24 hours to the millisecond.
//!
//! On a Redis Cluster a ranking's `ZUNION` and a sale's `MULTI` must stay in one slot: the day
//! sets share the hash tag `{<namespace>:sales}`, and the cached rankings `{<namespace>:top}`
//! with an index set of their keys, which `clear` empties in one script (a `SCAN` would only
//! see one node of a cluster).

use crate::connection::{RedisConnection, RedisTarget};
use crate::error::backend;
use async_trait::async_trait;
use redis::Script;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::popularity::{PopularProduct, PopularityCache, SalesCounter};
use stockade_application::BackendError;
use stockade_domain::{ProductId, Timestamp};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// Day sets outlive the longest window a ranking may ask for (365 days).
const KEEP_DAYS: i64 = 366;

/// Deletes every cached ranking listed in the index `KEYS[1]`, and the index, in one step.
/// The rankings share the index's hash tag, so they are in its slot.
const CLEAR: &str = r"
local keys = redis.call('SMEMBERS', KEYS[1])
for i = 1, #keys, 1000 do
  redis.call('DEL', unpack(keys, i, math.min(i + 999, #keys)))
end
redis.call('DEL', KEYS[1])
return #keys
";

fn err(e: redis::RedisError) -> BackendError {
    backend(e)
}

/// The Redis [`SalesCounter`].
#[derive(Clone)]
pub struct RedisSalesCounter {
    conn: RedisConnection,
    namespace: Arc<str>,
}

impl fmt::Debug for RedisSalesCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSalesCounter")
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl RedisSalesCounter {
    /// # Errors
    /// When the URL is invalid or the server cannot be reached.
    pub async fn connect(
        target: impl Into<RedisTarget>,
        namespace: impl Into<Arc<str>>,
    ) -> Result<Self, crate::RedisSetupError> {
        Ok(RedisSalesCounter {
            conn: RedisConnection::connect(target).await?,
            namespace: namespace.into(),
        })
    }

    fn day_key(&self, day: i64) -> String {
        format!("{{{}:sales}}:{day}", self.namespace)
    }

    async fn add(
        &self,
        lines: &[(ProductId, u32)],
        at: Timestamp,
        sign: i64,
    ) -> Result<(), BackendError> {
        let key = self.day_key(at.millis().div_euclid(DAY_MS));
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (product, quantity) in lines {
            pipe.cmd("ZINCRBY")
                .arg(&key)
                .arg(sign * i64::from(*quantity))
                .arg(product.get())
                .ignore();
        }
        pipe.cmd("EXPIRE")
            .arg(&key)
            .arg(KEEP_DAYS * 24 * 3600)
            .ignore();
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(err)
    }
}

#[async_trait]
impl SalesCounter for RedisSalesCounter {
    async fn record(&self, lines: &[(ProductId, u32)], at: Timestamp) -> Result<(), BackendError> {
        self.add(lines, at, 1).await
    }

    async fn unrecord(
        &self,
        lines: &[(ProductId, u32)],
        at: Timestamp,
    ) -> Result<(), BackendError> {
        self.add(lines, at, -1).await
    }

    async fn top(
        &self,
        days: u32,
        limit: u32,
        now: Timestamp,
    ) -> Result<Vec<(ProductId, u64)>, BackendError> {
        let today = now.millis().div_euclid(DAY_MS);
        let keys: Vec<String> = (0..i64::from(days.max(1)))
            .map(|d| self.day_key(today - d))
            .collect();
        let mut conn = self.conn.clone();
        let summed: Vec<(String, f64)> = redis::cmd("ZUNION")
            .arg(keys.len())
            .arg(&keys)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        let mut out: Vec<(ProductId, u64)> = summed
            .into_iter()
            .filter_map(|(member, score)| {
                let id = member
                    .parse::<i64>()
                    .ok()
                    .and_then(|i| ProductId::new(i).ok())?;
                (score >= 1.0).then_some((id, score as u64))
            })
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        out.truncate(limit as usize);
        Ok(out)
    }
}

/// The Redis [`PopularityCache`]: one key per `(days, limit)`, holding the JSON ranking with a
/// TTL. Shared by every instance, so one refresh serves them all.
#[derive(Clone)]
pub struct RedisPopularityCache {
    conn: RedisConnection,
    namespace: Arc<str>,
    clear: Arc<Script>,
}

impl fmt::Debug for RedisPopularityCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPopularityCache")
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl RedisPopularityCache {
    /// # Errors
    /// When the URL is invalid or the server cannot be reached.
    pub async fn connect(
        target: impl Into<RedisTarget>,
        namespace: impl Into<Arc<str>>,
    ) -> Result<Self, crate::RedisSetupError> {
        Ok(RedisPopularityCache {
            conn: RedisConnection::connect(target).await?,
            namespace: namespace.into(),
            clear: Arc::new(Script::new(CLEAR)),
        })
    }

    fn key(&self, days: u32, limit: u32) -> String {
        format!("{{{}:top}}:{days}:{limit}", self.namespace)
    }

    /// The set of the cached rankings' keys (bounded: one per `(days, limit)` asked for).
    fn index(&self) -> String {
        format!("{{{}:top}}:keys", self.namespace)
    }
}

#[async_trait]
impl PopularityCache for RedisPopularityCache {
    async fn get(
        &self,
        days: u32,
        limit: u32,
    ) -> Result<Option<Vec<PopularProduct>>, BackendError> {
        let mut conn = self.conn.clone();
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.key(days, limit))
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        // An unreadable entry is a miss (it is recomputed and overwritten).
        Ok(raw.and_then(|r| serde_json::from_slice(&r).ok()))
    }

    async fn put(
        &self,
        days: u32,
        limit: u32,
        items: Vec<PopularProduct>,
        ttl: Duration,
    ) -> Result<(), BackendError> {
        let body = serde_json::to_vec(&items).map_err(backend)?;
        let key = self.key(days, limit);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&key)
            .arg(body)
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
            .ignore()
            .cmd("SADD")
            .arg(self.index())
            .arg(&key)
            .ignore();
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(err)
    }

    async fn clear(&self) -> Result<(), BackendError> {
        let mut conn = self.conn.clone();
        let _cleared: i64 = self
            .clear
            .key(self.index())
            .invoke_async(&mut conn)
            .await
            .map_err(err)?;
        Ok(())
    }
}
