//! A [`LockManager`] over one or N independent Redis masters (Redlock); see
//! docs/decisions/0010.
//!
//! - **Acquisition**: one Lua script per node, one round trip: `SET key value NX PX lease` and,
//!   in the same script, `INCR` of the namespace's fence counter (also when the key is busy, so
//!   live nodes' counters move together). Granted on a majority within the validity time.
//! - **Fencing tokens**: the largest counter answered, written back to answering nodes that were
//!   behind before the grant is returned; after every grant a majority holds at least its token,
//!   so every later token is larger. A node restarted without persistence restarts its counter;
//!   if a majority restarted at once tokens could go backwards — Redlock's known weakness (it
//!   assumes nodes keep their data, or stay down longer than the longest lease). The store's
//!   fencing check stays the safety net: it refuses any token lower than one it has seen.
//! - **Waiting** is bounded by `wait`; 50 ms per node. An attempt is decided as soon as a
//!   majority granted or can no longer grant: a dead node costs no time-out per acquisition.
//!   Waiters are served in arrival order across processes:
//!   - within a process they queue first come first served, and only the head of a key's
//!     queue asks Redis;
//!   - on each node a key has a queue of waiters (a sorted set scored by the waiter's arrival
//!     time, so every node orders the same waiters the same way and serves the same head): a
//!     node grants the key only to the head of its queue, or to anyone when it is empty;
//!   - a place lapses when its waiter has not tried for three rechecks (it gave up without
//!     saying so, or its process died), goes with the holder's release, and is taken out at
//!     once when a waiter gives up;
//!   - a release `PUBLISH`es the key on the namespace's channel (in the release script, on
//!     every node, when a waiter is queued there) and each manager keeps one subscription per
//!     node, so the waiting heads are
//!     woken the moment the key is released and the queue's head takes it at once, instead of
//!     sleeping a backoff. A recheck every [`RECHECK`] (jittered) covers what no message
//!     announces: a lease that ran out, a message lost while a subscription reconnects.
//! - **Cancel-safety**: each attempt runs in a task of its own; abandoned at the deadline or by a
//!   caller that went away, it is left to finish and a lock it got is released at once.
//! - **Watchdog**: while a guard lives its leases are extended (rslock's value-checked
//!   `extend`) every third of the lease; if that fails on the quorum the guard reports
//!   `lease_lost` and the use case aborts before writing.
//! - **Release**: a value-checked delete (Lua) on every node, over the connections already open,
//!   on `release()`, and in the background when a guard is dropped.
//!
//! The manager is split by responsibility: `scripts` (the Lua run on every node), `places` (a
//! waiter's place in a key's queue on the nodes), `wakeups` (the release announcements and the
//! waiting heads they wake), `quorum` (one acquisition attempt and the release over every node),
//! `manager` (the [`LockManager`] port: local queues, then waiting on Redis) and `held` (a granted
//! guard, its watchdog and its release). This module holds the manager's shared state.
//!
//! [`LockManager`]: stockade_application::ports::lock::LockManager

mod held;
mod manager;
mod places;
mod quorum;
mod scripts;
mod wakeups;

use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use stockade_application::ports::lock::LockKey;
use tokio::task::JoinHandle;
use wakeups::{listen, Wakers};

/// The Redis [`LockManager`](stockade_application::ports::lock::LockManager).
#[derive(Clone)]
pub struct RedisLockManager {
    inner: Arc<Inner>,
}

struct Inner {
    rs: rslock::LockManager,
    acquire_script: Arc<redis::Script>,
    release_script: Arc<redis::Script>,
    raise_script: Arc<redis::Script>,
    dequeue_script: Arc<redis::Script>,
    nodes: Vec<ConnectionManager>,
    namespace: String,
    node_timeout: Duration,
    watchdog: bool,
    jitter: AtomicU64,
    /// This process's waiters per key, queued first come first served: only the head of a
    /// key's queue asks Redis, and it is woken the moment the holder before it releases.
    local: parking_lot::Mutex<HashMap<LockKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Where releases are announced (every node publishes there).
    channel: String,
    /// The waiting heads per lock resource, woken by a release announced on `channel`.
    wakers: Wakers,
    /// The subscriptions, one per node; stopped when the manager goes.
    listeners: Vec<JoinHandle<()>>,
    /// The most a waiter sleeps between attempts without news of a release, in milliseconds.
    recheck_ms: AtomicU64,
}

