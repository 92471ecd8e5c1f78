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

use async_trait::async_trait;
use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt};
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use stockade_application::ports::lock::{
    normalize_keys, Fence, FencingToken, HeldLock, LockError, LockGuard, LockKey, LockManager,
    LockOptions,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The Redis [`LockManager`].
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

type Wakers = Arc<parking_lot::Mutex<HashMap<Vec<u8>, Arc<tokio::sync::Notify>>>>;

/// Follows the release announcements of one node for as long as the manager lives,
/// reconnecting after a failure.
async fn listen(client: redis::Client, channel: String, wakers: Wakers) {
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(&channel).await.is_ok() {
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let resource: Vec<u8> = message.get_payload_bytes().to_vec();
                        let waker = wakers.lock().get(&resource).cloned();
                        if let Some(waker) = waker {
                            waker.notify_waiters();
                        }
                    }
                }
                tracing::debug!("lock release subscription ended; subscribing again");
            }
            Err(e) => tracing::debug!(error = %e, "lock release subscription failed"),
        }
        // Meanwhile waiters fall back on their recheck.
        tokio::time::sleep(Duration::from_secs(1)).await;
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
                acquire_script: Arc::new(redis::Script::new(ACQUIRE)),
                release_script: Arc::new(redis::Script::new(RELEASE)),
                raise_script: Arc::new(redis::Script::new(RAISE)),
                dequeue_script: Arc::new(redis::Script::new(DEQUEUE)),
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

    /// Takes `place` out of `resource`'s queue on every node, in the background.
    fn dequeue(self: &Arc<Self>, resource: &[u8], place: &Place) {
        let (queue, alive) = queue_keys(resource);
        let (inner, id) = (self.clone(), place.id.clone());
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            join_all(inner.nodes.iter().map(|node| {
                let mut node = node.clone();
                let script = inner.dequeue_script.clone();
                let (queue, alive, id) = (queue.clone(), alive.clone(), id.clone());
                let node_timeout = inner.node_timeout;
                async move {
                    let _ = tokio::time::timeout(
                        node_timeout,
                        script
                            .key(queue)
                            .key(alive)
                            .arg(id)
                            .invoke_async::<i64>(&mut node),
                    )
                    .await;
                }
            }))
            .await;
        });
    }

    /// The waker of `resource`'s waiting head.
    fn waker(&self, resource: &[u8]) -> Arc<tokio::sync::Notify> {
        self.wakers
            .lock()
            .entry(resource.to_vec())
            .or_default()
            .clone()
    }

    /// Forgets `resource`'s waker once nobody waits on it.
    fn forget_waker(&self, resource: &[u8]) {
        let mut wakers = self.wakers.lock();
        if wakers
            .get(resource)
            .is_some_and(|w| Arc::strong_count(w) == 1)
        {
            wakers.remove(resource);
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

    /// Deletes the lock's key on every node where it still holds the lock's value, on the
    /// connections already open (one round trip per node).
    async fn unlock(&self, lock: &rslock::Lock) {
        self.unlock_leaving(lock, "").await;
    }

    /// [`Self::unlock`], also taking `place` (a waiter's id; empty: none) out of the key's
    /// queue: a holder's place goes with its release, on every node, in the same round trip.
    async fn unlock_leaving(&self, lock: &rslock::Lock, place: &str) {
        // Done once a majority deleted the key (or every node answered): a hung node's delete is
        // left to finish in the background instead of adding its time-out to every release.
        let quorum = self.nodes.len() / 2 + 1;
        let mut pending: FuturesUnordered<_> = self
            .nodes
            .iter()
            .map(|node| {
                let mut node = node.clone();
                let script = self.release_script.clone();
                let (resource, val) = (lock.resource.clone(), lock.val.clone());
                let (queue, alive) = queue_keys(&resource);
                let channel = self.channel.clone();
                let place = place.to_owned();
                let node_timeout = self.node_timeout;
                async move {
                    tokio::time::timeout(
                        node_timeout,
                        script
                            .key(resource.as_slice())
                            .key(queue.as_slice())
                            .key(alive.as_slice())
                            .arg(val.as_slice())
                            .arg(channel.as_str())
                            .arg(place.as_str())
                            .invoke_async::<i64>(&mut node),
                    )
                    .await
                    .is_ok_and(|r| r.is_ok())
                }
            })
            .collect();
        let mut answered = 0;
        while let Some(ok) = pending.next().await {
            if ok {
                answered += 1;
                if answered >= quorum {
                    break;
                }
            }
        }
        if !pending.is_empty() {
            tokio::spawn(async move { while pending.next().await.is_some() {} });
        }
    }

    /// One quorum attempt, abandoned at `deadline` without leaving anything held: the lock and
    /// its fencing token, or nothing.
    async fn attempt(
        self: &Arc<Self>,
        key: LockKey,
        lease: Duration,
        deadline: Instant,
        place: Place,
    ) -> Option<(rslock::Lock, u64)> {
        let inner = self.clone();
        let mut task = Attempt(
            Some(tokio::spawn(async move {
                inner.acquire_once(&key, lease, &place).await
            })),
            self.clone(),
        );
        let handle = task.0.as_mut()?;
        match tokio::time::timeout_at(deadline, handle).await {
            Ok(Ok(Some(granted))) => {
                task.0 = None;
                Some(granted)
            }
            Ok(_) => {
                task.0 = None;
                None
            }
            // `task` is dropped here: its Drop releases a lock the attempt may still get.
            Err(_) => None,
        }
    }

    /// Sets the key with a fresh value on every node and, in the same script, increments the
    /// namespace's fence counter there (also where the key was busy, so that the counters of
    /// live nodes move together). Granted on a majority within the validity time: the token is
    /// the largest counter any node answered, written back to the nodes that answered less, so
    /// that every later majority answers more. Otherwise the nodes that granted are released.
    async fn acquire_once(
        self: &Arc<Self>,
        key: &LockKey,
        lease: Duration,
        place: &Place,
    ) -> Option<(rslock::Lock, u64)> {
        let resource = self.resource(key);
        let counter = format!("{}:fence", self.namespace);
        let (queue, alive) = queue_keys(&resource);
        let value = self.rs.get_unique_lock_id().ok()?;
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1);
        let started = Instant::now();
        // Every node is asked at once; the attempt is decided as soon as a majority granted or
        // a majority can no longer be reached, so a dead or slow node never adds its time-out to
        // the acquisition. The answers still on their way are awaited in the background (a late
        // grant is removed by the release that follows a failed attempt or ends the guard).
        let quorum = self.nodes.len() / 2 + 1;
        let mut pending: FuturesUnordered<_> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let mut node = node.clone();
                let script = self.acquire_script.clone();
                let (resource, counter, value) = (resource.clone(), counter.clone(), value.clone());
                let (queue, alive) = (queue.clone(), alive.clone());
                let (score, alive_ms, id) = (place.score, place.alive_ms, place.id.clone());
                let node_timeout = self.node_timeout;
                async move {
                    let answer = tokio::time::timeout(
                        node_timeout,
                        script
                            .key(resource)
                            .key(counter)
                            .key(queue)
                            .key(alive)
                            .arg(value)
                            .arg(lease_ms)
                            .arg(score)
                            .arg(alive_ms)
                            .arg(id)
                            .invoke_async::<i64>(&mut node),
                    )
                    .await
                    .ok()
                    .and_then(Result::ok);
                    (i, answer)
                }
            })
            .collect();
        let mut answers: Vec<Option<i64>> = vec![None; self.nodes.len()];
        let (mut yes, mut no) = (0, 0);
        while let Some((i, answer)) = pending.next().await {
            answers[i] = answer;
            if answer.is_some_and(|t| t > 0) {
                yes += 1;
            } else {
                no += 1;
            }
            if yes >= quorum || no > self.nodes.len() - quorum {
                break;
            }
        }
        let granted = answers.iter().flatten().filter(|t| **t > 0).count();
        let token = answers
            .iter()
            .flatten()
            .map(|t| t.unsigned_abs())
            .max()
            .unwrap_or(0);
        let drift = lease / 100 + Duration::from_millis(2);
        let validity = lease.checked_sub(started.elapsed() + drift);
        let lock = rslock::Lock {
            resource,
            val: value,
            validity_time: validity.map_or(0, |v| usize::try_from(v.as_millis()).unwrap_or(0)),
            lock_manager: self.rs.clone(),
        };
        let failed = granted < quorum || validity.is_none() || token == 0;
        if !pending.is_empty() {
            // A grant that arrives after a failed attempt was released is released too; one that
            // arrives for a granted lock is part of it, and goes with its release.
            let (inner, resource, val) = (self.clone(), lock.resource.clone(), lock.val.clone());
            tokio::spawn(async move {
                let mut late = false;
                while let Some((_, answer)) = pending.next().await {
                    late |= answer.is_some_and(|t| t > 0);
                }
                if late && failed {
                    let lock = rslock::Lock {
                        resource,
                        val,
                        validity_time: 0,
                        lock_manager: inner.rs.clone(),
                    };
                    inner.unlock(&lock).await;
                }
            });
        }
        if failed {
            self.unlock(&lock).await;
            return None;
        }
        // Raise the nodes that answered less (they and the rest of the answering majority then
        // all hold at least `token`); nodes that did not answer cannot be raised now, and need
        // not be: the answering majority is enough for every later majority to meet one of them.
        let behind: Vec<usize> = answers
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.filter(|t| t.unsigned_abs() < token).map(|_| i))
            .collect();
        if !behind.is_empty() {
            let raised = join_all(behind.iter().map(|&i| {
                let mut node = self.nodes[i].clone();
                let script = self.raise_script.clone();
                let counter = counter.clone();
                async move {
                    tokio::time::timeout(
                        self.node_timeout,
                        script
                            .key(counter)
                            .arg(token)
                            .invoke_async::<i64>(&mut node),
                    )
                    .await
                    .ok()
                    .and_then(Result::ok)
                }
            }))
            .await;
            let answered = answers.iter().flatten().count();
            let missed = raised.iter().filter(|r| r.is_none()).count();
            if answered - missed < quorum {
                self.unlock(&lock).await;
                return None;
            }
        }
        Some((lock, token))
    }
}

