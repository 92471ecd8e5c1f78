//! A [`LockManager`] over one or N independent Redis masters (Redlock).
//!
//! rslock supplies the quorum mechanics: `lock` sets the key with a random value on every node
//! and succeeds on a majority within the validity time; `extend` and `unlock` check the value in
//! Lua, so only the owner extends or releases. Around it this adapter adds what the port's
//! contract asks and rslock does not do (docs/decisions/0010):
//! - **Bounded waiting.** One rslock attempt at a time, retried with exponential backoff and
//!   jitter until `wait` runs out; never a tight spin.
//! - **Cancel-safety.** Each attempt runs in a task of its own. If the caller's deadline passes,
//!   or the caller goes away, while an attempt is in flight, the attempt is left to finish and
//!   a lock it did get is released at once: nothing is left held.
//! - **Fencing tokens.** After a grant, `INCR` of the namespace's fence counter on every node;
//!   the token is the largest value a majority answered. Each counter only grows, and any two majorities
//!   share a node, so a later grant sees a larger value than an earlier one — as long as no node
//!   forgets its counter. A node restarted without persistence restarts its counter from zero;
//!   then only the other nodes of the majority carry the order, and if a majority were restarted
//!   tokens could go backwards. That is Redlock's known weakness (it assumes nodes keep their
//!   data, or stay down longer than the longest lease); the store's fencing check stays the
//!   safety net: it refuses any token lower than one it has already seen for the key.
//! - **Watchdog.** While a guard lives, its leases are extended every third of the lease (like
//!   Redisson's lock watchdog); if an extension fails on the quorum, the guard reports
//!   `lease_lost` and the use case aborts before writing.
//! - **Release** on `release()`, and in the background when a guard is dropped.

use crate::error::backend;
use async_trait::async_trait;
use futures::future::join_all;
use redis::aio::ConnectionManager;
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
    nodes: Vec<ConnectionManager>,
    namespace: String,
    node_timeout: Duration,
    watchdog: bool,
    jitter: AtomicU64,
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
        let mut nodes = Vec::with_capacity(urls.len());
        for url in urls {
            let client = redis::Client::open(url.as_str()).map_err(crate::RedisSetupError::Url)?;
            nodes.push(
                ConnectionManager::new(client)
                    .await
                    .map_err(crate::RedisSetupError::Connect)?,
            );
        }
        let mut rs = rslock::LockManager::new(urls.to_vec());
        // One quorum attempt per call: the waiting policy is ours.
        rs.set_retry(1, Duration::from_millis(1));
        Ok(RedisLockManager {
            inner: Arc::new(Inner {
                rs,
                nodes,
                namespace: namespace.into(),
                node_timeout: Duration::from_millis(250),
                watchdog,
                jitter: AtomicU64::new(seed()),
            }),
        })
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

    /// One quorum attempt, abandoned at `deadline` without leaving anything held.
    async fn attempt(
        self: &Arc<Self>,
        resource: Vec<u8>,
        lease: Duration,
        deadline: Instant,
    ) -> Option<rslock::Lock> {
        let inner = self.clone();
        let mut task = Attempt(
            Some(tokio::spawn(async move {
                inner.rs.lock(&resource, lease).await
            })),
            self.clone(),
        );
        let handle = task.0.as_mut()?;
        match tokio::time::timeout_at(deadline, handle).await {
            Ok(Ok(Ok(lock))) => {
                task.0 = None;
                Some(lock)
            }
            Ok(_) => {
                task.0 = None;
                None
            }
            // `task` is dropped here: its Drop releases a lock the attempt may still get.
            Err(_) => None,
        }
    }

    /// The fencing token: the largest `INCR` of the namespace's fence counter that a majority
    /// answered. One counter for every key, so that tokens also order grants across keys, as
    /// the other adapters' sequences do.
    async fn fence(&self, _key: &LockKey) -> Result<u64, LockError> {
        let counter = format!("{}:fence", self.namespace);
        let answers = join_all(self.nodes.iter().map(|node| {
            let mut node = node.clone();
            let counter = counter.clone();
            async move {
                tokio::time::timeout(
                    self.node_timeout,
                    redis::cmd("INCR")
                        .arg(&counter)
                        .query_async::<u64>(&mut node),
                )
                .await
                .ok()
                .and_then(Result::ok)
            }
        }))
        .await;
        let got: Vec<u64> = answers.into_iter().flatten().collect();
        if got.len() < self.nodes.len() / 2 + 1 {
            return Err(LockError::Backend(backend(
                "no majority answered the fencing counter",
            )));
        }
        got.into_iter()
            .max()
            .ok_or_else(|| LockError::Backend(backend("no fencing token")))
    }
}

/// An rslock attempt in flight; dropped unfinished, it releases whatever the attempt gets.
struct Attempt(
    Option<JoinHandle<Result<rslock::Lock, rslock::LockError>>>,
    Arc<Inner>,
);

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            let inner = self.1.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Ok(Ok(lock)) = handle.await {
                        inner.rs.unlock(&lock).await;
                    }
                });
            }
        }
    }
}

#[async_trait]
impl LockManager for RedisLockManager {
    async fn acquire(
        &self,
        keys: &[LockKey],
        options: LockOptions,
    ) -> Result<LockGuard, LockError> {
        let deadline = Instant::now() + options.wait;
        let mut held = Held {
            inner: self.inner.clone(),
            locks: Vec::new(),
        };
        let mut fences = Vec::new();
        for key in normalize_keys(keys) {
            let resource = self.inner.resource(&key);
            let mut backoff = Duration::from_millis(5);
            let lock = loop {
                if let Some(lock) = self
                    .inner
                    .attempt(resource.clone(), options.lease, deadline)
                    .await
                {
                    break lock;
                }
                let now = Instant::now();
                if now >= deadline {
                    // `held` is dropped: what was taken is released.
                    return Err(LockError::Timeout);
                }
                let pause = self.inner.jitter(backoff).min(deadline - now);
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(Duration::from_millis(100));
            };
            held.locks.push(lock);
            let token = self.inner.fence(&key).await?;
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

/// Locks taken so far; dropped, they are released in the background.
struct Held {
    inner: Arc<Inner>,
    locks: Vec<rslock::Lock>,
}

impl Held {
    async fn release(&mut self) {
        let locks = std::mem::take(&mut self.locks);
        join_all(locks.iter().map(|l| self.inner.rs.unlock(l))).await;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.locks.is_empty() {
            return;
        }
        let locks = std::mem::take(&mut self.locks);
        let inner = self.inner.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                join_all(locks.iter().map(|l| inner.rs.unlock(l))).await;
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
                        join_all(guard.locks.iter().map(|l| inner.rs.extend(l, lease))).await;
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
        RedisHeld {
            held,
            lost,
            lease_end,
            watchdog,
        }
    }
}

impl Drop for RedisHeld {
    fn drop(&mut self) {
        if let Some(w) = self.watchdog.take() {
            w.abort();
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
        self.held.lock().await.release().await;
        Ok(())
    }
}
