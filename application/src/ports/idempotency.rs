//! The `IdempotencyStore` port: makes a request with a client-chosen key take effect at most
//! once and answer the same every time.
//!
//! # Contract (every adapter MUST)
//! - `begin` is atomic: of any number of concurrent `begin`s for one `(scope, key)` with no
//!   live record, exactly one gets [`Begin::Started`].
//! - A record in flight whose lease has not run out answers [`Begin::InProgress`] (with the
//!   time left) to a request with the same fingerprint, and [`Begin::Mismatch`] to one with a
//!   different fingerprint. A completed record answers [`Begin::Replay`] or `Mismatch` the same
//!   way until its TTL runs out.
//! - An in-flight record whose lease ran out (its holder died or hung) is taken over by the
//!   next `begin` with the same fingerprint, which gets a new ticket.
//! - `complete` and `abandon` act only if the record still belongs to the ticket: a ticket whose
//!   lease ran out and was taken over gets [`IdempotencyError::TicketLost`] and changes nothing.
//! - `abandon` deletes the in-flight record so that a retry runs at once.
//! - Records and keys of different scopes never see each other.

use super::error::BackendError;
use async_trait::async_trait;
use std::fmt;
use std::time::Duration;
use stockade_domain::IdempotencyKey;

/// Who the key belongs to (keys are scoped per user: `user:7`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope(pub String);

/// A digest of what the request asked for (operation + canonical command).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub String);

/// Proof that the caller holds an in-flight record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub scope: Scope,
    pub key: IdempotencyKey,
    /// Unique per `begin` that answered `Started`.
    pub owner: String,
}

/// A recorded outcome: `ok` with the JSON of the result, or not `ok` with the JSON of
/// `{code, message}`. Adapters store and return the bytes unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOutcome {
    pub ok: bool,
    pub body: Vec<u8>,
}

/// One claim of [`IdempotencyStore::begin_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub scope: Scope,
    pub key: IdempotencyKey,
    pub fingerprint: Fingerprint,
}

/// What `begin` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The caller now holds the key: run the operation, then `complete` or `abandon`.
    Started(Ticket),
    /// The operation already finished with this outcome.
    Replay(StoredOutcome),
    /// The first request is still running; ask again after `retry_after`.
    InProgress { retry_after: Duration },
    /// The key was used for a different request.
    Mismatch,
}

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error("the in-flight record no longer belongs to this ticket")]
    TicketLost,
    #[error(transparent)]
    Unavailable(#[from] BackendError),
}

/// See the module docs for the contract.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait IdempotencyStore: Send + Sync + fmt::Debug {
    /// Claims `(scope, key)` for `lease`, or reports what holds it.
    async fn begin(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> Result<Begin, IdempotencyError>;

    /// Claims each of `claims` as [`Self::begin`] would, and answers each, in order. Two claims
    /// of one call for the same `(scope, key)` answer as two concurrent `begin`s would (one
    /// `Started` at most). This default runs the `begin`s concurrently; an adapter that can
    /// claim many keys in one round trip overrides it.
    async fn begin_many(
        &self,
        claims: &[Claim],
        lease: Duration,
    ) -> Vec<Result<Begin, IdempotencyError>> {
        futures::future::join_all(
            claims
                .iter()
                .map(|c| self.begin(&c.scope, &c.key, &c.fingerprint, lease)),
        )
        .await
    }

    /// Records the outcome, kept for `ttl`.
    async fn complete(
        &self,
        ticket: &Ticket,
        outcome: StoredOutcome,
        ttl: Duration,
    ) -> Result<(), IdempotencyError>;

    /// Records each outcome as [`Self::complete`] would, and answers each, in order. This
    /// default completes them concurrently; an adapter that can write many in one round trip
    /// overrides it.
    async fn complete_many(
        &self,
        outcomes: &[(Ticket, StoredOutcome)],
        ttl: Duration,
    ) -> Vec<Result<(), IdempotencyError>> {
        futures::future::join_all(
            outcomes
                .iter()
                .map(|(t, o)| self.complete(t, o.clone(), ttl)),
        )
        .await
    }

    /// Gives the key up so that a retry runs.
    async fn abandon(&self, ticket: &Ticket) -> Result<(), IdempotencyError>;

    /// Deletes records whose TTL (or in-flight lease) ended; returns how many. Adapters whose
    /// backend expires records by itself return 0.
    async fn purge_expired(&self) -> Result<u64, IdempotencyError>;
}
