//! The Postgres write path: sections whose units run on the database, with the idempotency
//! outcomes in the same transaction as the writes they describe.
//!
//! Two ways to hold the keys:
//! - **On the lock's session** ([`PgSections::on_lock_sessions`]): the keys are session-level
//!   advisory locks of a [`PgLockManager`] on this database, and each unit of the section is a
//!   transaction on that very session. Nothing needs fencing (if the session dies, so does the
//!   transaction, and the locks with it); the grant's round trip opens the first transaction,
//!   a mid-section commit opens the next (`COMMIT; BEGIN`), and the last commit unlocks
//!   (`COMMIT; SELECT pg_advisory_unlock_all()`): a one-unit section costs its statements plus
//!   one round trip to lock and one to commit and unlock. Should the session be unavailable (its
//!   lease ran out), a unit runs on the store's pool with its fences checked instead.
//! - **Fenced** ([`PgSections::fenced`]): the keys come from any lock manager (Redlock, say) and
//!   each unit, on the store's pool, checks the grant's fencing tokens first.
//!
//! Either way, with [`PgSections::recording_outcomes`] the section's last unit completes the
//! idempotency records of the requests it answers before it commits, so a crash can never leave
//! an effect without its record or a record without its effect.

use crate::error::store_error;
use crate::lock::{HostedSession, PgHeld, PgLockManager};
use crate::store::{PgUnit, Tx};
use crate::PgStore;
use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::lock::{
    Fence, LockError, LockGuard, LockKey, LockManager, LockOptions,
};
use stockade_application::ports::section::{Outcomes, Section, Sections};
use stockade_application::ports::store::{StoreError, UnitOfWork};

/// How long a unit waits for its section's session to come back from the last unit's rollback
/// before it runs on the pool, fenced.
const SESSION_WAIT: Duration = Duration::from_secs(1);

/// The Postgres [`Sections`]. See the module docs.
#[derive(Clone)]
pub struct PgSections {
    store: PgStore,
    locks: Locks,
    records: bool,
}

#[derive(Clone)]
enum Locks {
    Sessions(PgLockManager),
    Other(Arc<dyn LockManager>),
}

impl fmt::Debug for PgSections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSections")
            .field(
                "on_lock_sessions",
                &matches!(self.locks, Locks::Sessions(_)),
            )
            .field("records", &self.records)
            .finish()
    }
}

impl PgSections {
    /// Sections whose units run on the sessions holding `locks`' advisory locks. Only for a
    /// lock manager on `store`'s database and schema, with synchronous commits: its pool then
    /// serves the units too, so size it for them.
    pub fn on_lock_sessions(store: PgStore, locks: PgLockManager) -> Self {
        locks.host_units();
        PgSections {
            store,
            locks: Locks::Sessions(locks),
            records: false,
        }
    }

    /// Sections whose keys come from `locks`, with units on `store`'s pool that check the
    /// grant's fencing tokens.
    pub fn fenced(store: PgStore, locks: Arc<dyn LockManager>) -> Self {
        PgSections {
            store,
            locks: Locks::Other(locks),
            records: false,
        }
    }

    /// Records the outcomes a section's last unit answers in that unit's transaction. Only
    /// where the idempotency records are a [`crate::PgIdempotencyStore`]'s on the same
    /// database and schema.
    #[must_use]
    pub fn recording_outcomes(mut self) -> Self {
        self.records = true;
        self
    }
}

#[async_trait]
impl Sections for PgSections {
    async fn enter(
        &self,
        keys: &[LockKey],
        options: LockOptions,
    ) -> Result<Box<dyn Section>, LockError> {
        let grant = match &self.locks {
            Locks::Sessions(locks) => {
                let (fences, held) = locks.grant(keys, options).await?;
                Grant::Session { fences, held }
            }
            Locks::Other(locks) => Grant::Guard(locks.acquire(keys, options).await?),
        };
        Ok(Box::new(PgSection {
            unit: None,
            grant,
            store: self.store.clone(),
            records: self.records,
        }))
    }
}

/// How a section holds its keys.
enum Grant {
    Session { fences: Vec<Fence>, held: PgHeld },
    Guard(LockGuard),
}

