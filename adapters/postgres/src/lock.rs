//! A [`LockManager`] on Postgres session-level advisory locks.
//!
//! ## Key scheme
//! A lock key is a string; an advisory lock takes a `bigint`. The id is the first 8 bytes of
//! `SHA-256(namespace || 0x00 || key)`, read as a big-endian `i64` ([`lock_id`]). The namespace
//! (the schema, or a name per deployment) keeps two deployments sharing a server apart.
//! Two keys whose ids collide (odds about 2⁻⁶⁴ per pair) simply share one lock: stricter, never
//! weaker. Keys are sorted and de-duplicated **by id**, not by name, so even colliding keys are
//! always taken in one global order and cannot deadlock.
//!
//! ## Sessions
//! Each grant holds one pooled connection of its own (advisory locks belong to a session). It
//! goes back to the pool only after `pg_advisory_unlock_all()` succeeded on it; if that fails,
//! or the grant is dropped where nothing can run the unlock, the connection is closed instead,
//! which ends the session and frees its locks.
//!
//! ## Waiting
//! The fast path is one round trip for all the keys of a grant: `pg_try_advisory_lock` of each,
//! in id order, and for each one granted `nextval` of the fencing sequence. If one is busy, the
//! grant keeps the locks before it, gives back any after it, and waits for the rest one by one. Otherwise the connection sets `lock_timeout` to what is left of `wait` and
//! blocks in `pg_advisory_lock` — the server queues it, nothing spins. A `55P03` time-out is
//! followed by `pg_advisory_unlock`, because the server can grant the lock just as the timeout
//! fires, and a failed multi-key acquisition unlocks what it took before it answers: nothing is
//! held once a time-out is returned. A cancelled acquisition (its future dropped) closes its
//! connection; the pool's connections set `client_connection_check_interval` so that a backend
//! still queued for a client that went away gives up promptly.
//!
//! ## Leases and fencing
//! Tokens come from the `lock_fencing_seq` sequence, taken after the lock is granted, so they
//! grow with every grant. A grant that outlives its lease is released by a watchdog task and its
//! guard reports `lease_lost`; a holder whose session died (its backend was terminated) loses the
//! lock at once, and the store refuses its stale token.

use crate::error::backend;
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::lock::{
    Fence, FencingToken, HeldLock, LockError, LockGuard, LockKey, LockManager, LockOptions,
};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The advisory lock id of `key` in `namespace`.
pub fn lock_id(namespace: &str, key: &str) -> i64 {
    let mut h = Sha256::new();
    h.update(namespace.as_bytes());
    h.update([0u8]);
    h.update(key.as_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    i64::from_be_bytes(first)
}

/// The Postgres [`LockManager`].
#[derive(Clone)]
pub struct PgLockManager {
    pool: PgPool,
    namespace: Arc<str>,
}

impl fmt::Debug for PgLockManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgLockManager")
            .field("namespace", &self.namespace)
            .finish()
    }
}

type Conn = PoolConnection<Postgres>;

/// A connection being used to acquire: closed (not pooled) if the acquisition does not finish.
struct Acquiring {
    conn: Option<Conn>,
}

impl Acquiring {
    /// A failed acquisition gives back what it took before answering, so that nothing is held
    /// when the error is returned; the connection then goes back to the pool (or is closed if
    /// the unlock fails).
    async fn give_back(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock_all()")
                .execute(&mut *conn)
                .await;
            if unlocked.is_err() {
                drop(conn.detach());
            }
        }
    }
}

impl Drop for Acquiring {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Detached and dropped: the socket closes, the session ends, its locks go.
            drop(conn.detach());
        }
    }
}

fn lock_err(e: sqlx::Error) -> LockError {
    LockError::Backend(backend(e))
}

impl PgLockManager {
    /// `pool` should be dedicated to locks (each grant holds a connection for its life).
    pub fn new(pool: PgPool, namespace: impl Into<Arc<str>>) -> Self {
        PgLockManager {
            pool,
            namespace: namespace.into(),
        }
    }