/// How long a waiter waits for a release to be announced before it tries again anyway.
pub const RECHECK: Duration = Duration::from_millis(200);

impl Drop for Inner {
    fn drop(&mut self) {
        for listener in &self.listeners {
            listener.abort();
        }
    }
}

impl fmt::Debug for RedisLockManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLockManager")
            .field("nodes", &self.inner.nodes.len())
            .field("namespace", &self.inner.namespace)
            .field("watchdog", &self.inner.watchdog)
            .finish()
    }
}

impl RedisLockManager {
    /// A manager over `urls` (one or several independent masters; quorum is a majority).
    ///
    /// # Errors
    /// When a URL is invalid or a node cannot be reached at start.
    pub async fn connect(
        urls: &[String],
        namespace: impl Into<String>,
        watchdog: bool,
    ) -> Result<Self, crate::RedisSetupError> {
        let namespace = namespace.into();
        let channel = format!("{namespace}:released");
        let wakers: Wakers = Arc::default();
        let mut nodes = Vec::with_capacity(urls.len());
        let mut listeners = Vec::with_capacity(urls.len());
        let mut clients = Vec::with_capacity(urls.len());
        for url in urls {
            let client = redis::Client::open(url.as_str()).map_err(crate::RedisSetupError::Url)?;
            nodes.push(
                ConnectionManager::new(client.clone())
                    .await
                    .map_err(crate::RedisSetupError::Connect)?,
            );
            clients.push(client);
        }
        // Every node answered: now follow their release announcements.
        for client in clients {
            listeners.push(tokio::spawn(listen(
                client,
                channel.clone(),
                wakers.clone(),
            )));
        }
        let mut rs = rslock::LockManager::new(urls.to_vec());
        // One quorum attempt per call: the waiting policy is ours.
        rs.set_retry(1, Duration::from_millis(1));
        Ok(RedisLockManager {
            inner: Arc::new(Inner {
                rs,
                acquire_script: Arc::new(redis::Script::new(scripts::ACQUIRE)),
                release_script: Arc::new(redis::Script::new(scripts::RELEASE)),
                raise_script: Arc::new(redis::Script::new(scripts::RAISE)),
                dequeue_script: Arc::new(redis::Script::new(scripts::DEQUEUE)),
                nodes,
                namespace,
                // Far below any lease: a node that does not answer quickly is treated as down.
                node_timeout: Duration::from_millis(50),
                watchdog,
                jitter: AtomicU64::new(seed()),
                local: parking_lot::Mutex::default(),
                channel,
                wakers,
                listeners,
                recheck_ms: AtomicU64::new(u64::try_from(RECHECK.as_millis()).unwrap_or(200)),
            }),
        })
    }

    /// Sets how long a waiter waits for a release to be announced before it tries again anyway
    /// ([`RECHECK`] by default).
    pub fn set_recheck(&self, every: Duration) {
        self.inner.recheck_ms.store(
            u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1),
            Ordering::Relaxed,
        );
    }

    pub fn quorum(&self) -> usize {
        self.inner.nodes.len() / 2 + 1
    }
}

fn seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1
}

impl Inner {
    /// The in-process queue of `key`.
    fn queue(&self, key: &LockKey) -> Arc<tokio::sync::Mutex<()>> {
        self.local.lock().entry(key.clone()).or_default().clone()
    }

    /// Forgets the queues of `keys` that nobody holds or waits in.
    fn tidy(&self, keys: &[LockKey]) {
        let mut local = self.local.lock();
        for key in keys {
            if local.get(key).is_some_and(|q| Arc::strong_count(q) == 1) {
                local.remove(key);
            }
        }
    }

    fn resource(&self, key: &LockKey) -> Vec<u8> {
        format!("{}:lock:{}", self.namespace, key.as_str()).into_bytes()
    }

    /// A pseudo-random delay in `[0, max]` (xorshift: jitter needs no cryptography).
    fn jitter(&self, max: Duration) -> Duration {
        let mut x = self.jitter.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter.store(x, Ordering::Relaxed);
        let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX).max(1);
        Duration::from_millis(x % (ms + 1))
    }
}
