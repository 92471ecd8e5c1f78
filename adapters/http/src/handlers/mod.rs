//! Request handlers. Each converts its request into the domain with `try_into_domain`, calls
//! one use case and renders the answer in the envelope.

pub mod accounts;
pub mod admin;
pub mod docs;
pub mod lists;
pub mod ops;
pub mod shop;

use crate::error::ApiError;
use stockade_domain::DomainError;

/// Validates a path id with the domain's constructor.
pub(crate) fn id<T>(raw: i64, make: fn(i64) -> Result<T, DomainError>) -> Result<T, ApiError> {
    make(raw).map_err(ApiError::from)
}