    async fn lock_one(conn: &mut Conn, lock: i64, deadline: Instant) -> Result<i64, LockError> {
        let fast: Option<i64> = sqlx::query_scalar(
            "SELECT CASE WHEN pg_try_advisory_lock($1) THEN nextval('lock_fencing_seq') END",
        )
        .bind(lock)
        .fetch_one(&mut **conn)
        .await
        .map_err(lock_err)?;
        if let Some(token) = fast {
            return Ok(token);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(LockError::Timeout);
        }
        sqlx::query("SELECT set_config('lock_timeout', $1, false)")
            .bind(format!("{}ms", left.as_millis().max(1)))
            .execute(&mut **conn)
            .await
            .map_err(lock_err)?;
        match sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(lock)
            .execute(&mut **conn)
            .await
        {
            Ok(_) => {}
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("55P03") => {
                // Granted just as it timed out? Give it back: a time-out holds nothing.
                let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(lock)
                    .execute(&mut **conn)
                    .await;
                return Err(LockError::Timeout);
            }
            Err(e) => return Err(lock_err(e)),
        }
        sqlx::query_scalar("SELECT nextval('lock_fencing_seq')")
            .fetch_one(&mut **conn)
            .await
            .map_err(lock_err)
    }
}

#[async_trait]
impl LockManager for PgLockManager {
    async fn acquire(
        &self,
        keys: &[LockKey],
        options: LockOptions,
    ) -> Result<LockGuard, LockError> {
        let deadline = Instant::now() + options.wait;
        // Sorted and de-duplicated by lock id (see the module docs).
        let mut wanted: Vec<(i64, LockKey)> = keys
            .iter()
            .map(|k| (lock_id(&self.namespace, k.as_str()), k.clone()))
            .collect();
        wanted.sort();
        let mut fences: Vec<Fence> = Vec::with_capacity(wanted.len());
        if wanted.is_empty() {
            return Ok(LockGuard::new(fences, Box::new(PgHeld::none())));
        }
        // Waiting for a connection is part of waiting for the lock (a hot key queues its waiters
        // in the pool first), but even a zero wait gets a moment to check one out and try.
        let checkout = options.wait.max(Duration::from_millis(500));
        let conn = tokio::time::timeout(checkout, self.pool.acquire())
            .await
            .map_err(|_| LockError::Timeout)?
            .map_err(|e| match e {
                sqlx::Error::PoolTimedOut => LockError::Timeout,
                e => lock_err(e),
            })?;
        let mut acquiring = Acquiring { conn: Some(conn) };
        let mut ids: Vec<i64> = wanted.iter().map(|(l, _)| *l).collect();
        ids.dedup();
        // Fast path: try every lock in one round trip, in id order.
        let tried: Vec<(i64, Option<i64>)> = {
            let conn = acquiring.conn.as_mut().ok_or(LockError::Timeout)?;
            sqlx::query_as(
                "SELECT k, CASE WHEN pg_try_advisory_lock(k) THEN nextval('lock_fencing_seq') END
                 FROM unnest($1::bigint[]) WITH ORDINALITY AS t(k, n) ORDER BY n",
            )
            .bind(&ids)
            .fetch_all(&mut **conn)
            .await
            .map_err(lock_err)?
        };
        let first_busy = tried.iter().position(|(_, t)| t.is_none());
        let mut tokens: std::collections::HashMap<i64, i64> = std::collections::HashMap::new();
        if let Some(busy) = first_busy {
            // Keep the prefix before the first busy lock; give back any later one taken, so that
            // locks are only ever waited for in id order (no cycle is possible).
            let later: Vec<i64> = tried[busy..]
                .iter()
                .filter(|(_, t)| t.is_some())
                .map(|(k, _)| *k)
                .collect();
            let conn = acquiring.conn.as_mut().ok_or(LockError::Timeout)?;
            if !later.is_empty() {
                sqlx::query("SELECT pg_advisory_unlock(k) FROM unnest($1::bigint[]) AS t(k)")
                    .bind(&later)
                    .execute(&mut **conn)
                    .await
                    .map_err(lock_err)?;
            }
            tokens.extend(tried[..busy].iter().filter_map(|(k, t)| t.map(|t| (*k, t))));
            for (lock, _) in &tried[busy..] {
                let conn = acquiring.conn.as_mut().ok_or(LockError::Timeout)?;
                match Self::lock_one(conn, *lock, deadline).await {
                    Ok(t) => {
                        tokens.insert(*lock, t);
                    }
                    Err(e) => {
                        acquiring.give_back().await;
                        return Err(e);
                    }
                }
            }
        } else {
            tokens.extend(tried.iter().filter_map(|(k, t)| t.map(|t| (*k, t))));
        }
        for (lock, key) in wanted {
            let token = tokens
                .get(&lock)
                .copied()
                .and_then(|t| u64::try_from(t).ok())
                .ok_or_else(|| LockError::Backend(backend("a lock came back without a token")))?;
            fences.push(Fence {
                key,
                token: FencingToken(token),
            });
        }
        fences.sort_by(|a, b| a.key.cmp(&b.key));
        fences.dedup_by(|a, b| a.key == b.key);
        let conn = acquiring.conn.take();
        Ok(LockGuard::new(
            fences,
            Box::new(PgHeld::new(conn, options.lease)),
        ))
    }
}