/// Per node: queue the waiter at its place (or keep it there), take the key if it is free and
/// the waiter is the queue's head, and always bump the fence counter. Answers the counter, as a
/// negative number when the key was not taken. The place stays after a grant (the waiter's
/// acquisition may still fail to win a majority, and must then keep its place on every node);
/// it is removed with the holder's release (RELEASE), when the waiter gives up (DEQUEUE), or
/// when it lapses.
///
/// KEYS: the lock, the fence counter, the queue (waiters by arrival), the queue's liveness (when
/// each waiter's place lapses). ARGV: the lock value, the lease (ms), the waiter's arrival (its
/// place), how long the place lives without an attempt (ms), the waiter's id. A head whose place
/// lapsed (its waiter gave up or vanished) is dropped, so a dead waiter holds nobody up for
/// long; the queue's keys expire a minute after their last use.
const ACQUIRE: &str = r"
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
while true do
  local h = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  if not h or h == ARGV[5] then break end
  if tonumber(redis.call('HGET', KEYS[4], h) or '0') >= now then break end
  redis.call('ZREM', KEYS[3], h)
  redis.call('HDEL', KEYS[4], h)
end
redis.call('ZADD', KEYS[3], 'NX', ARGV[3], ARGV[5])
redis.call('HSET', KEYS[4], ARGV[5], now + tonumber(ARGV[4]))
redis.call('PEXPIRE', KEYS[3], 60000)
redis.call('PEXPIRE', KEYS[4], 60000)
local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
local t = redis.call('INCR', KEYS[2])
if head == ARGV[5] and redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return t
end
return -t
";

