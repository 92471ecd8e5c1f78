//! What idempotent execution keeps and gives back (docs/decisions/0003): a use case's answer
//! and whether its outcome was recorded, the stored form of an outcome, the fingerprint of a
//! command, and the replay of a stored outcome. Plain data and pure functions, used by
//! [`super::keyed::run_keyed`], the sections and the combined turns alike.

use crate::error::AppError;
use crate::ports::idempotency::{Fingerprint, StoredOutcome};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use stockade_domain::ErrorCode;

/// A use case's answer, and whether its idempotency outcome was recorded with the commit that
/// produced it (see `Guarded::answer`).
#[derive(Debug)]
pub(crate) struct Answered<T> {
    pub(crate) value: T,
    pub(crate) recorded: bool,
}

/// How a keyed request's work ended: its result, and whether the result's outcome is already
/// recorded (committed with the work's writes), so that [`super::keyed::run_keyed`] records only
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

pub(crate) fn fingerprint(op: &str, canonical: &str) -> Fingerprint {
    let mut hasher = Sha256::new();
    hasher.update(op.as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical.as_bytes());
    let digest = hasher.finalize();
    Fingerprint(digest.iter().map(|b| format!("{b:02x}")).collect())
}

pub(crate) fn replay<T: DeserializeOwned>(
    stored: StoredOutcome,
) -> Result<Replayable<T>, AppError> {
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
