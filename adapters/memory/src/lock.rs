//! A fair, re-entrant, leased lock manager in process memory (like Java's
//! `ReentrantLock(fair = true)` per key, plus leases and fencing tokens).
//!
//! - **Fair**: each key has a FIFO queue. A release hands the key straight to the first waiter
//!   still waiting, so a newcomer can never overtake the queue.
//! - **Re-entrant**: a request whose [`LockOwner`] already holds a key is granted it at once;
//!   the key is freed when every grant is released.
//! - **Leased**: a grant whose lease ran out is taken from its holder when someone else needs
//!   the key; the holder's guard then reports `lease_lost`, and its fencing token is older than
//!   the new holder's.
//! - **Fencing**: tokens come from one process-wide counter, so they grow per key even after an
//!   idle key's entry was removed.
//! - **Cancel-safe**: a waiter's queue entry is removed when its future is dropped; a grant
//!   sent to a waiter that went away is released by the grant's own `Drop`.
//! - **Idle clean-up**: a key with no holder and no waiter is removed from the table at once.
//!
//! The table is a `parking_lot` mutex held only for short, synchronous sections, never across
//! an `.await`. Time is tokio's, so tests can pause it.

use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::lock::{
    normalize_keys, Fence, FencingToken, HeldLock, LockError, LockGuard, LockKey, LockManager,
    LockOptions, LockOwner,
};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The in-memory [`LockManager`]. Cheap to clone; clones share the table.
#[derive(Clone, Default)]
pub struct MemoryLockManager {
    shared: Arc<Shared>,
}

impl fmt::Debug for MemoryLockManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryLockManager")
            .field("keys", &self.table_len())
            .finish()
    }
}

#[derive(Default)]
struct Shared {
    table: Mutex<HashMap<LockKey, KeyState>>,
    next_token: AtomicU64,
    next_waiter: AtomicU64,
}

#[derive(Default)]
struct KeyState {
    holder: Option<Holder>,
    waiters: VecDeque<Waiter>,
}

struct Holder {
    token: u64,
    owner: Option<LockOwner>,
    count: u32,
    lease_until: Instant,
}

struct Waiter {
    id: u64,
    owner: Option<LockOwner>,
    lease: Duration,
    tx: oneshot::Sender<KeyGrant>,
}

impl KeyState {
    fn is_idle(&self) -> bool {
        self.holder.is_none() && self.waiters.is_empty()
    }

    /// Drops a holder whose lease ran out.
    fn expire(&mut self, now: Instant) {
        if self.holder.as_ref().is_some_and(|h| h.lease_until <= now) {
            self.holder = None;
        }
    }
}