/// Per node: take a waiter's place out of a key's queue (it was served, or gave up).
const DEQUEUE: &str = r"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
";

/// The queue of a lock resource, and the liveness of its places.
fn queue_keys(resource: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut queue = resource.to_vec();
    queue.extend_from_slice(b":queue");
    let mut alive = resource.to_vec();
    alive.extend_from_slice(b":alive");
    (queue, alive)
}

/// A waiter's place in a key's queue on every node: ordered by its arrival, the same on every
/// node (so every node serves the same head), and alive while it keeps trying.
#[derive(Debug, Clone)]
struct Place {
    id: String,
    /// Microseconds since the epoch when the acquisition began.
    score: u64,
    alive_ms: u64,
}

/// Per node: delete the key only if it still holds our value, and announce it on ARGV[2] when
/// a waiter is queued for it (KEYS[2], its queue): an uncontended release announces nothing.
const RELEASE: &str = r"
if ARGV[3] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('HDEL', KEYS[3], ARGV[3])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('PUBLISH', ARGV[2], KEYS[1])
  end
  return 1
end
return 0
";

/// Per node: raise the fence counter to at least ARGV[1].
const RAISE: &str = r"
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
if v < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
";

/// An rslock attempt in flight; dropped unfinished, it releases whatever the attempt gets.
struct Attempt(Option<JoinHandle<Option<(rslock::Lock, u64)>>>, Arc<Inner>);

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            let inner = self.1.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Ok(Some((lock, _))) = handle.await {
                        inner.unlock(&lock).await;
                    }
                });
            }
        }
    }
}

