//! The generic write path: sections over any lock manager and any store.

use super::outcome::Answered;
use crate::error::AppError;
use crate::ports::idempotency::{StoredOutcome, Ticket};
use crate::ports::lock::{LockError, LockGuard, LockKey, LockManager, LockOptions};
use crate::ports::section::{Outcomes, Section, Sections};
use crate::ports::store::{Store, StoreError, UnitOfWork};
use async_trait::async_trait;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// [`Sections`] from a [`LockManager`] and a [`Store`]: each unit begins by checking the
/// grant's fencing tokens, so a holder whose lease ran out cannot overwrite newer work.
/// Outcomes are not recorded with the commit (the caller records them after it).
#[derive(Debug, Clone)]
pub struct FencedSections {
    locks: Arc<dyn LockManager>,
    store: Arc<dyn Store>,
}

impl FencedSections {
    pub fn new(locks: Arc<dyn LockManager>, store: Arc<dyn Store>) -> Self {
        FencedSections { locks, store }
    }
}

#[async_trait]
impl Sections for FencedSections {
    async fn enter(
        &self,
        keys: &[LockKey],
        options: LockOptions,
    ) -> Result<Box<dyn Section>, LockError> {
        let guard = self.locks.acquire(keys, options).await?;
        Ok(Box::new(FencedSection {
            unit: None,
            guard,
            store: self.store.clone(),
        }))
    }
}

/// A grant and the unit open under it. Fields drop in order: an open unit is rolled back
/// before the grant is released.
struct FencedSection {
    unit: Option<Box<dyn UnitOfWork>>,
    guard: LockGuard,
    store: Arc<dyn Store>,
}

impl fmt::Debug for FencedSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FencedSection")
            .field("guard", &self.guard)
            .field("open", &self.unit.is_some())
            .finish()
    }
}

impl FencedSection {
    async fn commit_open(&mut self) -> Result<(), StoreError> {
        match self.unit.take() {
            Some(unit) => unit.commit().await,
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Section for FencedSection {
    fn lease_lost(&self) -> bool {
        self.guard.check().is_err()
    }

    async fn begin(&mut self) -> Result<&mut dyn UnitOfWork, StoreError> {
        self.unit = None;
        let mut unit = self.store.begin().await?;
        unit.check_fences(self.guard.fences()).await?;
        Ok(&mut **self.unit.insert(unit))
    }

    fn rollback(&mut self) {
        self.unit = None;
    }

    async fn commit(&mut self) -> Result<(), StoreError> {
        self.commit_open().await
    }

    async fn finish(mut self: Box<Self>, _outcomes: Outcomes<'_>) -> Result<bool, StoreError> {
        let committed = self.commit_open().await;
        let FencedSection { guard, .. } = *self;
        if committed.is_ok() {
            if let Err(e) = guard.release().await {
                tracing::warn!(error = %e, "lock release failed; its lease will end it");
            }
        }
        // A failed commit leaves the guard to its drop, which releases in the background.
        committed.map(|()| false)
    }

    async fn leave(self: Box<Self>) {
        let FencedSection { guard, unit, .. } = *self;
        drop(unit);
        if let Err(e) = guard.release().await {
            tracing::warn!(error = %e, "lock release failed; its lease will end it");
        }
    }
}

/// A use case's section: the application's side of the write path. Every write goes
/// **enter (locks) → begin (unit of work) → write → finish (outcome, commit, release)**; a
/// section whose lease ran out refuses to begin or commit.
pub(crate) struct Guarded {
    pub(crate) section: Box<dyn Section>,
    /// How long recorded outcomes are replayed.
    pub(crate) ttl: std::time::Duration,
}

impl Guarded {
    fn check(&self) -> Result<(), AppError> {
        if self.section.lease_lost() {
            Err(LockError::LeaseLost.into())
        } else {
            Ok(())
        }
    }

    /// Begins a unit of work under the section's keys.
    pub(crate) async fn begin(&mut self) -> Result<&mut dyn UnitOfWork, AppError> {
        self.check()?;
        Ok(self.section.begin().await?)
    }

    /// Rolls back the open unit (if any) and keeps the keys.
    pub(crate) fn rollback(&mut self) {
        self.section.rollback();
    }

    /// Commits the open unit and keeps the keys.
    pub(crate) async fn commit(&mut self) -> Result<(), AppError> {
        self.check()?;
        Ok(self.section.commit().await?)
    }

    /// Commits the open unit and releases the keys.
    pub(crate) async fn finish(self) -> Result<(), AppError> {
        self.finish_recording(&[]).await??;
        Ok(())
    }

    /// Commits the open unit with the outcomes of the requests it answers and releases the
    /// keys; answers whether the outcomes were recorded with the commit. The store's refusal
    /// comes back as it is (a lost ticket means something else in a combined turn than alone).
    pub(crate) async fn finish_recording(
        self,
        outcomes: &[(Ticket, StoredOutcome)],
    ) -> Result<Result<bool, StoreError>, AppError> {
        self.check()?;
        let outcomes = Outcomes {
            items: outcomes,
            ttl: self.ttl,
        };
        Ok(self.section.finish(outcomes).await)
    }

    /// Commits the open unit, whose success answers the keyed request holding `ticket` (if
    /// any) with `answer`, and releases the keys. The answer comes back marked with whether
    /// its outcome was recorded with the commit (a crash can then never separate the effect
    /// from its record).
    pub(crate) async fn answer<T: Serialize>(
        self,
        ticket: Option<&Ticket>,
        answer: T,
    ) -> Result<Answered<T>, AppError> {
        let mut outcomes = Vec::new();
        if let Some(ticket) = ticket {
            let body = serde_json::to_vec(&answer)
                .map_err(|e| AppError::Internal(format!("answer not serialisable: {e}")))?;
            outcomes.push((ticket.clone(), StoredOutcome { ok: true, body }));
        }
        let recorded = self.finish_recording(&outcomes).await?? && !outcomes.is_empty();
        Ok(Answered {
            value: answer,
            recorded,
        })
    }

    /// Rolls back the open unit and releases the keys now.
    pub(crate) async fn leave(self) {
        self.section.leave().await;
    }
}