impl Grant {
    fn fences(&self) -> &[Fence] {
        match self {
            Grant::Session { fences, .. } => fences,
            Grant::Guard(guard) => guard.fences(),
        }
    }

    async fn release(self) {
        let released = match self {
            Grant::Session { held, .. } => held.end().await,
            Grant::Guard(guard) => guard.release().await,
        };
        if let Err(e) = released {
            tracing::warn!(error = %e, "lock release failed; its lease will end it");
        }
    }
}

/// Fields drop in order: an open unit is rolled back before the grant is released.
struct PgSection {
    unit: Option<PgUnit>,
    grant: Grant,
    store: PgStore,
    records: bool,
}

impl fmt::Debug for PgSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSection")
            .field("keys", &self.grant.fences().len())
            .field("open", &self.unit.is_some())
            .finish()
    }
}

async fn commit(unit: PgUnit) -> Result<(), StoreError> {
    match unit.tx {
        Tx::Pooled(tx) => tx.commit().await.map_err(store_error),
        Tx::Hosted(hosted) => hosted.commit().await.map_err(store_error),
    }
}

#[async_trait]
impl Section for PgSection {
    fn lease_lost(&self) -> bool {
        match &self.grant {
            Grant::Session { held, .. } => held.lost(),
            Grant::Guard(guard) => guard.check().is_err(),
        }
    }

    async fn begin(&mut self) -> Result<&mut dyn UnitOfWork, StoreError> {
        self.unit = None;
        let hosted = match &self.grant {
            Grant::Session { held, fences } => {
                // The last unit's rollback may still be on its way back to the session (it runs
                // in the background): wait for it a moment rather than run a unit that the
                // session's locks would not protect.
                let mut waited = Duration::ZERO;
                loop {
                    if held.lost() {
                        // The session gave its locks up; a newer holder's hosted units write
                        // no fence, so a fenced unit could not tell that it is stale.
                        return Err(StoreError::StaleFence {
                            key: fences
                                .first()
                                .map(|f| f.key.to_string())
                                .unwrap_or_default(),
                        });
                    }
                    if let Some(hosted) = HostedSession::begin(held).await.map_err(store_error)? {
                        break Some(hosted);
                    }
                    if waited >= SESSION_WAIT {
                        break None;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    waited += Duration::from_millis(2);
                }
            }
            Grant::Guard(_) => None,
        };
        let unit = match hosted {
            Some(hosted) => PgUnit {
                tx: Tx::Hosted(hosted),
            },
            None => {
                // Not on the lock's session (another lock manager's grant, or the session is
                // gone): a unit of the pool, fenced.
                let mut unit = self.store.unit().await?;
                unit.check_fences(self.grant.fences()).await?;
                unit
            }
        };
        Ok(self.unit.insert(unit))
    }

    fn rollback(&mut self) {
        self.unit = None;
    }

    async fn commit(&mut self) -> Result<(), StoreError> {
        match self.unit.take() {
            Some(unit) => commit(unit).await,
            None => Ok(()),
        }
    }

    async fn finish(self: Box<Self>, outcomes: Outcomes<'_>) -> Result<bool, StoreError> {
        let PgSection {
            grant,
            unit,
            records,
            ..
        } = *self;
        let recording = records && !outcomes.items.is_empty();
        let Some(mut unit) = unit else {
            // Nothing to commit, so nothing recorded.
            grant.release().await;
            return Ok(false);
        };
        {
            if recording {
                // Refused (the record was taken over): the unit rolls back as it drops, and the
                // grant is released in the background as it drops.
                unit.record_outcomes(outcomes.items, outcomes.ttl).await?;
            }
            match unit.tx {
                Tx::Hosted(hosted) => {
                    // Commit and unlock in one round trip; the grant has nothing left to
                    // unlock after it, and its end only stops the lease's watchdog.
                    hosted.commit_and_unlock().await.map_err(store_error)?;
                }
                tx => commit(PgUnit { tx }).await?,
            }
        }
        grant.release().await;
        Ok(records)
    }

    async fn leave(self: Box<Self>) {
        let PgSection { grant, unit, .. } = *self;
        drop(unit);
        grant.release().await;
    }
}