impl Shared {
    fn token(&self) -> u64 {
        self.next_token.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Gives a free key to the first waiter still listening.
    fn hand_off(self: &Arc<Self>, key: &LockKey, state: &mut KeyState, now: Instant) {
        while state.holder.is_none() {
            let Some(waiter) = state.waiters.pop_front() else {
                break;
            };
            let token = self.token();
            state.holder = Some(Holder {
                token,
                owner: waiter.owner,
                count: 1,
                lease_until: now + waiter.lease,
            });
            let grant = KeyGrant::new(self.clone(), key.clone(), token);
            if let Err(mut unsent) = waiter.tx.send(grant) {
                // The waiter went away: the grant never existed. Disarm it so that its Drop does
                // not re-enter the table we hold.
                unsent.armed = false;
                state.holder = None;
            }
        }
    }

    /// Releases one grant of `key` carrying `token`; a grant that is no longer the holder (its
    /// lease was taken over) releases nothing.
    fn release(self: &Arc<Self>, key: &LockKey, token: u64) {
        let mut table = self.table.lock();
        let Some(state) = table.get_mut(key) else {
            return;
        };
        let Some(holder) = state.holder.as_mut() else {
            return;
        };
        if holder.token != token {
            return;
        }
        holder.count -= 1;
        if holder.count == 0 {
            state.holder = None;
            self.hand_off(key, state, Instant::now());
        }
        if state.is_idle() {
            table.remove(key);
        }
    }

    fn lease_lost(&self, key: &LockKey, token: u64) -> bool {
        let table = self.table.lock();
        match table.get(key).and_then(|s| s.holder.as_ref()) {
            Some(h) => h.token != token || h.lease_until <= Instant::now(),
            None => true,
        }
    }
}

/// One key held by one grant. Dropping it releases the key.
struct KeyGrant {
    shared: Arc<Shared>,
    key: LockKey,
    token: u64,
    armed: bool,
}

impl KeyGrant {
    fn new(shared: Arc<Shared>, key: LockKey, token: u64) -> Self {
        KeyGrant {
            shared,
            key,
            token,
            armed: true,
        }
    }
}

impl Drop for KeyGrant {
    fn drop(&mut self) {
        if self.armed {
            self.armed = false;
            self.shared.release(&self.key, self.token);
        }
    }
}

/// Removes a waiter from its queue when the waiting future ends for any reason.
struct QueuedWaiter {
    shared: Arc<Shared>,
    key: LockKey,
    id: u64,
    rx: Option<oneshot::Receiver<KeyGrant>>,
}

impl Drop for QueuedWaiter {
    fn drop(&mut self) {
        {
            let mut table = self.shared.table.lock();
            if let Some(state) = table.get_mut(&self.key) {
                state.waiters.retain(|w| w.id != self.id);
                if state.is_idle() {
                    table.remove(&self.key);
                }
            }
        }
        // Outside the table lock: a grant already sent to us is dropped here and releases
        // itself (handing the key to the next waiter).
        drop(self.rx.take());
    }
}

struct MemoryHeld {
    grants: Vec<KeyGrant>,
}

impl fmt::Debug for MemoryHeld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.grants.iter().map(|g| (g.key.as_str(), g.token)))
            .finish()
    }
}

#[async_trait]
impl HeldLock for MemoryHeld {
    fn lease_lost(&self) -> bool {
        self.grants
            .iter()
            .any(|g| g.shared.lease_lost(&g.key, g.token))
    }

    async fn release(self: Box<Self>) -> Result<(), LockError> {
        // Each grant releases itself on drop, in reverse order of acquisition.
        let mut grants = self.grants;
        while let Some(g) = grants.pop() {
            drop(g);
        }
        Ok(())
    }
}

impl MemoryLockManager {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many keys have a holder or a waiter (idle keys are removed).
    pub fn table_len(&self) -> usize {
        self.shared.table.lock().len()
    }

    /// Waiters queued on `key` (for tests of fairness).
    pub fn waiters(&self, key: &LockKey) -> usize {
        self.shared
            .table
            .lock()
            .get(key)
            .map_or(0, |s| s.waiters.len())
    }

