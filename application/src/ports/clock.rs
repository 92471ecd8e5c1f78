//! Time and identity sources, injected so tests control them.

use std::fmt;
use stockade_domain::Timestamp;

/// Wall-clock time. Adapters MUST be monotone enough that `now()` never goes backwards within
/// one process by more than the host's clock does.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Timestamp;
}

/// Makes unique strings (idempotency ticket owners, lock owners). Adapters MUST never return
/// the same value twice, across every process sharing a backend.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait IdGenerator: Send + Sync + fmt::Debug {
    fn unique(&self) -> String;
}
