//! The in-memory idempotency store: records with owner tickets, in-flight leases and TTLs on
//! the injected clock.

use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use stockade_application::ports::clock::{Clock, IdGenerator};
use stockade_application::ports::idempotency::{
    Begin, Fingerprint, IdempotencyError, IdempotencyStore, Scope, StoredOutcome, Ticket,
};
use stockade_domain::{IdempotencyKey, Timestamp};

enum Phase {
    InFlight {
        owner: String,
        lease_until: Timestamp,
    },
    Done {
        outcome: StoredOutcome,
        expires_at: Timestamp,
    },
}

struct Record {
    fingerprint: Fingerprint,
    phase: Phase,
}

impl Record {
    fn is_dead(&self, now: Timestamp) -> bool {
        match &self.phase {
            Phase::InFlight { lease_until, .. } => *lease_until <= now,
            Phase::Done { expires_at, .. } => *expires_at <= now,
        }
    }
}

/// The in-memory [`IdempotencyStore`].
#[derive(Clone)]
pub struct MemoryIdempotencyStore {
    records: Arc<Mutex<HashMap<(Scope, IdempotencyKey), Record>>>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
}

impl fmt::Debug for MemoryIdempotencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryIdempotencyStore")
            .field("records", &self.records.lock().len())
            .finish()
    }
}

impl MemoryIdempotencyStore {
    pub fn new(clock: Arc<dyn Clock>, ids: Arc<dyn IdGenerator>) -> Self {
        MemoryIdempotencyStore {
            records: Arc::default(),
            clock,
            ids,
        }
    }

    /// How many records are kept (live or not yet purged).
    pub fn len(&self) -> usize {
        self.records.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every record (the demo profile's reset).
    pub fn clear(&self) {
        self.records.lock().clear();
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotencyStore {
    async fn begin(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> Result<Begin, IdempotencyError> {
        let now = self.clock.now();
        let mut records = self.records.lock();
        let slot = (scope.clone(), key.clone());
        if let Some(record) = records.get(&slot) {
            let lapsed_in_flight = matches!(record.phase, Phase::InFlight { .. });
            if record.is_dead(now) && lapsed_in_flight && &record.fingerprint != fingerprint {
                // Only the same request may take over a lapsed in-flight key.
                return Ok(Begin::Mismatch);
            }
            if !record.is_dead(now) {
                if &record.fingerprint != fingerprint {
                    return Ok(Begin::Mismatch);
                }
                return Ok(match &record.phase {
                    Phase::Done { outcome, .. } => Begin::Replay(outcome.clone()),
                    Phase::InFlight { lease_until, .. } => Begin::InProgress {
                        retry_after: Duration::from_millis(
                            u64::try_from(lease_until.millis() - now.millis()).unwrap_or(1),
                        ),
                    },
                });
            }
        }
        let owner = self.ids.unique();
        records.insert(
            slot,
            Record {
                fingerprint: fingerprint.clone(),
                phase: Phase::InFlight {
                    owner: owner.clone(),
                    lease_until: now.plus_millis(millis(lease)),
                },
            },
        );
        Ok(Begin::Started(Ticket {
            scope: scope.clone(),
            key: key.clone(),
            owner,
        }))
    }

    async fn complete(
        &self,
        ticket: &Ticket,
        outcome: StoredOutcome,
        ttl: Duration,
    ) -> Result<(), IdempotencyError> {
        let now = self.clock.now();
        let mut records = self.records.lock();
        let slot = (ticket.scope.clone(), ticket.key.clone());
        let Some(record) = records.get_mut(&slot) else {
            return Err(IdempotencyError::TicketLost);
        };
        let owned =
            matches!(&record.phase, Phase::InFlight { owner, .. } if *owner == ticket.owner);
        if !owned {
            return Err(IdempotencyError::TicketLost);
        }
        record.phase = Phase::Done {
            outcome,
            expires_at: now.plus_millis(millis(ttl)),
        };
        Ok(())
    }

    async fn abandon(&self, ticket: &Ticket) -> Result<(), IdempotencyError> {
        let mut records = self.records.lock();
        let slot = (ticket.scope.clone(), ticket.key.clone());
        let owned = matches!(
            records.get(&slot),
            Some(Record { phase: Phase::InFlight { owner, .. }, .. }) if *owner == ticket.owner
        );
        if !owned {
            return Err(IdempotencyError::TicketLost);
        }
        records.remove(&slot);
        Ok(())
    }

    async fn purge_expired(&self) -> Result<u64, IdempotencyError> {
        let now = self.clock.now();
        let mut records = self.records.lock();
        let before = records.len();
        records.retain(|_, r| !r.is_dead(now));
        Ok((before - records.len()) as u64)
    }
}
