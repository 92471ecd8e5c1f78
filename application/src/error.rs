//! Errors of the application layer.
//!
//! Adapters turn their backend's errors into [`BackendError`] at the seam (keeping the cause as
//! `#[source]` for the log); use cases answer with [`AppError`], whose [`AppError::code`] is
//! the one mapping from outcome to API code. See docs/decisions/0005 and 0014 for why the use
//! cases share one outcome enum.
//!
//! Dependencies run one way: this module converts the ports' errors (`From` impls below), and
//! the ports know nothing of it ([`BackendError`] lives in [`crate::ports::error`]).

use crate::ports::accounts::AccountError;
pub use crate::ports::error::BackendError;
use crate::ports::idempotency::IdempotencyError;
use crate::ports::lock::LockError;
use crate::ports::store::StoreError;
use std::time::Duration;
use stockade_domain::{DomainError, ErrorCode};

/// What a use case answers when it does not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A business rule refused the request.
    #[error(transparent)]
    Rejected(#[from] DomainError),
    /// The outcome of an earlier request with the same idempotency key was a refusal; this is it
    /// again, as recorded.
    #[error("{message}")]
    Replayed { code: ErrorCode, message: String },
    /// The idempotency key was first used for a different request.
    #[error("the idempotency key was already used for a different request")]
    IdempotencyKeyReused,
    /// The first request with this idempotency key is still running.
    #[error("a request with this idempotency key is still in progress")]
    RequestInProgress { retry_after: Duration },
    /// A lock could not be had within its wait time, or its lease was lost before the write.
    #[error("the resource is busy; try again")]
    LockTimeout,
    /// The store aborted the unit of work because of a concurrent one; the use case runs it
    /// again a few times before answering with this.
    #[error("the resource is busy; try again")]
    Contention,
    /// The data platform refused a payment; every step was compensated.
    #[error("the payment could not be completed; nothing was charged")]
    PaymentFailed,
    /// Too many failed sign-ins for one email lately; try again after `retry_after`.
    #[error("too many failed sign-ins for this email; try again later")]
    TooManyRequests { retry_after: Duration },
    /// A backend is down or answered with an error.
    #[error(transparent)]
    Unavailable(#[from] BackendError),
    /// A bug or broken data: never expected.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    /// The API code of this outcome.
    pub fn code(&self) -> ErrorCode {
        match self {
            AppError::Rejected(e) => e.code(),
            AppError::Replayed { code, .. } => *code,
            AppError::IdempotencyKeyReused => ErrorCode::IdempotencyKeyReused,
            AppError::RequestInProgress { .. } => ErrorCode::RequestInProgress,
            AppError::LockTimeout | AppError::Contention => ErrorCode::LockTimeout,
            AppError::PaymentFailed => ErrorCode::PaymentFailed,
            AppError::TooManyRequests { .. } => ErrorCode::TooManyRequests,
            AppError::Unavailable(_) => ErrorCode::BackendUnavailable,
            AppError::Internal(_) => ErrorCode::InternalError,
        }
    }

    /// The same outcome again, for another request of a combined turn that failed as a whole
    /// (a backend failure keeps its backend's name; its cause stays with the first).
    pub(crate) fn shared(&self) -> AppError {
        match self {
            AppError::Rejected(d) => AppError::Rejected(d.clone()),
            AppError::Replayed { code, message } => AppError::Replayed {
                code: *code,
                message: message.clone(),
            },
            AppError::IdempotencyKeyReused => AppError::IdempotencyKeyReused,
            AppError::RequestInProgress { retry_after } => AppError::RequestInProgress {
                retry_after: *retry_after,
            },
            AppError::LockTimeout => AppError::LockTimeout,
            AppError::Contention => AppError::Contention,
            AppError::PaymentFailed => AppError::PaymentFailed,
            AppError::TooManyRequests { retry_after } => AppError::TooManyRequests {
                retry_after: *retry_after,
            },
            AppError::Unavailable(b) => {
                AppError::Unavailable(BackendError::new(b.backend, b.source.to_string()))
            }
            AppError::Internal(s) => AppError::Internal(s.clone()),
        }
    }

    /// Whether this is a business outcome that an idempotency record keeps (a refusal decided
    /// after the use case ran). Time-outs, unavailability and failures of the platform are not
    /// kept: the client may retry with the same key.
    pub fn is_business_outcome(&self) -> bool {
        matches!(self, AppError::Rejected(_) | AppError::Replayed { .. })
    }
}

impl From<LockError> for AppError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Timeout | LockError::LeaseLost => AppError::LockTimeout,
            LockError::Backend(b) => AppError::Unavailable(b),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rejected(d) => AppError::Rejected(d),
            StoreError::StaleFence { .. } => AppError::LockTimeout,
            StoreError::Conflict(what) => {
                AppError::Internal(format!("unexpected conflict: {what}"))
            }
            StoreError::Contention => AppError::Contention,
            StoreError::TicketLost => AppError::RequestInProgress {
                retry_after: Duration::from_secs(1),
            },
            StoreError::Unavailable(b) => AppError::Unavailable(b),
        }
    }
}

impl From<IdempotencyError> for AppError {
    fn from(e: IdempotencyError) -> Self {
        match e {
            IdempotencyError::TicketLost => AppError::RequestInProgress {
                retry_after: Duration::from_secs(1),
            },
            IdempotencyError::Unavailable(b) => AppError::Unavailable(b),
        }
    }
}

impl From<AccountError> for AppError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::EmailTaken => AppError::Rejected(DomainError::EmailTaken),
            AccountError::Unavailable(b) => AppError::Unavailable(b),
        }
    }
}
