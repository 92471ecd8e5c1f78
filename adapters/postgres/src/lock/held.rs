//! A grant once acquired: its session parked in a slot that units of work borrow
//! ([`super::HostedSession`]), the watchdog that ends it when its lease runs out, and its release.

use super::{lock_err, Acquiring, Conn};
use async_trait::async_trait;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::lock::{HeldLock, LockError};

/// The session of one grant. While a unit of work runs on it (see [`super::HostedSession`]) the
/// connection is out of the slot; a release asked for meanwhile is done when it comes back.
#[derive(Default)]
struct Slot {
    conn: Option<Conn>,
    hosted: bool,
    release_pending: bool,
    /// The idle session has a transaction open with nothing done in it yet, for the next unit
    /// (opened by the grant, or by the last unit's commit).
    ready: bool,
}

/// Where a session lent to a unit of work is when it comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    /// Inside the unit's transaction, neither committed nor rolled back.
    Open,
    /// Inside a new transaction with nothing done in it yet.
    Ready,
    /// Outside any transaction.
    Closed,
}

/// What a grant and the units hosted on its session share: the session's slot, and whether the
/// grant was lost (its lease ran out, or its session broke).
pub(super) struct Shared {
    slot: parking_lot::Mutex<Slot>,
    lost: AtomicBool,
}

impl Shared {
    fn holding(conn: Option<Conn>, ready: bool) -> Arc<Self> {
        Arc::new(Shared {
            slot: parking_lot::Mutex::new(Slot {
                conn,
                ready,
                ..Slot::default()
            }),
            lost: AtomicBool::new(false),
        })
    }

    /// Unlocks everything the session holds and parks the connection for the next grant; closes it
    /// instead if the unlock fails. While a unit runs on the session, the release is left to
    /// the unit's end.
    async fn release(&self) -> Result<(), LockError> {
        let (conn, ready) = {
            let mut slot = self.slot.lock();
            if slot.hosted {
                slot.release_pending = true;
                return Ok(());
            }
            (slot.conn.take(), std::mem::take(&mut slot.ready))
        };
        match conn {
            Some(conn) => unlock_and_return(conn, ready).await,
            None => Ok(()),
        }
    }

    /// The unit hosted on the session ended the grant itself (committed and unlocked, or
    /// closed the session): nothing is lent any more, and no release is left to do.
    pub(super) fn end_hosting(&self) {
        let mut slot = self.slot.lock();
        slot.hosted = false;
        slot.release_pending = false;
    }

    /// Lends the session to a unit of work, unless another has it or it is gone; `true` with
    /// it if a transaction is already open on it for the unit.
    pub(super) fn lend(&self) -> Option<(Conn, bool)> {
        let mut slot = self.slot.lock();
        if slot.hosted || slot.release_pending {
            return None;
        }
        let conn = slot.conn.take()?;
        slot.hosted = true;
        Some((conn, std::mem::take(&mut slot.ready)))
    }

    /// A unit gives the session back. An open transaction is rolled back at once, in the
    /// background (the session stays lent until then), rather than left idle until the
    /// session's next use; a release asked for meanwhile happens after it.
    pub(super) fn give_back(shared: &Arc<Shared>, conn: Conn, after: After) {
        let mut slot = shared.slot.lock();
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            // No runtime to run anything on: close the session (its locks and transaction end).
            slot.hosted = false;
            slot.release_pending = true;
            drop(conn);
            return;
        };
        if after != After::Open && !slot.release_pending {
            slot.hosted = false;
            slot.ready = after == After::Ready;
            slot.conn = Some(conn);
            return;
        }
        drop(slot);
        let shared = shared.clone();
        handle.spawn(async move {
            let mut settling = Acquiring { conn: Some(conn) };
            let rolled_back = match settling.conn.as_mut() {
                Some(c) if after == After::Open => {
                    sqlx::Executor::execute(&mut **c, "ROLLBACK").await.is_ok()
                }
                _ => true,
            };
            // A ready transaction is still open; a rolled back one is not.
            let ready = after == After::Ready;
            if !rolled_back {
                // The session is broken: closing it (as `settling` drops) ends its locks, so the
                // grant is lost from here on.
                shared.lost.store(true, Ordering::SeqCst);
                shared.slot.lock().hosted = false;
                return;
            }
            let release = {
                let mut slot = shared.slot.lock();
                slot.hosted = false;
                if slot.release_pending {
                    slot.release_pending = false;
                    true
                } else {
                    slot.conn = settling.conn.take();
                    slot.ready = ready;
                    false
                }
            };
            if release {
                if let Some(conn) = settling.conn.take() {
                    let _ = unlock_and_return(conn, ready).await;
                }
            }
        });
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Never let a connection that may still hold locks be used again: dropped, it closes.
        drop(self.slot.get_mut().conn.take());
    }
}

/// Unlocks everything and parks the connection for the next grant; closes it instead if the unlock
/// fails, or if this future is dropped before it finished (a watchdog aborted mid-release): a
/// session that may still hold locks is never used again.
/// `ready`: a transaction with nothing in it is open on the session; it is rolled back in the
/// same round trip.
async fn unlock_and_return(conn: Conn, ready: bool) -> Result<(), LockError> {
    let mut closing = Acquiring { conn: Some(conn) };
    let conn = closing.conn.as_mut().ok_or(LockError::Timeout)?;
    if ready {
        sqlx::Executor::execute(&mut **conn, "ROLLBACK; SELECT pg_advisory_unlock_all()")
            .await
            .map_err(lock_err)?;
    } else {
        sqlx::query!("SELECT pg_advisory_unlock_all()")
            .execute(&mut **conn)
            .await
            .map_err(lock_err)?;
    }
    // Clean: parked for the next grant.
    if let Some(conn) = closing.conn.take() {
        conn.park();
    }
    Ok(())
}

pub(crate) struct PgHeld {
    pub(super) shared: Arc<Shared>,
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
    pub(super) fn none() -> Self {
        PgHeld {
            shared: Shared::holding(None, false),
            watchdog: None,
            released: true,
        }
    }

    /// `ready`: a transaction is open on the session for the first unit.
    pub(super) fn new(conn: Option<Conn>, ready: bool, lease: Duration) -> Self {
        let shared = Shared::holding(conn, ready);
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

    /// Whether the lease ran out (the watchdog released the locks).
    pub(crate) fn lost(&self) -> bool {
        self.shared.lost.load(Ordering::SeqCst)
    }

    /// Releases every key of the grant (see [`HeldLock::release`]).
    pub(crate) async fn end(mut self) -> Result<(), LockError> {
        if let Some(w) = self.watchdog.take() {
            w.abort();
        }
        self.released = true;
        self.shared.release().await
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
                // No runtime to run the unlock on: close the session instead (a unit still
                // running on it closes it when it ends, as the slot is dropped with it).
                let mut slot = shared.slot.lock();
                drop(slot.conn.take());
                slot.release_pending = true;
            }
        }
    }
}

#[async_trait]
impl HeldLock for PgHeld {
    fn lease_lost(&self) -> bool {
        self.lost()
    }

    async fn release(self: Box<Self>) -> Result<(), LockError> {
        (*self).end().await
    }
}
