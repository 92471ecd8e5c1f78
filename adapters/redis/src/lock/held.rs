//! A granted guard: the locks and local queue places it holds, the watchdog that extends its
//! leases, and its release (explicit, or in the background when dropped).

use super::Inner;
use async_trait::async_trait;
use futures::future::join_all;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::lock::{HeldLock, LockError, LockKey};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Locks taken so far, and this process's queue places; dropped, they are released in the
/// background.
pub(super) struct Held {
    pub(super) inner: Arc<Inner>,
    /// Each lock, and the holder's place in its key's queue (removed with the release).
    pub(super) locks: Vec<(rslock::Lock, String)>,
    /// The head places of this process's queues, given up after the Redis keys are released
    /// (so the next local waiter finds them free).
    pub(super) queued: Vec<tokio::sync::OwnedMutexGuard<()>>,
    pub(super) keys: Vec<LockKey>,
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

pub(super) struct RedisHeld {
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
    pub(super) fn new(held: Held, lease: Duration) -> Self {
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