#[async_trait]
impl LockManager for RedisLockManager {
    /// Every node is pinged at once; ready when a majority answers within the node time-out.
    async fn check(&self) -> Result<(), LockError> {
        let answers = join_all(self.inner.nodes.iter().map(|node| {
            let mut node = node.clone();
            async move {
                tokio::time::timeout(
                    self.inner.node_timeout * 4,
                    redis::cmd("PING").query_async::<String>(&mut node),
                )
                .await
                .is_ok_and(|r| r.is_ok())
            }
        }))
        .await;
        let up = answers.iter().filter(|ok| **ok).count();
        if up >= self.quorum() {
            Ok(())
        } else {
            Err(LockError::Backend(stockade_application::BackendError::new(
                "redis",
                format!(
                    "{up} of {} lock nodes answer; {} needed",
                    answers.len(),
                    self.quorum()
                ),
            )))
        }
    }

    async fn acquire(
        &self,
        keys: &[LockKey],
        options: LockOptions,
    ) -> Result<LockGuard, LockError> {
        let deadline = Instant::now() + options.wait;
        let keys = normalize_keys(keys);
        let mut held = Held {
            inner: self.inner.clone(),
            locks: Vec::new(),
            queued: Vec::new(),
            keys: keys.clone(),
        };
        // First in this process's queues (in key order, so they cannot deadlock), then in Redis.
        for key in &keys {
            let queue = self.inner.queue(key);
            match tokio::time::timeout_at(deadline, queue.lock_owned()).await {
                Ok(turn) => held.queued.push(turn),
                // `held` is dropped: the places taken so far are given up.
                Err(_) => return Err(LockError::Timeout),
            }
        }
        let mut fences = Vec::new();
        let recheck = Duration::from_millis(self.inner.recheck_ms.load(Ordering::Relaxed));
        // Where this acquisition stands in each key's queue: it arrived now.
        let arrived = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        for key in keys {
            let resource = self.inner.resource(&key);
            let place = Place {
                id: self.inner.rs.get_unique_lock_id().map_or_else(
                    |_| {
                        format!(
                            "{arrived}-{}",
                            self.inner.jitter(Duration::from_secs(3600)).as_micros()
                        )
                    },
                    |id| id.iter().map(|b| format!("{b:02x}")).collect(),
                ),
                score: arrived,
                // Three rechecks without an attempt: the waiter is gone.
                alive_ms: u64::try_from((recheck * 3).as_millis()).unwrap_or(u64::MAX),
            };
            let mut waker = WakerRef {
                waker: self.inner.waker(&resource),
                inner: &self.inner,
                resource,
                place: place.clone(),
                served: false,
            };
            let (lock, token) = loop {
                // Listening before the attempt: a release announced while it runs still wakes.
                let released = waker.waker.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                if let Some(granted) = self
                    .inner
                    .attempt(key.clone(), options.lease, deadline, place.clone())
                    .await
                {
                    break granted;
                }
                let now = Instant::now();
                if now >= deadline {
                    // `held` is dropped: what was taken is released.
                    return Err(LockError::Timeout);
                }
                // Until the holder's release is announced, or the recheck (jittered, so that
                // processes that missed the same message do not all ask at once).
                let pause = (recheck / 2 + self.inner.jitter(recheck / 2)).min(deadline - now);
                tokio::select! {
                    () = &mut released => {}
                    () = tokio::time::sleep(pause) => {}
                }
            };
            held.locks.push((lock, place.id.clone()));
            waker.served = true;
            fences.push(Fence {
                key,
                token: FencingToken(token),
            });
        }
        Ok(LockGuard::new(
            fences,
            Box::new(RedisHeld::new(held, options.lease)),
        ))
    }
}

