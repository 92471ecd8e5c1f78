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
//! as a pooled one would be, and the pool's idle time-out closes what a burst left over. So does
//! a session kept out of the pool for longer than the pool's `max_lifetime`, which the pool then
//! replaces.

use crate::waits::Checkout;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use std::collections::VecDeque;
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
    /// The pool's name in the wait metrics (`crate::waits`).
    name: &'static str,
    /// Where sessions are parked (the pool is this adapter's own): one permit per session in
    /// use, so that with the parked ones they never number more than the pool's maximum and a
    /// checkout that finds nothing parked always finds room in the pool (once the stale ones
    /// it handed back have been checked).
    in_use: Option<Arc<Semaphore>>,
    /// The latest parked last; each with when it was parked and since when it has been out of
    /// the pool.
    parked: parking_lot::Mutex<VecDeque<Parked>>,
}

struct Parked {
    conn: PoolConnection<Postgres>,
    at: Instant,
    out_since: Instant,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for parked in std::mem::take(self.parked.get_mut()) {
            hand_back(parked.conn);
        }
    }
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("parks", &self.inner.in_use.is_some())
            .field("parked", &self.inner.parked.lock().len())
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Sessions of a pool that only this adapter uses: they are parked between uses.
    pub(crate) fn own(pool: PgPool, name: &'static str) -> Self {
        Self::with(pool, name, true)
    }

    /// Sessions of a pool shared with others: each goes back to the pool after use.
    pub(crate) fn shared(pool: PgPool, name: &'static str) -> Self {
        Self::with(pool, name, false)
    }

    fn with(pool: PgPool, name: &'static str, parks: bool) -> Self {
        let max = usize::try_from(pool.options().get_max_connections()).unwrap_or(usize::MAX);
        Sessions {
            inner: Arc::new(Inner {
                in_use: parks
                    .then(|| Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS)))),
                pool,
                name,
                parked: parking_lot::Mutex::new(VecDeque::new()),
            }),
        }
    }

    /// A session: the one parked last, or one from the pool. Waits as a pool checkout does, up
    /// to the pool's acquire time-out.
    ///
    /// # Errors
    /// `PoolTimedOut`, `PoolClosed`, or the pool's error opening a connection.
    pub(crate) async fn acquire(&self) -> Result<Session, sqlx::Error> {
        let checkout = Checkout::start(self.inner.name);
        checkout.finish(self.checkout().await)
    }

    async fn checkout(&self) -> Result<Session, sqlx::Error> {
        let options = self.inner.pool.options();
        let Some(in_use) = &self.inner.in_use else {
            let conn = self.inner.pool.acquire().await?;
            return Ok(self.session(conn, Instant::now(), None));
        };
        let permit = tokio::time::timeout(
            options.get_acquire_timeout(),
            in_use.clone().acquire_owned(),
        )
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
        .map_err(|_| sqlx::Error::PoolClosed)?;
        let lifetime = options.get_max_lifetime();
        loop {
            let parked = self.inner.parked.lock().pop_back();
            match parked {
                Some(p)
                    if p.at.elapsed() < RECHECK
                        && lifetime.is_none_or(|l| p.out_since.elapsed() < l) =>
                {
                    return Ok(self.session(p.conn, p.out_since, Some(permit)));
                }
                // Parked too long to trust, or out of the pool past its lifetime: through the
                // pool, which checks it (or replaces it).
                Some(p) => hand_back(p.conn),
                None => break,
            }
        }
        let conn = self.inner.pool.acquire().await?;
        Ok(self.session(conn, Instant::now(), Some(permit)))
    }

    fn session(
        &self,
        conn: PoolConnection<Postgres>,
        out_since: Instant,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Session {
        Session {
            conn: Some(conn),
            out_since,
            home: self.inner.clone(),
            _permit: permit,
        }
    }
}

/// Gives a connection back to the pool, which checks it in a task of its own; outside a runtime,
/// where that task cannot run, closes it instead.
fn hand_back(conn: PoolConnection<Postgres>) {
    if tokio::runtime::Handle::try_current().is_ok() {
        drop(conn);
    } else {
        drop(conn.detach());
    }
}

/// One connection in use. [`Session::park`] gives it back for the next use; dropped without it,
/// the connection is closed (its server session ends, and with it any lock or transaction it
/// held).
pub(crate) struct Session {
    conn: Option<PoolConnection<Postgres>>,
    out_since: Instant,
    home: Arc<Inner>,
    _permit: Option<OwnedSemaphorePermit>,
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
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.home.in_use.is_none() {
            // The pool checks it and takes it back.
            hand_back(conn);
            return;
        }
        let mut stale = Vec::new();
        {
            let mut parked = self.home.parked.lock();
            // Those parked longest, left over from a burst, go back to the pool, whose idle
            // time-out may then close them.
            while parked.front().is_some_and(|p| p.at.elapsed() >= RECHECK) {
                stale.extend(parked.pop_front());
            }
            parked.push_back(Parked {
                conn,
                at: Instant::now(),
                out_since: self.out_since,
            });
        }
        for p in stale {
            hand_back(p.conn);
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