struct Shared {
    conn: Mutex<Option<Conn>>,
    lost: AtomicBool,
}

impl Shared {
    /// Unlocks everything the session holds and returns the connection to the pool; closes it
    /// instead if the unlock fails.
    async fn release(&self) -> Result<(), LockError> {
        let Some(mut conn) = self.conn.lock().await.take() else {
            return Ok(());
        };
        match sqlx::query("SELECT pg_advisory_unlock_all()")
            .execute(&mut *conn)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                drop(conn.detach());
                Err(lock_err(e))
            }
        }
    }
}

struct PgHeld {
    shared: Arc<Shared>,
    watchdog: Option<tokio::task::JoinHandle<()>>,
    released: bool,
}

impl fmt::Debug for PgHeld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgHeld")
            .field("lost", &self.shared.lost.load(Ordering::Relaxed))
            .finish()
    }
}

impl PgHeld {
    fn none() -> Self {
        PgHeld {
            shared: Arc::new(Shared {
                conn: Mutex::new(None),
                lost: AtomicBool::new(false),
            }),
            watchdog: None,
            released: true,
        }
    }

    fn new(conn: Option<Conn>, lease: Duration) -> Self {
        let shared = Arc::new(Shared {
            conn: Mutex::new(conn),
            lost: AtomicBool::new(false),
        });
        let s = shared.clone();
        let watchdog = tokio::spawn(async move {
            tokio::time::sleep(lease).await;
            s.lost.store(true, Ordering::SeqCst);
            if s.release().await.is_err() {
                tracing::warn!(
                    "a lapsed advisory-lock grant could not be unlocked; its connection was closed"
                );
            }
        });
        PgHeld {
            shared,
            watchdog: Some(watchdog),
            released: false,
        }
    }
}

impl Drop for PgHeld {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        if let Some(w) = self.watchdog.take() {
            w.abort();
        }
        let shared = self.shared.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let _ = shared.release().await;
                });
            }
            Err(_) => {
                // No runtime to run the unlock on: close the session instead.
                if let Ok(mut slot) = shared.conn.try_lock() {
                    if let Some(conn) = slot.take() {
                        drop(conn.detach());
                    }
                }
            }
        }
    }
}

#[async_trait]
impl HeldLock for PgHeld {
    fn lease_lost(&self) -> bool {
        self.shared.lost.load(Ordering::SeqCst)
    }

    async fn release(mut self: Box<Self>) -> Result<(), LockError> {
        if let Some(w) = self.watchdog.take() {
            w.abort();
        }
        self.released = true;
        self.shared.release().await
    }
}