/// A waiting head's hold on its waker; the waker is forgotten when nobody waits on it.
/// Also takes the waiter's place out of the key's queues (in the background) when it gives up;
/// a granted waiter's place goes with its release.
struct WakerRef<'a> {
    waker: Arc<tokio::sync::Notify>,
    inner: &'a Arc<Inner>,
    resource: Vec<u8>,
    place: Place,
    /// Granted: the place goes with the release.
    served: bool,
}

impl Drop for WakerRef<'_> {
    fn drop(&mut self) {
        if !self.served {
            self.inner.dequeue(&self.resource, &self.place);
        }
        let resource = std::mem::take(&mut self.resource);
        // Our own reference goes first, so that the count seen is the others'.
        self.waker = Arc::new(tokio::sync::Notify::new());
        self.inner.forget_waker(&resource);
    }
}

/// Locks taken so far, and this process's queue places; dropped, they are released in the
/// background.
struct Held {
    inner: Arc<Inner>,
    /// Each lock, and the holder's place in its key's queue (removed with the release).
    locks: Vec<(rslock::Lock, String)>,
    /// The head places of this process's queues, given up after the Redis keys are released
    /// (so the next local waiter finds them free).
    queued: Vec<tokio::sync::OwnedMutexGuard<()>>,
    keys: Vec<LockKey>,
}

impl Held {
    async fn release(&mut self) {
        let locks = std::mem::take(&mut self.locks);
        join_all(locks.iter().map(|(l, p)| self.inner.unlock_leaving(l, p))).await;
        self.queued.clear();
        self.inner.tidy(&self.keys);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let locks = std::mem::take(&mut self.locks);
        let queued = std::mem::take(&mut self.queued);
        let (inner, keys) = (self.inner.clone(), std::mem::take(&mut self.keys));
        if locks.is_empty() {
            drop(queued);
            inner.tidy(&keys);
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                join_all(locks.iter().map(|(l, p)| inner.unlock_leaving(l, p))).await;
                drop(queued);
                inner.tidy(&keys);
            });
        }
    }
}

struct RedisHeld {
    held: Arc<tokio::sync::Mutex<Held>>,
    lost: Arc<AtomicBool>,
    /// When the current leases run out unless extended.
    lease_end: Arc<parking_lot_free::Deadline>,
    watchdog: Option<JoinHandle<()>>,
    /// Gives up the local queue places once the lease ran out.
    expiry: Option<JoinHandle<()>>,
}

