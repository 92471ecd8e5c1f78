//! Connections an adapter keeps checked out between its uses, so that giving one back costs no
//! round trip.
//!
//! sqlx checks every connection given back to its pool with a round trip of its own (a `Sync`,
//! in a task of its own), because it cannot know whether its user dropped the connection in the
//! middle of an exchange. The lock manager and the idempotency claims do know: they give a
//! session back only after its last exchange was answered, and close it instead when an
//! exchange was cut off (a [`Session`] is given back only by [`Session::park`]; dropped, it
//! closes). [`Sessions`] keeps such sessions itself and hands them out again as they are.
//!
//! The pool must then be the adapter's own: a parked session is checked out as far as the pool
//! can tell, so another user of the same pool could wait for it. On a pool that others share,
//! [`Sessions::shared`] parks nothing and gives every session back to the pool as usual.
//!
//! A session parked for [`RECHECK`] or longer goes back through the pool (which checks it) rather
//! than being reused blind, so a session whose server went away while it sat parked is found out
//! as a pooled one would be.

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a session may stay parked and still be handed out without a check.
pub(crate) const RECHECK: Duration = Duration::from_secs(1);

/// A pool's connections as one adapter uses them. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Sessions {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    /// One per session in use: with the parked ones, never more than the pool's maximum, so a
    /// checkout that finds nothing parked always finds room in the pool.
    in_use: Arc<Semaphore>,
    /// Whether sessions are parked here at all (the pool is this adapter's own).
    parks: bool,
    parked: parking_lot::Mutex<Vec<(PoolConnection<Postgres>, Instant)>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let parked = std::mem::take(self.parked.get_mut());
        let in_runtime = tokio::runtime::Handle::try_current().is_ok();
        for (conn, _) in parked {
            if in_runtime {
                // Back to the pool, which checks it (in a task of its own).
                drop(conn);
            } else {
                // The pool's way back needs a runtime to run on: close it instead.
                drop(conn.detach());
            }
        }
    }
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("parks", &self.inner.parks)
            .field("parked", &self.inner.parked.lock().len())
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Sessions of a pool that only this adapter uses: they are parked between uses.
    pub(crate) fn own(pool: PgPool) -> Self {
        Self::with(pool, true)
    }

    /// Sessions of a pool shared with others: each goes back to the pool after use.
    pub(crate) fn shared(pool: PgPool) -> Self {
        Self::with(pool, false)
    }

    fn with(pool: PgPool, parks: bool) -> Self {
        let max = usize::try_from(pool.options().get_max_connections()).unwrap_or(usize::MAX);
        Sessions {
            inner: Arc::new(Inner {
                in_use: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
                pool,
                parks,
                parked: parking_lot::Mutex::new(Vec::new()),
            }),
        }
    }

    /// A session: the one parked last, or one from the pool. Waits as a pool checkout does, up
    /// to the pool's acquire time-out.
    ///
    /// # Errors
    /// `PoolTimedOut`, `PoolClosed`, or the pool's error opening a connection.
    pub(crate) async fn acquire(&self) -> Result<Session, sqlx::Error> {
        let wait = self.inner.pool.options().get_acquire_timeout();
        let permit = tokio::time::timeout(wait, self.inner.in_use.clone().acquire_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        loop {
            let parked = self.inner.parked.lock().pop();
            match parked {
                Some((conn, since)) if since.elapsed() < RECHECK => {
                    return Ok(self.session(conn, permit));
                }
                // Parked too long to trust: through the pool, which checks it (the others
                // below it were parked even longer).
                Some((conn, _)) => drop(conn),
                None => break,
            }
        }
        let conn = self.inner.pool.acquire().await?;
        Ok(self.session(conn, permit))
    }

    fn session(&self, conn: PoolConnection<Postgres>, permit: OwnedSemaphorePermit) -> Session {
        Session {
            conn: Some(conn),
            home: self.inner.clone(),
            _permit: permit,
        }
    }
}

/// One connection in use. [`Session::park`] gives it back for the next use; dropped without it,
/// the connection is closed (its server session ends, and with it any lock or transaction it
/// held).
pub(crate) struct Session {
    conn: Option<PoolConnection<Postgres>>,
    home: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Session {
    /// Gives the session back for reuse. Only for a session whose every exchange was answered
    /// and that holds nothing: no transaction open, no lock, no setting of its own.
    pub(crate) fn park(mut self) {
        if let Some(conn) = self.conn.take() {
            if self.home.parks {
                self.home.parked.lock().push((conn, Instant::now()));
            } else {
                // The pool checks it and takes it back.
                drop(conn);
            }
        }
    }
}

impl std::ops::Deref for Session {
    type Target = sqlx::PgConnection;
    fn deref(&self) -> &sqlx::PgConnection {
        match self.conn.as_ref() {
            Some(c) => c,
            None => unreachable!("a session keeps its connection until parked or dropped"),
        }
    }
}

impl std::ops::DerefMut for Session {
    fn deref_mut(&mut self) -> &mut sqlx::PgConnection {
        match self.conn.as_mut() {
            Some(c) => c,
            None => unreachable!("a session keeps its connection until parked or dropped"),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Detached from the pool and dropped: the socket closes, the server session ends.
            drop(conn.detach());
        }
    }
}