    async fn acquire_one(
        &self,
        key: LockKey,
        options: &LockOptions,
        deadline: Instant,
    ) -> Result<KeyGrant, LockError> {
        let shared = &self.shared;
        let waiter_id = shared.next_waiter.fetch_add(1, Ordering::Relaxed);
        let rx = {
            let mut table = shared.table.lock();
            let now = Instant::now();
            let state = table.entry(key.clone()).or_default();
            state.expire(now);
            if let (Some(holder), Some(owner)) = (state.holder.as_mut(), options.owner.as_ref()) {
                if holder.owner.as_ref() == Some(owner) {
                    holder.count += 1;
                    return Ok(KeyGrant::new(shared.clone(), key, holder.token));
                }
            }
            shared.hand_off(&key, state, now);
            if state.holder.is_none() && state.waiters.is_empty() {
                let token = shared.token();
                state.holder = Some(Holder {
                    token,
                    owner: options.owner.clone(),
                    count: 1,
                    lease_until: now + options.lease,
                });
                return Ok(KeyGrant::new(shared.clone(), key, token));
            }
            if now >= deadline {
                return Err(LockError::Timeout);
            }
            let (tx, rx) = oneshot::channel();
            state.waiters.push_back(Waiter {
                id: waiter_id,
                owner: options.owner.clone(),
                lease: options.lease,
                tx,
            });
            rx
        };
        let mut queued = QueuedWaiter {
            shared: shared.clone(),
            key,
            id: waiter_id,
            rx: Some(rx),
        };
        loop {
            // Wake at the deadline, or when the holder's lease runs out, whichever is first.
            let lease_end = shared
                .table
                .lock()
                .get(&queued.key)
                .and_then(|s| s.holder.as_ref().map(|h| h.lease_until));
            let wake_at = lease_end.map_or(deadline, |l| l.min(deadline));
            let Some(rx) = queued.rx.as_mut() else {
                return Err(LockError::Timeout);
            };
            tokio::select! {
                granted = rx => {
                    queued.rx = None;
                    return granted.map_err(|_| LockError::Timeout);
                }
                () = tokio::time::sleep_until(wake_at) => {}
            }
            let now = Instant::now();
            {
                let mut table = shared.table.lock();
                if let Some(state) = table.get_mut(&queued.key) {
                    if state.holder.as_ref().is_some_and(|h| h.lease_until <= now) {
                        state.expire(now);
                        shared.hand_off(&queued.key, state, now);
                    }
                }
            }
            if now >= deadline {
                // A grant may have arrived just now; take it rather than churn.
                if let Some(rx) = queued.rx.as_mut() {
                    if let Ok(grant) = rx.try_recv() {
                        queued.rx = None;
                        return Ok(grant);
                    }
                }
                return Err(LockError::Timeout);
            }
        }
    }
}

#[async_trait]
impl LockManager for MemoryLockManager {
    async fn acquire(
        &self,
        keys: &[LockKey],
        options: LockOptions,
    ) -> Result<LockGuard, LockError> {
        let keys = normalize_keys(keys);
        let deadline = Instant::now() + options.wait;
        let mut grants = Vec::with_capacity(keys.len());
        for key in keys {
            // On error, `grants` is dropped and every key taken so far is released.
            grants.push(self.acquire_one(key, &options, deadline).await?);
        }
        let fences = grants
            .iter()
            .map(|g| Fence {
                key: g.key.clone(),
                token: FencingToken(g.token),
            })
            .collect();
        Ok(LockGuard::new(fences, Box::new(MemoryHeld { grants })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> LockKey {
        LockKey::new(s).expect("valid key")
    }

    fn opts(wait_ms: u64, lease_ms: u64) -> LockOptions {
        LockOptions::new(
            Duration::from_millis(wait_ms),
            Duration::from_millis(lease_ms),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn reentrant_for_the_same_owner_only() {
        let m = MemoryLockManager::new();
        let mut o = opts(10, 1_000);
        o.owner = Some(LockOwner("a".into()));
        let g1 = m.acquire(&[key("k")], o.clone()).await.expect("first");
        let g2 = m.acquire(&[key("k")], o.clone()).await.expect("re-entrant");
        assert_eq!(g1.fences()[0].token, g2.fences()[0].token);
        let other = m.acquire(&[key("k")], opts(10, 1_000)).await;
        assert!(matches!(other, Err(LockError::Timeout)));
        g2.release().await.expect("release");
        assert!(matches!(
            m.acquire(&[key("k")], opts(10, 1_000)).await,
            Err(LockError::Timeout)
        ));
        g1.release().await.expect("release");
        assert!(m.acquire(&[key("k")], opts(10, 1_000)).await.is_ok());
        assert_eq!(m.table_len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_waiter_leaves_no_trace() {
        let m = MemoryLockManager::new();
        let held = m
            .acquire(&[key("k")], opts(10, 60_000))
            .await
            .expect("held");
        let waiting = {
            let m = m.clone();
            tokio::spawn(async move { m.acquire(&[key("k")], opts(60_000, 1_000)).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(m.waiters(&key("k")), 1);
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(m.waiters(&key("k")), 0);
        drop(held);
        assert_eq!(m.table_len(), 0);
    }
}
