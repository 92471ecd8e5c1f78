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
//! is kept for the next grant only after `pg_advisory_unlock_all()` succeeded on it, parked by
//! the manager rather than given back to the pool, so that no grant pays for the check sqlx
//! makes of every connection returned to it (`sessions.rs`). If the unlock fails, or the grant
//! is dropped where nothing can run it, the connection is closed instead, which ends the
//! session and frees its locks.
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
//!
//! ## Files
//! This module acquires (ids, the fast path, waiting); [`held`] keeps a grant once acquired (its
//! session's slot, the watchdog, the release); [`hosted`] runs a unit of work's transaction on
//! that session.

mod held;
mod hosted;

pub(crate) use held::PgHeld;
pub(crate) use hosted::HostedSession;

use crate::error::backend;
use crate::sessions::{Session, Sessions};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::lock::{
    Fence, FencingToken, LockError, LockGuard, LockKey, LockManager, LockOptions,
};
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
    sessions: Sessions,
    namespace: Arc<str>,
    /// Identifies this manager's grants (shared by its clones).
    scope: Arc<Scope>,
}

/// Says whether units of work run on the manager's sessions ([`crate::PgSections`]): then each
/// grant's session opens the first unit's transaction in the grant's own round trip.
#[derive(Debug, Default)]
pub(crate) struct Scope {
    hosted: AtomicBool,
}

impl fmt::Debug for PgLockManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgLockManager")
            .field("namespace", &self.namespace)
            .finish()
    }
}

pub(super) type Conn = Session;

/// A connection being used to acquire or release: closed (not pooled) if the work does not
/// finish.
pub(super) struct Acquiring {
    pub(super) conn: Option<Conn>,
}

impl Acquiring {
    /// A failed acquisition gives back what it took before answering, so that nothing is held
    /// when the error is returned; the connection is then parked (or closed if
    /// the unlock fails).
    pub(super) async fn give_back(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            let unlocked = sqlx::query!("SELECT pg_advisory_unlock_all()")
                .execute(&mut *conn)
                .await;
            if unlocked.is_ok() {
                conn.park();
            }
        }
    }
}

impl Drop for Acquiring {
    fn drop(&mut self) {
        // Dropped unparked: the socket closes, the session ends, its locks go.
        drop(self.conn.take());
    }
}

pub(super) fn lock_err(e: sqlx::Error) -> LockError {
    LockError::Backend(backend(e))
}

impl PgLockManager {
    /// `pool` must be dedicated to locks: each grant holds a connection for its life, and the
    /// manager keeps connections checked out between grants (see `sessions.rs`).
    pub fn new(pool: PgPool, namespace: impl Into<Arc<str>>) -> Self {
        PgLockManager {
            sessions: Sessions::own(pool, "locks"),
            namespace: namespace.into(),
            scope: Arc::new(Scope::default()),
        }
    }

    /// From now on each grant opens a transaction for the first unit of work run on its
    /// session ([`crate::PgSections`]).
    pub(crate) fn host_units(&self) {
        self.scope.hosted.store(true, Ordering::Relaxed);
    }

