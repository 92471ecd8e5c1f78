//! The `Sections` port: units of work under locks, the one write path of every use case.
//!
//! A use case that writes enters a [`Section`] over the lock keys its writes need, runs one or
//! more units of work in it, and finishes it: the last unit commits together with the
//! idempotency outcomes it answers (where the backend keeps them with the data), and the keys
//! are released. The order never varies (docs/decisions/0002): **locks → unit of work →
//! outcome → commit → release**.
//!
//! The application's own implementation ([`crate::FencedSections`]) takes the keys from a
//! [`LockManager`](crate::ports::lock::LockManager), begins units on a
//! [`Store`](crate::ports::store::Store) and checks the grant's fencing tokens in each unit. A
//! backend that can do better offers its own: Postgres runs the units on the session holding
//! its advisory locks and writes the outcomes in the same transaction.
//!
//! # Contract (every adapter MUST)
//! - Take the keys of one `enter` as [`LockManager::acquire`] does: sorted, all or nothing,
//!   bounded by [`LockOptions::wait`], cancel-safe, and never two sections over one key at once
//!   (within a lease).
//! - Protect every unit begun in the section: either its fences are checked in it (a holder
//!   whose lease ran out is refused with [`StoreError::StaleFence`]), or it runs where the lock
//!   cannot be lost while it does.
//! - Keep at most one unit open: [`Section::begin`] rolls back the one before, if still open.
//! - On [`Section::finish`], record the outcomes given in the same transaction as the unit's
//!   writes and answer `true`, or record nothing and answer `false` (the caller then records
//!   them after the commit). A record that no longer belongs to its ticket fails the finish
//!   with [`StoreError::TicketLost`], nothing committed.
//! - Release the keys when the section finishes or is left, and when it is dropped (in the
//!   background); once the commit succeeded, a failed release is the lease's to end, not an
//!   error.
//!
//! [`LockManager::acquire`]: crate::ports::lock::LockManager::acquire

use crate::ports::idempotency::{StoredOutcome, Ticket};
use crate::ports::lock::{LockError, LockKey, LockOptions};
use crate::ports::store::{StoreError, UnitOfWork};
use async_trait::async_trait;
use std::fmt;
use std::time::Duration;

/// Opens sections. See the module docs for the contract.
#[async_trait]
pub trait Sections: Send + Sync + fmt::Debug {
    /// Takes every key in `keys` (sorted and de-duplicated inside), or none.
    ///
    /// # Errors
    /// [`LockError::Timeout`] after `options.wait`; [`LockError::Backend`] when the backend
    /// fails.
    async fn enter(
        &self,
        keys: &[LockKey],
        options: LockOptions,
    ) -> Result<Box<dyn Section>, LockError>;
}

/// Idempotency outcomes a unit answers, to record with its commit.
#[derive(Debug, Clone, Copy)]
pub struct Outcomes<'a> {
    pub items: &'a [(Ticket, StoredOutcome)],
    /// How long each is replayed.
    pub ttl: Duration,
}

impl Outcomes<'_> {
    pub fn none() -> Outcomes<'static> {
        Outcomes {
            items: &[],
            ttl: Duration::ZERO,
        }
    }
}

/// Held keys, and the units of work run under them.
#[async_trait]
pub trait Section: Send + fmt::Debug {
    /// Whether the lease of any key ran out (the section must not commit any more).
    fn lease_lost(&self) -> bool;

    /// Begins a unit of work under the keys (rolling back one still open).
    ///
    /// # Errors
    /// [`StoreError::StaleFence`] when a newer holder has written under a key;
    /// [`StoreError::Unavailable`] when the store cannot be reached.
    async fn begin(&mut self) -> Result<&mut dyn UnitOfWork, StoreError>;

    /// Rolls back the open unit, if any, and keeps the keys.
    fn rollback(&mut self);

    /// Commits the open unit and keeps the keys (for work that spans several units, such as a
    /// payment saga).
    ///
    /// # Errors
    /// The commit's failure; nothing of the unit is kept then.
    async fn commit(&mut self) -> Result<(), StoreError>;

    /// Commits the open unit with `outcomes` (see the contract) and releases the keys, in one
    /// step where the backend can. Answers whether the outcomes were recorded.
    ///
    /// # Errors
    /// [`StoreError::TicketLost`], or the commit's failure; nothing of the unit is kept then,
    /// and the keys are released all the same.
    async fn finish(self: Box<Self>, outcomes: Outcomes<'_>) -> Result<bool, StoreError>;

    /// Rolls back the open unit, if any, and releases the keys.
    async fn leave(self: Box<Self>);
}