/// A deadline shared between a guard and its watchdog, without a lock.
mod parking_lot_free {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::time::Instant;

    pub struct Deadline {
        origin: Instant,
        micros: AtomicU64,
    }

    impl Deadline {
        pub fn new(at: Instant) -> Self {
            let origin = Instant::now();
            let d = Deadline {
                origin,
                micros: AtomicU64::new(0),
            };
            d.set(at);
            d
        }
        pub fn set(&self, at: Instant) {
            let us = at.saturating_duration_since(self.origin).as_micros();
            self.micros
                .store(u64::try_from(us).unwrap_or(u64::MAX), Ordering::SeqCst);
        }
        /// How long until the deadline (zero once it passed).
        pub fn remaining(&self) -> std::time::Duration {
            let now = Instant::now()
                .saturating_duration_since(self.origin)
                .as_micros();
            let now = u64::try_from(now).unwrap_or(u64::MAX);
            std::time::Duration::from_micros(self.micros.load(Ordering::SeqCst).saturating_sub(now))
        }
        pub fn passed(&self) -> bool {
            let us = Instant::now()
                .saturating_duration_since(self.origin)
                .as_micros();
            u64::try_from(us).unwrap_or(u64::MAX) >= self.micros.load(Ordering::SeqCst)
        }
    }
}

impl fmt::Debug for RedisHeld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisHeld")
            .field("lost", &self.lost.load(Ordering::Relaxed))
            .finish()
    }
}

impl RedisHeld {
    fn new(held: Held, lease: Duration) -> Self {
        let inner = held.inner.clone();
        let watchdog_on = inner.watchdog;
        // The validity rslock reports is a little under the lease; a third of the lease is
        // far inside it.
        let lease_end = Arc::new(parking_lot_free::Deadline::new(
            Instant::now() + lease * 9 / 10,
        ));
        let held = Arc::new(tokio::sync::Mutex::new(held));
        let lost = Arc::new(AtomicBool::new(false));
        let watchdog = watchdog_on.then(|| {
            let (held, lost, lease_end) = (held.clone(), lost.clone(), lease_end.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    let guard = held.lock().await;
                    if guard.locks.is_empty() {
                        return;
                    }
                    let extended =
                        join_all(guard.locks.iter().map(|(l, _)| inner.rs.extend(l, lease))).await;
                    if extended.iter().all(Result::is_ok) {
                        lease_end.set(Instant::now() + lease * 9 / 10);
                    } else {
                        tracing::warn!(
                            "a Redis lock lease could not be extended; the guard reports it lost"
                        );
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            })
        });
        // A grant whose lease ran out gives up its places in this process's queues too, so the
        // next local waiter goes to Redis (where the key has expired) instead of waiting for a
        // holder that may never come back.
        let expiry = {
            let (held, lease_end) = (held.clone(), lease_end.clone());
            tokio::spawn(async move {
                loop {
                    let left = lease_end.remaining();
                    if left.is_zero() {
                        break;
                    }
                    tokio::time::sleep(left).await;
                }
                let mut held = held.lock().await;
                held.queued.clear();
                held.inner.tidy(&held.keys);
            })
        };
        RedisHeld {
            held,
            lost,
            lease_end,
            watchdog,
            expiry: Some(expiry),
        }
    }
}

impl Drop for RedisHeld {
    fn drop(&mut self) {
        if let Some(w) = self.watchdog.take() {
            w.abort();
        }
        if let Some(e) = self.expiry.take() {
            e.abort();
        }
        // `Held`'s own Drop releases in the background once the last reference goes.
    }
}

#[async_trait]
impl HeldLock for RedisHeld {
    fn lease_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst) || self.lease_end.passed()
    }

    async fn release(mut self: Box<Self>) -> Result<(), LockError> {
        if let Some(w) = self.watchdog.take() {
            w.abort();
        }
        if let Some(e) = self.expiry.take() {
            e.abort();
        }
        self.held.lock().await.release().await;
        Ok(())
    }
}
