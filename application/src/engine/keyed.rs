//! Idempotency at the use-case level (docs/decisions/0003): a library user gets it without
//! HTTP. Written once, as [`run_keyed`], and called by every use case that takes a key.

use super::combine::Lost;
use super::context::Context;
use crate::error::{AppError, BackendError};
use crate::ports::idempotency::{
    Begin, Claim, Fingerprint, IdempotencyError, Scope, StoredOutcome, Ticket,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::Arc;
use stockade_domain::{ErrorCode, IdempotencyKey, UserId};

/// A use case's answer, and whether its idempotency outcome was recorded with the commit that
/// produced it (see `Guarded::answer`).
#[derive(Debug)]
pub(crate) struct Answered<T> {
    pub(crate) value: T,
    pub(crate) recorded: bool,
}

/// How a keyed request's work ended: its result, and whether the result's outcome is already
/// recorded (committed with the work's writes), so that [`run_keyed`] records only
/// what is not.
#[derive(Debug)]
pub(crate) struct Settled<T> {
    pub(crate) result: Result<T, AppError>,
    pub(crate) recorded: bool,
}

impl<T> Settled<T> {
    /// A result whose outcome the work did not record.
    pub(crate) fn unrecorded(result: Result<T, AppError>) -> Self {
        Settled {
            result,
            recorded: false,
        }
    }
}

impl<T> From<Result<Answered<T>, AppError>> for Settled<T> {
    fn from(result: Result<Answered<T>, AppError>) -> Self {
        match result {
            Ok(a) => Settled {
                result: Ok(a.value),
                recorded: a.recorded,
            },
            Err(e) => Settled::unrecorded(Err(e)),
        }
    }
}

/// A use case's answer, and whether it is the replay of an earlier request's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayable<T> {
    pub value: T,
    pub replayed: bool,
}

#[derive(Serialize, Deserialize)]
struct StoredFailure {
    code: String,
    message: String,
}

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

/// The outcome an idempotency record keeps for `result`: a success, or a business refusal;
/// `None` for what a retry may change (time-outs, unavailability).
pub(crate) fn outcome_of<T: Serialize>(result: &Result<T, AppError>) -> Option<StoredOutcome> {
    match result {
        Ok(value) => serde_json::to_vec(value)
            .map(|body| StoredOutcome { ok: true, body })
            .ok(),
        Err(e) if e.is_business_outcome() => serde_json::to_vec(&StoredFailure {
            code: e.code().as_str().to_owned(),
            message: e.to_string(),
        })
        .map(|body| StoredOutcome { ok: false, body })
        .ok(),
        Err(_) => None,
    }
}

fn fingerprint(op: &str, canonical: &str) -> Fingerprint {
    let mut hasher = Sha256::new();
    hasher.update(op.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical.as_bytes());
    let digest = hasher.finalize();
    Fingerprint(digest.iter().map(|b| format!("{b:02x}")).collect())
}

fn replay<T: DeserializeOwned>(stored: StoredOutcome) -> Result<Replayable<T>, AppError> {
    let broken =
        |e: serde_json::Error| AppError::Internal(format!("stored outcome unreadable: {e}"));
    if stored.ok {
        let value = serde_json::from_slice(&stored.body).map_err(broken)?;
        Ok(Replayable {
            value,
            replayed: true,
        })
    } else {
        let failure: StoredFailure = serde_json::from_slice(&stored.body).map_err(broken)?;
        let code = ErrorCode::parse(&failure.code)
            .ok_or_else(|| AppError::Internal(format!("unknown stored code {}", failure.code)))?;
        Err(AppError::Replayed {
            code,
            message: failure.message,
        })
    }
}
