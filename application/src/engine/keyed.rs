//! Idempotency at the use-case level (docs/decisions/0003): a library user gets it without
//! HTTP. Written once, as [`run_keyed`], and called by every use case that takes a key.

use super::combine::Lost;
use super::context::Context;
use super::outcome::{fingerprint, outcome_of, replay, Replayable, Settled};
use crate::error::{AppError, BackendError};
use crate::ports::idempotency::{Begin, Claim, IdempotencyError, Scope, StoredOutcome, Ticket};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use stockade_domain::{IdempotencyKey, UserId};

/// What makes a request keyed: whose it is, its key (none: the work simply runs once), the
/// operation and the command in a canonical text form (their digest is the fingerprint, so the
/// same key with a different command is refused), and whether the work runs detached from its
/// caller (see [`Context::detached`]).
#[derive(Debug)]
pub(crate) struct Keyed {
    pub(crate) user: UserId,
    pub(crate) key: Option<IdempotencyKey>,
    pub(crate) op: &'static str,
    pub(crate) canonical: String,
    pub(crate) detach: bool,
}

/// Runs `work` at most once per `(user, key)`; every retry with the same key gets the first
/// answer again.
///
/// `work` is given the context and the request's ticket, to record its outcome with the commit
/// of its writes where it can (it then says so in what it returns); the outcomes it did not
/// record are recorded here.
///
/// # Errors
/// The work's own errors, and the idempotency outcomes: `IDEMPOTENCY_KEY_REUSED`,
/// `REQUEST_IN_PROGRESS`, a replayed refusal.
pub(crate) async fn run_keyed<T, F, Fut>(
    ctx: &Arc<Context>,
    keyed: Keyed,
    work: F,
) -> Result<Replayable<T>, AppError>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    F: FnOnce(Arc<Context>, Option<Ticket>) -> Fut + Send + 'static,
    Fut: Future<Output = Settled<T>> + Send + 'static,
{
    if keyed.detach {
        ctx.detached(move |ctx| async move { keyed_here(&ctx, keyed, work).await })
            .await
    } else {
        keyed_here(ctx, keyed, work).await
    }
}

/// [`run_keyed`] in the caller's task.
async fn keyed_here<T, F, Fut>(
    ctx: &Arc<Context>,
    keyed: Keyed,
    work: F,
) -> Result<Replayable<T>, AppError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce(Arc<Context>, Option<Ticket>) -> Fut,
    Fut: Future<Output = Settled<T>>,
{
    let Keyed {
        user,
        key,
        op,
        canonical,
        ..
    } = keyed;
    let Some(key) = key else {
        return work(Arc::clone(ctx), None)
            .await
            .result
            .map(|value| Replayable {
                value,
                replayed: false,
            });
    };
    let scope = Scope(format!("user:{user}"));
    let fingerprint = fingerprint(op, &canonical);
    let begin = ctx
        .claim(Claim {
            scope,
            key,
            fingerprint,
        })
        .await?;
    let ticket = match begin {
        Begin::Started(ticket) => ticket,
        Begin::Replay(stored) => return replay(stored),
        Begin::InProgress { retry_after } => {
            return Err(AppError::RequestInProgress { retry_after })
        }
        Begin::Mismatch => return Err(AppError::IdempotencyKeyReused),
    };
    let Settled { result, recorded } = work(Arc::clone(ctx), Some(ticket.clone())).await;
    if recorded {
        // Committed together with the business write: nothing left to record.
        return result.map(|value| Replayable {
            value,
            replayed: false,
        });
    }
    let outcome = outcome_of(&result);
    let recorded = match outcome {
        Some(outcome) => ctx.complete(ticket.clone(), outcome).await,
        None => ctx.ports.idempotency.abandon(&ticket).await,
    };
    if let Err(e) = recorded {
        // The effect (if any) already happened; the answer stays true. A lost ticket means
        // a newer request owns the key and its outcome wins.
        tracing::warn!(error = %e, op, "idempotency outcome not recorded");
    }
    result.map(|value| Replayable {
        value,
        replayed: false,
    })
}

impl Context {
    /// Claims a key. Claims that arrive together are made together (`begin_many`, one round
    /// trip where the store can): the first of a burst starts at once, the ones arriving while
    /// it runs form the next batch.
    async fn claim(self: &Arc<Self>, claim: Claim) -> Result<Begin, AppError> {
        let ctx = Arc::clone(self);
        let begun = self
            .claims
            .submit((), claim, move |claims| {
                let ctx = ctx.clone();
                async move { ctx.claim_batch(claims).await }
            })
            .await
            .map_err(|Lost| AppError::Internal("the claim's batch failed".into()))?;
        Ok(begun?)
    }

    /// Records an outcome; outcomes that arrive together are recorded together
    /// (`complete_many`), as claims are.
    async fn complete(
        self: &Arc<Self>,
        ticket: Ticket,
        outcome: StoredOutcome,
    ) -> Result<(), IdempotencyError> {
        let ctx = Arc::clone(self);
        self.completions
            .submit((), (ticket, outcome), move |outcomes| {
                let ctx = ctx.clone();
                async move { ctx.complete_batch(outcomes).await }
            })
            .await
            .unwrap_or_else(|Lost| {
                Err(IdempotencyError::Unavailable(BackendError::new(
                    "idempotency",
                    "the outcome's batch failed",
                )))
            })
    }

    async fn complete_batch(
        &self,
        outcomes: Vec<(Ticket, StoredOutcome)>,
    ) -> Vec<Result<(), IdempotencyError>> {
        let ttl = self.settings.idempotency_ttl;
        let store = &self.ports.idempotency;
        if let [(ticket, outcome)] = outcomes.as_slice() {
            return vec![store.complete(ticket, outcome.clone(), ttl).await];
        }
        let answers = store.complete_many(&outcomes, ttl).await;
        one_each(answers, outcomes.len())
    }

    async fn claim_batch(&self, claims: Vec<Claim>) -> Vec<Result<Begin, IdempotencyError>> {
        metrics::histogram!("stockade_combine_batch_size", "use_case" => "idempotency_claim")
            .record(claims.len() as f64);
        let lease = self.settings.idempotency_lease;
        let store = &self.ports.idempotency;
        if let [one] = claims.as_slice() {
            return vec![
                store
                    .begin(&one.scope, &one.key, &one.fingerprint, lease)
                    .await,
            ];
        }
        let answers = store.begin_many(&claims, lease).await;
        one_each(answers, claims.len())
    }
}

/// Exactly `n` answers for a batch of `n`: an adapter that answered too few leaves the rest
/// unanswered (neither claimed nor recorded), one that answered too many is cut.
fn one_each<T>(
    mut answers: Vec<Result<T, IdempotencyError>>,
    n: usize,
) -> Vec<Result<T, IdempotencyError>> {
    while answers.len() < n {
        answers.push(Err(IdempotencyError::Unavailable(BackendError::new(
            "idempotency",
            "a request of the batch was not answered",
        ))));
    }
    answers.truncate(n);
    answers
}