    async fn lock_one(conn: &mut Conn, lock: i64, deadline: Instant) -> Result<i64, LockError> {
        let fast = sqlx::query_scalar!(
            "SELECT CASE WHEN pg_try_advisory_lock($1) THEN nextval('lock_fencing_seq') END",
            lock,
        )
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
        sqlx::query!(
            "SELECT set_config('lock_timeout', $1, false)",
            format!("{}ms", left.as_millis().max(1)),
        )
        .fetch_one(&mut **conn)
        .await
        .map_err(lock_err)?;
        let waited = sqlx::query!("SELECT pg_advisory_lock($1)", lock)
            .execute(&mut **conn)
            .await;
        // The session may host units of work next (PgSections::on_lock_sessions), whose row locks
        // must not inherit this wait's time-out.
        sqlx::Executor::execute(&mut **conn, "RESET lock_timeout")
            .await
            .map_err(lock_err)?;
        match waited {
            Ok(_) => {}
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("55P03") => {
                // Granted just as it timed out? Give it back: a time-out holds nothing.
                let _ = sqlx::query!("SELECT pg_advisory_unlock($1)", lock)
                    .fetch_one(&mut **conn)
                    .await;
                return Err(LockError::Timeout);
            }
            Err(e) => return Err(lock_err(e)),
        }
        sqlx::query_scalar!(r#"SELECT nextval('lock_fencing_seq') AS "token!""#)
            .fetch_one(&mut **conn)
            .await
            .map_err(lock_err)
    }
}

/// A lock id the fast path tried, with its fencing token if it was granted.
#[derive(Debug, sqlx::FromRow)]
struct Tried {
    k: i64,
    token: Option<i64>,
}

/// The fast path's one round trip inside a new transaction: `BEGIN` and the tries as one simple
/// query (the ids are integers, written into it as an array literal). The session-level locks
/// and the fencing values taken do not depend on that transaction: they stay if it is rolled
/// back.
async fn try_all_in_transaction(
    conn: &mut Conn,
    ids: &[i64],
) -> Result<Vec<(i64, Option<i64>)>, LockError> {
    use sqlx::FromRow;
    // A simple query takes no bound parameters, and binding them would cost the round trip
    // this path exists to save: the ids (integers the manager computed, never caller text) are
    // written into the statement, the one statement of the adapter built this way (ADR 0015).
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let sql = format!(
        "BEGIN; SELECT k, CASE WHEN pg_try_advisory_lock(k) THEN nextval('lock_fencing_seq') END AS token
         FROM unnest('{{{list}}}'::bigint[]) WITH ORDINALITY AS t(k, n) ORDER BY n"
    );
    let rows = sqlx::Executor::fetch_all(&mut **conn, sql.as_str())
        .await
        .map_err(lock_err)?;
    rows.iter()
        .map(|row| Tried::from_row(row).map(|t| (t.k, t.token)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(lock_err)
}

#[async_trait]
impl LockManager for PgLockManager {
    async fn acquire(
        &self,
        keys: &[LockKey],
        options: LockOptions,
    ) -> Result<LockGuard, LockError> {
        let (fences, held) = self.grant(keys, options).await?;
        Ok(LockGuard::new(fences, Box::new(held)))
    }
}

impl PgLockManager {
    /// [`LockManager::acquire`], with the grant as it is (for [`crate::PgSections`], which
    /// runs units on its session).
    pub(crate) async fn grant(
        &self,
        keys: &[LockKey],
        options: LockOptions,
    ) -> Result<(Vec<Fence>, PgHeld), LockError> {
        let deadline = Instant::now() + options.wait;
        // Sorted and de-duplicated by lock id (see the module docs).
        let mut wanted: Vec<(i64, LockKey)> = keys
            .iter()
            .map(|k| (lock_id(&self.namespace, k.as_str()), k.clone()))
            .collect();
        wanted.sort();
        let mut fences: Vec<Fence> = Vec::with_capacity(wanted.len());
        if wanted.is_empty() {
            return Ok((fences, PgHeld::none()));
        }
        // Waiting for a connection is part of waiting for the lock (a hot key queues its waiters
        // in the pool first), but even a zero wait gets a moment to check one out and try.
        let checkout = options.wait.max(Duration::from_millis(500));
        let conn = tokio::time::timeout(checkout, self.sessions.acquire())
            .await
            .map_err(|_| LockError::Timeout)?
            .map_err(|e| match e {
                sqlx::Error::PoolTimedOut => LockError::Timeout,
                e => lock_err(e),
            })?;
        let mut acquiring = Acquiring { conn: Some(conn) };
        let mut ids: Vec<i64> = wanted.iter().map(|(l, _)| *l).collect();
        ids.dedup();
        // Fast path: try every lock in one round trip, in id order; where a store hosts units
        // on this manager's sessions, the same round trip opens the first unit's transaction.
        let mut ready = self.scope.hosted.load(Ordering::Relaxed);
        let tried: Vec<(i64, Option<i64>)> = {
            let conn = acquiring.conn.as_mut().ok_or(LockError::Timeout)?;
            if ready {
                try_all_in_transaction(conn, &ids).await?
            } else {
                sqlx::query!(
                    r#"SELECT k AS "k!", CASE WHEN pg_try_advisory_lock(k) THEN nextval('lock_fencing_seq') END AS token
                     FROM unnest($1::bigint[]) WITH ORDINALITY AS t(k, n) ORDER BY n"#,
                    &ids as &[i64],
                )
                .fetch_all(&mut **conn)
                .await
                .map_err(lock_err)?
                .into_iter()
                .map(|r| (r.k, r.token))
                .collect()
            }
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
            if ready {
                // A wait that times out would abort the transaction: wait outside one (session
                // locks and sequence values outlive the rollback).
                sqlx::Executor::execute(&mut **conn, "ROLLBACK")
                    .await
                    .map_err(lock_err)?;
                ready = false;
            }
            if !later.is_empty() {
                sqlx::query!(
                    "SELECT pg_advisory_unlock(k) FROM unnest($1::bigint[]) AS t(k)",
                    &later as &[i64],
                )
                .fetch_all(&mut **conn)
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
                    // A time-out leaves the session clean: unlock what it took and keep it. Any
                    // other error may have left it in an unknown state (a setting not reset, say):
                    // dropped, `acquiring` closes it, which frees its locks too.
                    Err(e @ LockError::Timeout) => {
                        acquiring.give_back().await;
                        return Err(e);
                    }
                    Err(e) => {
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
        Ok((fences, PgHeld::new(conn, ready, options.lease)))
    }
}
